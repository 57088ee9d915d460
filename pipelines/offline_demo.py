"""Recipe: the offline walkthrough (what `scenescape demo` does), on the public API only.

    python pipelines/offline_demo.py --out runs/offline-demo --size 512 --frames 60

Start frame: the synthetic room's RGB-D view (samples/demo/ holds the same frame at 512 px). Classical
backends: OpenCV Telea inpainting and edge-aware depth completion; no model weights, no network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenescape import SceneConfig, ScenePipeline
from scenescape.backends.depth import DepthCompletion
from scenescape.backends.inpaint import OpenCVInpainter
from scenescape.evaluation import default_camera, make_world, suggest_trajectory
from scenescape.trajectories import build_trajectory


def main(out_dir: str | Path, size: int = 512, frames: int = 60):
    world = make_world("room")
    cam0 = default_camera(world, size, size, 500.0 * size / 512)
    image, depth = world.render(cam0)  # (H, W, 3) in [0, 1] and (H, W) z-depth
    traj = suggest_trajectory(world, "forward_yaw")
    traj.params["step"] = 0.03
    cameras = build_trajectory(traj, cam0, frames)  # world units: scene_scale 1
    pipe = ScenePipeline(
        depth=DepthCompletion(),
        inpainter=OpenCVInpainter(OpenCVInpainter.Config(method="telea")),
        config=SceneConfig(width=size, height=size, focal=cam0.fx, frames=frames, seed=0),
    )
    result = pipe.run(cameras=cameras, init_image=image.numpy(), init_depth=depth.numpy(), out_dir=out_dir,
                      overwrite=True, progress=False)
    print(f"video: {result.video_path}\nmesh: {Path(out_dir) / 'mesh.glb'}")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/offline-demo")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=60)
    a = p.parse_args()
    main(a.out, a.size, a.frames)
