"""Oracle-fusion fidelity benchmark (issue 2, item 5).

Fuses a mesh along a trajectory in a synthetic world with the oracle backends (exact RGB-D for every
new pixel), so every error left is the geometry's: triangulation, stitching, rasterisation, masks. The
final mesh is scored at held-out cameras (midpoints between consecutive poses plus small perturbations):
coverage of the pixels some trajectory camera saw, floating fraction (rendered depth < 0.9 x true),
depth abs-rel, PSNR, and per-frame faces added per missing pixel.

    python benchmarks/fidelity.py                         # 512x512, fx=500, 24 frames, both worlds
    python benchmarks/fidelity.py --size 128 --frames 6   # quick
    python benchmarks/fidelity.py --no-results            # do not append to benchmarks/RESULTS.md

A dated section (machine, settings, figures, PASS/FAIL per bar) is appended to benchmarks/RESULTS.md.
The exit code is 0 when every bar passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

from scenescape.config import overrides_to_dict
from scenescape.evaluation import FIDELITY_BARS, WORLDS, run_fidelity

TRAJECTORIES = ("forward_yaw", "backward")


def _fmt(v: float, digits: int = 5) -> str:
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return "nan"
    return f"{v:.{digits}f}"


def _bar_text(op: str, bar) -> str:
    return f"in [{bar[0]}, {bar[1]}]" if op == "between" else f"{op} {bar}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"{platform.node()} ({platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, {dev}), "
            f"Python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads")


def table(results: list[dict]) -> str:
    cols = [("world", None), ("trajectory", None), ("coverage med/min", ("coverage_median", "coverage_min")),
            ("floating med/max", ("floating_median", "floating_max")), ("abs-rel med/max", ("abs_rel_median", "abs_rel_max")),
            ("PSNR med [min, max]", ("psnr_median", "psnr_min", "psnr_max")),
            ("faces/missing (frames med [min,max])", ("faces_per_missing", "faces_per_missing_frame_median",
                                                      "faces_per_missing_frame_min", "faces_per_missing_frame_max")),
            ("zero-missing frames", ("zero_missing_frames",)), ("s/frame", ("fuse_seconds_per_frame",)),
            ("bars", None)]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        f = r["figures"]
        cells = []
        for name, keys in cols:
            if name == "world":
                cells.append(r["world"])
            elif name == "trajectory":
                cells.append(r["trajectory"])
            elif name == "bars":
                failed = [k for k, b in r["bars"].items() if not b["pass"]]
                cells.append("PASS" if not failed else "FAIL: " + ", ".join(failed))
            elif name.startswith("PSNR"):
                cells.append(f"{f['psnr_median']:.2f} [{f['psnr_min']:.2f}, {f['psnr_max']:.2f}]")
            elif name.startswith("faces/missing"):
                cells.append(f"{f['faces_per_missing']:.2f} ({f['faces_per_missing_frame_median']:.2f} "
                             f"[{f['faces_per_missing_frame_min']:.2f}, {f['faces_per_missing_frame_max']:.2f}])")
            elif name == "s/frame":
                cells.append(f"{f['fuse_seconds_per_frame']:.2f}")
            else:
                cells.append(" / ".join(_fmt(f[k]) for k in keys))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bars_section(results: list[dict]) -> str:
    lines = ["| bar | " + " | ".join(f"{r['world']}/{r['trajectory']}" for r in results) + " |",
             "|" + "---|" * (len(results) + 1)]
    for name, (op, bar) in FIDELITY_BARS.items():
        cells = []
        for r in results:
            b = r["bars"][name]
            cells.append(f"{_fmt(b['value'])} {'PASS' if b['pass'] else 'FAIL'}")
        lines.append(f"| {name} {_bar_text(op, bar)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def append_results(path: Path, text: str) -> None:
    """Append ``text`` with one O_APPEND write (other benchmarks append to the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    data = ("# Benchmark results\n\n" if new else "\n") + text
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512, help="image width and height (default 512)")
    p.add_argument("--fx", type=float, default=None, help="focal length in pixels (default 500 * size / 512)")
    p.add_argument("--frames", type=int, default=24, help="frames per trajectory (default 24; same path)")
    p.add_argument("--worlds", nargs="+", default=sorted(WORLDS), choices=sorted(WORLDS))
    p.add_argument("--trajectories", nargs="+", default=list(TRAJECTORIES),
                   choices=["forward_yaw", "backward", "forward", "scenescape"])
    p.add_argument("--dilate", type=int, default=1, help="disocclusion mask dilation in pixels (default 1)")
    p.add_argument("--supersample", type=int, default=1, help="render_mesh supersampling factor (default 1)")
    p.add_argument("--mask-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra disocclusion_mask option (repeatable), e.g. --mask-opt open_kernel=3")
    p.add_argument("--extend-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra SceneMesh.from_rgbd/extend_from_rgbd option (repeatable), e.g. --extend-opt max_rel_jump=0.05")
    p.add_argument("--perturbed", type=int, default=4, help="perturbed held-out cameras (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's; 1 is much faster on a busy shared CPU)")
    p.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    p.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    p.add_argument("--json", type=Path, default=None, help="also write all numbers (per camera/frame) as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rk = {"supersample": args.supersample} if args.supersample != 1 else {}
    mk = overrides_to_dict(args.mask_opt)
    ek = overrides_to_dict(args.extend_opt)
    results = []
    for world in args.worlds:
        for traj in args.trajectories:
            print(f"[fidelity] {world} / {traj}: {args.size}x{args.size}, {args.frames} frames ...", flush=True)
            r = run_fidelity(world, traj, width=args.size, fx=args.fx, frames=args.frames, dilate=args.dilate,
                             n_perturbed=args.perturbed, seed=args.seed, render_kwargs=rk, mask_kwargs=mk,
                             extend_kwargs=ek)
            results.append(r)
            failed = [k for k, b in r["bars"].items() if not b["pass"]]
            print(f"[fidelity]   fuse {r['seconds']['fuse']:.1f}s, eval {r['seconds']['eval']:.1f}s; "
                  f"{'PASS' if not failed else 'FAIL: ' + ', '.join(failed)}", flush=True)
    s0 = results[0]["settings"]
    settings = (f"{s0['width']}x{s0['height']}, fx={s0['fx']:g}, {s0['frames']} frames, dilate={s0['dilate']}, "
                f"supersample={args.supersample}, mask options={s0['mask_kwargs']}, mesh options={ek}, held-out cameras per run={s0['held_out']} "
                f"({s0['frames'] - 1} midpoints + {args.perturbed} perturbed), seed={args.seed}")
    all_pass = all(b["pass"] for r in results for b in r["bars"].values())
    tab = table(results)
    bars = bars_section(results)
    print()
    print(tab)
    print()
    print(bars)
    print(f"\noverall: {'PASS' if all_pass else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if not args.no_results:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        text = (f"## Fidelity (oracle fusion), {now}\n\n"
                f"- command: `python benchmarks/fidelity.py {' '.join(argv if argv is not None else sys.argv[1:])}`\n"
                f"- machine: {machine()}\n- settings: {settings}\n"
                f"- coverage counts only held-out pixels whose true surface point lies in a depth-consistent "
                f"pixel-grid triangle of some trajectory camera; floating = rendered depth < 0.9 x true; "
                f"faces/missing = faces added / uncovered pixels over frames 1..N-1 (per-frame median [min, max] "
                f"in brackets)\n\n{tab}\n\n{bars}\n\noverall: **{'PASS' if all_pass else 'FAIL'}**\n")
        append_results(args.results, text)
        print(f"appended to {args.results}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
