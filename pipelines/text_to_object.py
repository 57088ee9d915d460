"""Recipe: text -> 3D asset (NeRF by score distillation -> mesh + orbit video) on the public API.

    python pipelines/text_to_object.py "a ceramic mug" --config configs/object/sds-gpu.yaml --out runs/mug
    python pipelines/text_to_object.py "a ceramic mug" --steps 300 guidance.options.mode=sjc

What it does, in order:
1. load an :class:`scenescape.ObjectConfig` (defaults <- YAML preset <- ``key=value`` overrides);
2. ``ObjectPipeline(cfg).run(prompt, out)``: trains the NeRF (checkpoints, validation renders),
   then writes ``mesh.glb/.obj/.ply`` and ``video.mp4`` into the run folder;
3. prints the files and the seconds per step.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def main(prompt: str, out: str | None = None, config: str | None = None, steps: int | None = None,
         overrides: list[str] | None = None, resume: bool = False, guidance: Any = None) -> Any:
    """Run the recipe; returns the :class:`scenescape.pipelines.object.ObjectResult`.

    ``guidance`` may be any object with ``step(images, prompts, step_info) -> loss`` (a custom score model).
    """
    from scenescape import ObjectConfig, ObjectPipeline

    items = list(overrides or [])
    if steps is not None:
        items.append(f"steps={steps}")
    cfg = ObjectConfig.load(config, items)
    result = ObjectPipeline(cfg, guidance=guidance).run(prompt, out, resume=resume)
    print(f"run folder: {result.out_dir}  ({result.steps} steps, {result.seconds:.1f} s)")
    for name, path in result.files.items():
        print(f"  {name}: {path}")
    return result


def _cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prompt")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides")
    ap.add_argument("--config", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    main(a.prompt, a.out, a.config, a.steps, a.overrides, a.resume)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
