"""Per-frame cost of the scene step against frame index, as the mesh grows (forward, backward, orbit).

Each path runs the product's own step, :func:`scenescape.pipelines.scene.warp_inpaint_step` (the one
ScenePipeline runs per frame: render -> mask -> inpaint -> depth -> align + seam correction -> extend),
with the oracle backends of :mod:`scenescape.evaluation` (exact colour and depth from a synthetic world)
and the default :class:`~scenescape.pipelines.SceneConfig` sections, at 512x512 over 200 frames. The
pipeline's own bookkeeping (frame files, checkpoints) is left out; "geometry" is render + mask + align +
extend (the oracle inpaint and depth are the world's analytic ray cast, reported apart).

Bar (issue 13): on the forward path, the median geometry time of the last 20 frames is at most 1.5x that
of frames 10-30, while the mesh grows several-fold. Writes ``benchmarks/scaling.png`` and appends a
section to RESULTS.md.

Usage: ``python benchmarks/scaling.py [--frames 200] [--size 512] [--paths forward,backward,orbit]
[--threads 1] [--no-write]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

GEOMETRY = ("render", "mask", "align", "extend")
STAGES = ("render", "mask", "inpaint", "depth", "align", "extend")
# path -> (world, preset, params): long enough to keep seeing new surface for 200 frames inside the world
PATHS = {
    "forward": ("corridor", "forward", {"step": 0.05}),
    "backward": ("corridor", "backward", {"step": 0.015}),
    "orbit": ("room", "orbit", {"radius": 1.0, "angle_step": 0.02}),
}


def run_path(name: str, frames: int, size: int) -> list[dict]:
    from scenescape.evaluation import OracleDepth, OracleInpainter, default_camera, make_world
    from scenescape.geometry.mesh import SceneMesh
    from scenescape.pipelines import SceneConfig
    from scenescape.pipelines.scene import warp_inpaint_step
    from scenescape.trajectories import TrajectoryConfig, build_trajectory

    world, preset, params = PATHS[name]
    w = make_world(world)
    cam0 = default_camera(w, size, size, 500.0 * size / 512)
    cams = build_trajectory(TrajectoryConfig(name=preset, params=params), cam0, frames)
    cfg = SceneConfig(width=size, height=size, focal=cam0.fx, frames=frames)
    depth, inpainter = OracleDepth(world=w), OracleInpainter(world=w)
    img0, dep0 = w.render(cam0)
    mesh = SceneMesh.from_rgbd(img0, dep0, cam0)
    rows = []
    for i in range(1, frames):
        timings = {k: 0.0 for k in STAGES}
        t0 = time.perf_counter()
        step = warp_inpaint_step(mesh, cams[i], depth=depth, inpainter=inpainter, seed=i, mask=cfg.mask,
                                 align=cfg.align, composite_cfg=cfg.composite, mesh_cfg=cfg.mesh,
                                 prev_cam=cams[i - 1], timings=timings, frame=i)
        total = time.perf_counter() - t0
        rows.append({"frame": i, "faces": mesh.num_faces, "total": total,
                     "geometry": sum(timings[k] for k in GEOMETRY), "new_px": int(step.mask.sum()),
                     **{k: timings[k] for k in STAGES}})
        if i % 20 == 0 or i == frames - 1:
            r = rows[-1]
            print(f"{name} frame {i}: faces {r['faces']:,} geometry {r['geometry']:.3f} s "
                  f"(render {r['render']:.3f}, extend {r['extend']:.3f}) step {r['total']:.3f} s, "
                  f"new px {r['new_px']}", flush=True)
    return rows


def window(rows: list[dict], lo: int, hi: int, key: str = "geometry") -> float:
    vals = [r[key] for r in rows if lo <= r["frame"] < hi]
    return statistics.median(vals) if vals else float("nan")


def plot(results: dict[str, list[dict]], path: Path, size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    for name, rows in results.items():
        f = [r["frame"] for r in rows]
        axes[0].plot(f, [1000 * r["geometry"] for r in rows], lw=0.8, label=name)
        axes[1].plot(f, [r["faces"] / 1e6 for r in rows], lw=1.2, label=name)
    axes[0].set(xlabel="frame", ylabel="geometry ms / frame", title=f"render+mask+align+extend, {size}x{size}")
    axes[1].set(xlabel="frame", ylabel="mesh faces (millions)", title="mesh size")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--paths", default="forward,backward,orbit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--png", default="scaling.png", help="plot file name under benchmarks/")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from scenescape.geometry import raster

    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    results = {name: run_path(name, args.frames, args.size) for name in args.paths.split(",")}
    load1 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    n = args.frames
    lines = ["| path | faces at frame 10 -> last | geometry median, frames 10-30 (s) | last 20 (s) | ratio | "
             "render / extend last 20 (s) | whole step last 20 (s) |", "|---|---|---:|---:|---:|---|---:|"]
    verdicts = []
    for name, rows in results.items():
        early, late = window(rows, 10, 30), window(rows, n - 20, n)
        f10 = next(r["faces"] for r in rows if r["frame"] >= 10)
        ratio = late / early
        lines.append(f"| {name} | {f10:,} -> {rows[-1]['faces']:,} ({rows[-1]['faces'] / f10:.1f}x) | {early:.3f} | "
                     f"{late:.3f} | {ratio:.2f} | {window(rows, n - 20, n, 'render'):.3f} / "
                     f"{window(rows, n - 20, n, 'extend'):.3f} | {window(rows, n - 20, n, 'total'):.3f} |")
        if name == "forward":
            verdicts.append(f"- forward path: last-20 / frames-10-30 geometry = {ratio:.2f} (bar <= 1.5) with the mesh "
                            f"growing {rows[-1]['faces'] / f10:.1f}x: **{'PASS' if ratio <= 1.5 else 'FAIL'}**")
    print("\n".join(lines + verdicts))
    png = Path(__file__).resolve().parent / args.png
    plot(results, png, args.size)
    print(f"wrote {png} ({png.stat().st_size // 1024} KB)")
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        backend = "numba" if raster._numba_available() else "torch"
        section = "\n".join([
            "", f"## Scaling: per-frame step cost vs frame index ({when})", "",
            f"`python benchmarks/scaling.py --frames {args.frames} --size {args.size} --threads {args.threads}` -- "
            f"warp_inpaint_step (ScenePipeline's step) with the oracle backends, default SceneConfig sections, "
            f"render backend {backend} with frustum culling; {platform.machine()} {platform.system()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s), load average "
            f"{load0} at start, {load1} at end (shared machine: timings are upper bounds). Paths: forward = "
            "corridor, 0.05/frame; backward = corridor, 0.015/frame; orbit = room, radius 1, 0.02 rad/frame. "
            f"Plot: `benchmarks/{args.png}`.", "", *lines, "", *verdicts, ""])
        with open(Path(__file__).resolve().parent / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(section)


if __name__ == "__main__":
    main()
