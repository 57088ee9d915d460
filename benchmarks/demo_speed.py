"""Time `scenescape demo` end to end (60 frames, 512x512, classical backends) and per stage.

    python benchmarks/demo_speed.py [--frames 60] [--size 512] [--no-results] [--strip samples/demo_strip.png]

Runs the installed `scenescape demo` command in a subprocess (imports, start frame, loop, video, mesh
export: everything a user waits for), reads the per-stage timings from the run's manifest.json, and
appends a dated section to benchmarks/RESULTS.md (append only). Target: under 2 minutes on a 2-core
machine. The machine load at the start is recorded, since these machines are shared.

``--strip`` also writes a small frame strip (6 frames side by side) of the run for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 120.0


def frame_strip(run: Path, out: Path, n: int = 6, width: int = 200) -> Path:
    """``n`` evenly spaced frames of ``run``, each ``width`` px wide, side by side (PNG, atomic)."""
    import numpy as np
    from PIL import Image

    from scenescape.io import save_image

    frames = sorted((run / "frames").glob("*.png"))
    idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
    tiles = []
    for i in idx:
        im = Image.open(frames[i]).convert("RGB")
        h = round(im.height * width / im.width)
        tiles.append(np.asarray(im.resize((width, h), Image.LANCZOS)))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
    save_image(out, row)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", type=Path, help="keep the run here (default: a temporary folder)")
    p.add_argument("--no-results", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--strip", type=Path, help="also write a frame strip PNG of the run")
    args = p.parse_args(argv)

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="scenescape-demo-")
        out = Path(tmp.name) / "run"
    else:
        out = args.out
    load0 = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "scenescape", "demo", "--out", str(out), "--frames", str(args.frames),
           "--size", str(args.size), "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    total = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    if proc.returncode != 0:
        raise SystemExit(f"scenescape demo failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    man = json.loads((out / "manifest.json").read_text())
    stages = man["timings_s"]
    ft = sorted(man["frame_times_s"])
    res = {
        "total_s": total, "loop_s": man["loop_s"], "stages_s": stages, "frames": man["frames"],
        "frame_median_s": ft[len(ft) // 2], "frame_max_s": ft[-1], "mesh": man["mesh"],
        "cpus": os.cpu_count(), "load_start": load0, "load_end": load1, "pass": total <= TARGET_S,
    }
    print(json.dumps(res, indent=2))
    if args.strip:
        frame_strip(out, args.strip)
        print(f"strip: {args.strip} ({args.strip.stat().st_size / 1024:.0f} KiB)")
    if not args.no_results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        stage_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in stages.items())
        text = (
            f"\n## Demo speed: `scenescape demo` {args.frames} frames {args.size}x{args.size} ({stamp})\n\n"
            f"`python benchmarks/demo_speed.py` -- end to end in a subprocess (imports, start frame, loop, "
            f"video, mesh export), classical backends, CPU, {os.cpu_count()} cores; machine load average "
            f"{load0:.1f} at start, {load1:.1f} at end (shared machine).\n\n"
            f"- total: **{total:.1f} s** (target <= {TARGET_S:.0f} s: {'PASS' if res['pass'] else 'FAIL'}); "
            f"loop {man['loop_s']:.1f} s; per frame median {res['frame_median_s']:.2f} s, max "
            f"{res['frame_max_s']:.2f} s\n"
            f"- final mesh: {man['mesh']['vertices']:,} vertices, {man['mesh']['faces']:,} faces\n\n"
            f"| stage | seconds (sum over frames) |\n|---|---:|\n{stage_rows}\n"
        )
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    main()
