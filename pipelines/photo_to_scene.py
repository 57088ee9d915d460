"""Recipe: a photo (optionally with its depth) to a walkthrough and scene mesh, on the public API only.

    python pipelines/photo_to_scene.py photo.jpg [--depth depth.npy] [--config configs/offline.yaml] \
        --out runs/photo --frames 24

Without --depth the config's ``first_depth`` backend makes the first depth: the ground-plane + far-wall
prior offline (configs/offline.yaml), or a depth model (configs/gpu-quality.yaml).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenescape import SceneConfig, ScenePipeline
from scenescape.io import load_depth, load_image

OFFLINE = Path(__file__).resolve().parents[1] / "configs" / "offline.yaml"


def main(out_dir: str | Path, size: int = 512, frames: int = 24, image: str | Path | None = None,
         depth: str | Path | None = None, config: str | Path = OFFLINE):
    cfg = SceneConfig.load(config, [f"width={size}", f"height={size}", f"focal={500.0 * size / 512}",
                                    f"frames={frames}"])
    if image is None:  # no photo given: use the demo's start frame
        from scenescape.evaluation import default_camera, make_world

        img, dep = make_world("room").render(default_camera("room", size, size, cfg.focal))
        img, dep = img.numpy(), (dep.numpy() if depth is None else None)
    else:
        img = load_image(image, size=(size, size))  # converts grey/RGBA and resizes, with a warning
        dep = load_depth(depth, shape=img.shape[:2]) if depth else None
    pipe = ScenePipeline.from_config(cfg)
    result = pipe.run(init_image=img, init_depth=dep, out_dir=out_dir, overwrite=True, progress=False)
    print(f"video: {result.video_path}\nmesh: {Path(out_dir) / 'mesh.ply'}")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?")
    p.add_argument("--depth")
    p.add_argument("--config", default=str(OFFLINE))
    p.add_argument("--out", default="runs/photo")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=24)
    a = p.parse_args()
    main(a.out, a.size, a.frames, a.image, a.depth, a.config)
