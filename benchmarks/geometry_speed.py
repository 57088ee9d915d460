"""Per-frame geometry time vs open3d's RaycastingScene, same mesh and camera, same run.

Per frame (512x512, fx=500, mesh of about 1M faces):

* scenescape: ``render_mesh`` + ``disocclusion_mask`` + ``extend_from_rgbd`` (unproject + triangulate + stitch
  + filter + append), with the ground-truth RGB-D of a procedural room for the new pixels;
* open3d: ``RaycastingScene`` build (``add_triangles``) + ``create_rays_pinhole`` + ``cast_rays`` on the mesh as
  it is before the frame's extension (the same mesh our renderer sees).

``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` here (set it in the environment to override): with the default
spin-waiting, torch's OpenMP threads lose several times their speed on a machine shared with other jobs.

open3d's build and cast are timed apart (the issue's bar compares against the cast alone).

Usage: ``python benchmarks/geometry_speed.py [--frames 6] [--size 512] [--faces 1000000] [--threads N]
[--backend auto|torch|numba] [--no-write]``.
Appends a dated section to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import time
from pathlib import Path

# OpenMP threads that spin while waiting stall badly when the machine is shared (more runnable threads than
# cores): set before torch (and open3d) load their OpenMP runtime; both libraries run under the same setting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scenescape import Camera, SceneMesh, render_mesh  # noqa: E402
from scenescape.geometry.masks import disocclusion_mask  # noqa: E402

ROOM_LO = torch.tensor([-3.0, -2.0, -1.0], dtype=torch.float64)
ROOM_HI = torch.tensor([3.0, 1.5, 9.0], dtype=torch.float64)
# occluders: (z, x0, x1, y0, y1) rectangles facing the camera
OCCLUDERS = [(2.5, -2.0, -0.8, -1.0, 1.5), (4.0, 0.5, 1.6, -0.5, 0.8), (6.0, -0.6, 0.4, -2.0, 0.2)]


def room_rgbd(cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth ``(H, W, 3)`` image and ``(H, W)`` z-depth of a box room with three occluders."""
    h, w = cam.height, cam.width
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                          indexing="ij")
    rc = torch.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, torch.ones_like(u)], -1)
    c2w = cam.camera_to_world.double()
    d = rc @ c2w[:3, :3].T  # the ray parameter along d is the z-depth
    o = c2w[:3, 3]
    bound = torch.where(d > 0, ROOM_HI, ROOM_LO)
    t = ((bound - o) / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)).amin(-1)
    for z0, x0, x1, y0, y1 in OCCLUDERS:
        tz = (z0 - o[2]) / d[..., 2]
        p = o + tz[..., None] * d
        hit = (tz > 1e-6) & (tz < t) & (p[..., 0] >= x0) & (p[..., 0] <= x1) & (p[..., 1] >= y0) & (p[..., 1] <= y1)
        t = torch.where(hit, tz, t)
    p = o + t[..., None] * d
    col = torch.stack([0.5 + 0.4 * torch.sin(7 * p[..., 0] + 3 * p[..., 2]),
                       0.5 + 0.4 * torch.sin(6 * p[..., 1] - 5 * p[..., 2]),
                       0.5 + 0.4 * torch.cos(5 * p[..., 0] + 6 * p[..., 1])], -1)
    return col.float(), t.float()


def camera(size: int, f: float, k: int) -> Camera:
    """Frame ``k``: forward 0.15 per frame with a yaw of 0.03 rad per frame."""
    yaw = 0.03 * k
    c, s = math.cos(yaw), math.sin(yaw)
    r = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = r
    pose[:3, 3] = -r @ torch.tensor([0.05 * k, 0.0, 0.15 * k], dtype=torch.float64)
    return Camera(f, f, size / 2, size / 2, size, size, pose)


def open3d_build_cast(mesh: SceneMesh, cam: Camera) -> tuple[float, float, np.ndarray]:
    """``(build s, cast s, hit mask)``: open3d's Embree scene build, then rays + cast alone."""
    import open3d as o3d

    v = mesh.vertices.cpu().numpy()
    f = mesh.faces.cpu().numpy().astype(np.uint32)
    t0 = time.perf_counter()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))
    scene.cast_rays(o3d.core.Tensor(np.zeros((1, 6), np.float32)))  # Embree builds its BVH lazily: force it here
    t1 = time.perf_counter()
    rays = scene.create_rays_pinhole(o3d.core.Tensor(cam.K.double().numpy()),
                                     o3d.core.Tensor(cam.world_to_camera.double().numpy()), cam.width, cam.height)
    hit = scene.cast_rays(rays)["t_hit"].numpy()
    return t1 - t0, time.perf_counter() - t1, np.isfinite(hit)


