"""Seam-correction solve time vs the number of new pixels, up to the captured full-frame case.

The case that froze runs (issue 13): a 512x512 frame where 98% of the pixels are new - the rendered
mesh covers only a one-pixel border and a few hundred small islands - so ``seam_correction`` solves a
Laplace equation over ~257,000 unknowns. This script rebuilds that case (known depth: a tilted plane;
aligned depth: the same plane 3% too far with 1% noise, so most seam pixels are Dirichlet data) and
times ``seam_correction`` (the product's own call, ``harmonic_fill`` inside) with the AMG solver,
then the same call at smaller sizes to show the growth with the unknowns, and the direct solve
(``solver="direct"``, the previous behaviour) in a subprocess with a time limit, compared to 1e-4.

Usage: ``python benchmarks/seam_speed.py [--direct-timeout 60] [--no-write]``. Appends to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from scenescape.geometry import depth_align  # noqa: E402
from scenescape.geometry.depth_align import seam_correction  # noqa: E402


def full_frame_case(size: int, islands: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """``(aligned, known_depth, known_mask, new_mask)`` ``(size, size)``: known = 1-px border + 3x3 islands."""
    rng = np.random.default_rng(seed)
    known = np.zeros((size, size), bool)
    known[0] = known[-1] = known[:, 0] = known[:, -1] = True
    ij = rng.integers(3, size - 6, (islands, 2))
    for i, j in ij:
        known[i:i + 3, j:j + 3] = True
    yy, xx = np.mgrid[0:size, 0:size] / size
    plane = 2.0 + 1.5 * xx + 0.5 * yy
    aligned = plane * 1.03 * np.exp(rng.normal(0.0, 0.01, plane.shape))
    return aligned, np.where(known, plane, 0.0), known, ~known


def _timed(size: int, islands: int, solver: str, q: mp.Queue | None = None) -> tuple[float, float, np.ndarray]:
    a, k, km, nm = full_frame_case(size, islands)
    orig = depth_align.harmonic_fill

    def fill(*args, **kw):  # the product's call with the solver chosen here
        return orig(*args, **{**kw, "solver": solver})

    depth_align.harmonic_fill = fill
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        f = seam_correction(a, k, km, nm).numpy()
        res = (time.perf_counter() - t0, time.process_time() - c0, f)
    finally:
        depth_align.harmonic_fill = orig
    if q is not None:
        q.put(res)
    return res


def direct_with_timeout(size: int, islands: int, timeout: float) -> tuple[float, float, np.ndarray] | None:
    ctx = mp.get_context("fork")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_timed, args=(size, islands, "direct", q))
    p.start()
    try:
        return q.get(timeout=timeout)
    except Exception:
        return None
    finally:
        if p.is_alive():
            p.kill()
        p.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--direct-timeout", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3, help="AMG timings: best of this many")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    _timed(64, 8, "amg")  # import pyamg and scipy once
    rows = []
    for size, islands in ((128, 20), (256, 80), (384, 180), (512, 327)):
        a, k, km, nm = full_frame_case(size, islands)
        n_new = int(nm.sum())
        best = min((_timed(size, islands, "amg") for _ in range(args.repeats)), key=lambda r: r[0])
        direct = direct_with_timeout(size, islands, args.direct_timeout)
        if direct is not None:
            f_a, f_d = np.log(best[2]), np.log(direct[2])
            err = float(np.abs(f_a - f_d).max() / max(np.abs(f_d).max(), 1e-30))
            dtxt, etxt = f"{direct[0]:.2f} (cpu {direct[1]:.2f})", f"{err:.1e}"
        else:
            dtxt, etxt = f"> {args.direct_timeout:.0f} (did not finish)", "n/a"
        rows.append((size, n_new, int(km.sum()), best[0], best[1], dtxt, etxt))
        print(rows[-1], flush=True)
    load1 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = ["| frame | new pixels (unknowns) | known pixels | AMG s (cpu s) | direct s | max rel. diff of log-correction |",
             "|---|---:|---:|---:|---:|---:|"]
    for size, n_new, n_known, wall, cpu, dtxt, etxt in rows:
        lines.append(f"| {size}x{size} | {n_new:,} ({100 * n_new / size ** 2:.1f}%) | {n_known:,} | "
                     f"{wall:.2f} ({cpu:.2f}) | {dtxt} | {etxt} |")
    full = rows[-1]
    verdict = "PASS" if full[3] < 2.0 else "FAIL"
    lines += ["", f"- captured full-frame case ({full[1]:,} unknowns): {full[3]:.2f} s wall, {full[4]:.2f} s CPU "
              f"(bar < 2 s): **{verdict}**"]
    print("\n".join(lines))
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores"
        section = "\n".join(["", f"## Seam solve: AMG-preconditioned CG vs the direct solve ({when})", "",
                             f"`python benchmarks/seam_speed.py` -- `seam_correction` on a frame where only a 1-px "
                             f"border and 3x3 islands are known (uniform weights, as in the pipeline); {machine}, "
                             f"1 thread, load average {load0} at start, {load1} at end (shared machine). AMG: best "
                             f"of {args.repeats}; direct: SuperLU in a subprocess with a {args.direct_timeout:.0f} s "
                             "limit.", "", *lines, ""])
        with open(Path(__file__).resolve().parent / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(section)


if __name__ == "__main__":
    main()
