"""Write the demo start frame used by the offline ``scenescape demo``.

    python samples/make_samples.py [--world room] [--size 512] [--out samples/demo]

Files (from :mod:`scenescape.evaluation`, exact ground truth):

* ``image.png``: ``(H, W, 3)`` RGB, 8-bit;
* ``depth.npy``: ``(H, W)`` float32 z-depth (world units);
* ``camera.json``: ``Camera.to_dict()`` (OpenCV convention, fx = 500 * size / 512, centred principal point).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scenescape.evaluation import WORLDS, default_camera, make_world
from scenescape.io import save_image, save_npy, write_json


def make_demo(out: Path, world: str = "room", size: int = 512, seed: int = 0) -> dict[str, Path]:
    """Render the default camera of ``world`` and write image/depth/camera into ``out``."""
    cam = default_camera(world, size, size, 500.0 * size / 512)
    image, depth = make_world(world, seed).render(cam)
    paths = {"image": out / "image.png", "depth": out / "depth.npy", "camera": out / "camera.json"}
    save_image(paths["image"], image.numpy())
    save_npy(paths["depth"], depth.numpy().astype(np.float32))
    write_json(paths["camera"], cam.to_dict())
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write the demo start frame (image, depth, camera).")
    p.add_argument("--world", default="room", choices=sorted(WORLDS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo")
    args = p.parse_args(argv)
    for name, path in make_demo(args.out, args.world, args.size, args.seed).items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