def numba_info() -> str:
    """numba's version and the compiled z-buffer's thread count."""
    try:
        import numba
    except ImportError:
        return "no numba"
    from scenescape.geometry.raster import _render_threads

    return f"numba {numba.__version__}, render threads {_render_threads()} (SCENESCAPE_RENDER_THREADS)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--focal", type=float, default=500.0)
    ap.add_argument("--faces", type=int, default=1_000_000, help="approximate faces of the starting mesh")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "numba"],
                    help="render_mesh backend (auto: numba when installed)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0 = torch's default). On a machine shared with other jobs, 1 "
                         "avoids the barrier stalls of oversubscribed OpenMP threads")
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    # starting mesh: one RGB-D view at the resolution that gives about --faces faces
    side = int(math.sqrt(args.faces / 2)) + 1
    cam0 = Camera(args.focal * side / args.size, args.focal * side / args.size, side / 2, side / 2, side, side)
    img0, depth0 = room_rgbd(cam0)
    t0 = time.perf_counter()
    mesh = SceneMesh.from_rgbd(img0, depth0, cam0, device=args.device)
    t_build = time.perf_counter() - t0
    print(f"start mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces ({t_build:.2f} s to build)")

    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = []
    render_mesh(SceneMesh.from_rgbd(img0[:8, :8], depth0[:8, :8], cam0.cropped(0, 0, 8, 8)), cam0.cropped(0, 0, 8, 8),
                backend=args.backend)  # compile the numba kernel (cached on disk) before timing
    for k in range(1, args.frames + 1):
        cam = camera(args.size, args.focal, k)
        img, depth = room_rgbd(cam)
        img, depth = img.to(args.device), depth.to(args.device)
        faces_before = mesh.num_faces
        t_build, t_cast, o3d_hit = open3d_build_cast(mesh, cam)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = render_mesh(mesh, cam, backend=args.backend)
        t1 = time.perf_counter()
        mask = disocclusion_mask(out.mask)
        t2 = time.perf_counter()
        stats = mesh.extend_from_rgbd(img, depth, cam, mask, render=out)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        agree = float((out.mask.cpu().numpy() == o3d_hit).mean())
        rows.append(dict(frame=k, faces=faces_before, render=t1 - t0, mask=t2 - t1, extend=t3 - t2, total=t3 - t0,
                         o3d=t_build + t_cast, cast=t_cast, missing=int((~out.mask).sum()), added=stats.faces_added, agree=agree))
        r = rows[-1]
        print(f"frame {k}: faces {faces_before:>8d}  render {r['render']:.3f}  mask {r['mask']:.4f}  "
              f"extend {r['extend']:.3f}  total {r['total']:.3f} s | open3d build+cast {r['o3d']:.3f} s, "
              f"cast {r['cast']:.3f} s | "
              f"missing px {r['missing']}, coverage agrees with open3d on {100 * agree:.2f}% px")

    med = {k: statistics.median(r[k] for r in rows) for k in ("render", "mask", "extend", "total", "o3d", "cast")}
    nproc = os.cpu_count()
    machine = " ".join(x for x in (platform.machine(), platform.processor(), platform.system(), platform.release()) if x)
    header = ["", "| step | median s/frame |", "|---|---|"]
    lines = header + [
        f"| render_mesh (z-buffer, {args.size}x{args.size}) | {med['render']:.3f} |",
        f"| disocclusion_mask | {med['mask']:.4f} |",
        f"| extend_from_rgbd (unproject + triangulate + stitch) | {med['extend']:.3f} |",
        f"| **scenescape total per frame** | **{med['total']:.3f}** |",
        f"| open3d RaycastingScene build + cast | {med['o3d']:.3f} |",
        f"| open3d cast alone (rays + cast_rays) | {med['cast']:.3f} |",
        f"| ratio scenescape / open3d build + cast | {med['total'] / med['o3d']:.2f} |",
        f"| **ratio scenescape / open3d cast alone** (bar <= 2) | **{med['total'] / med['cast']:.2f}** |",
    ]
    print("\n".join(lines))
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        dev = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
        section = "\n".join([
            "", f"## Geometry speed ({when})", "",
            f"`python benchmarks/geometry_speed.py --frames {args.frames} --size {args.size} --threads {args.threads} "
            f"--backend {args.backend}` "
            f"on {machine}, load average before the run {load0}, "
            f"nproc={nproc}, torch {torch.__version__} with {torch.get_num_threads()} threads, {numba_info()}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, device {dev}. "
            f"Mesh of {rows[0]['faces']:,} faces at frame 1 (grows as frames are stitched on), "
            f"{args.size}x{args.size}, fx={args.focal:g}, {len(rows)} frames, forward motion with yaw. "
            f"open3d times the scene build + ray cast on the same mesh and camera in the same run. "
            f"Coverage agrees with open3d's hits on {100 * min(r['agree'] for r in rows):.2f}%+ of pixels.",
            *lines, "",
        ])
        path = Path(__file__).resolve().parent / "RESULTS.md"
        if not path.exists():
            section = "# Benchmark results\n" + section
        with open(path, "a", encoding="utf-8") as fh:  # append: other benchmarks write their own sections
            fh.write(section)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
