"""Recipe: text to a walkthrough video and scene mesh (needs generative models), on the public API only.

    python pipelines/text_to_walkthrough.py "a cozy library with wooden shelves" \
        --config configs/gpu-quality.yaml --out runs/library --frames 24

The config names the text-to-image (or empty-canvas inpainting), inpainting and depth models
(configs/gpu-quality.yaml, gpu-fast.yaml, scenescape-faithful.yaml). Classical inpainting cannot invent a
first frame from text, so the offline preset does not apply here; the tests run this recipe with tiny
random-weight diffusion and depth models (scenescape.testing) written to a config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenescape import SceneConfig, ScenePipeline

GPU_QUALITY = Path(__file__).resolve().parents[1] / "configs" / "gpu-quality.yaml"


def main(out_dir: str | Path, size: int = 512, frames: int = 24, prompt: str = "a cozy library with wooden shelves",
         config: str | Path | dict = GPU_QUALITY, overrides: list[str] | None = None):
    extra = [f"width={size}", f"height={size}", f"focal={500.0 * size / 512}", f"frames={frames}"]
    if isinstance(config, dict):
        from scenescape.config import apply_overrides, from_dict

        cfg = apply_overrides(from_dict(SceneConfig, config), extra + list(overrides or []))
    else:
        cfg = SceneConfig.load(config, extra + list(overrides or []))
    pipe = ScenePipeline.from_config(cfg)
    result = pipe.run(prompt=prompt, out_dir=out_dir, overwrite=True, progress=False)
    print(f"video: {result.video_path}\nmesh: {Path(out_dir) / 'mesh.glb'}")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prompt")
    p.add_argument("--config", default=str(GPU_QUALITY))
    p.add_argument("--out", default="runs/text")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=24)
    a = p.parse_args()
    main(a.out, a.size, a.frames, a.prompt, a.config)
