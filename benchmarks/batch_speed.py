"""Time `scenescape batch` on a local Ray instance against the same jobs run one after another.

    python benchmarks/batch_speed.py [--jobs 4] [--frames 12] [--size 128] [--cpus 2] [--no-results]

The jobs are offline scene runs of the demo start frame (classical backends, different seeds). The batch
is the installed `scenescape batch` command in a subprocess (Ray start, worker imports, the runs, the
summary: everything a user waits for); the sequential baseline runs the same jobs in one process with the
same job runner (`scenescape.pipelines.batch.run_job`), so imports are paid once there. A second batch
over the finished folder measures the cost of a resume that has nothing to do. Appends a dated section to
benchmarks/RESULTS.md (append only) with the machine load at the start.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _jobs_file(path: Path, jobs: int, frames: int, size: int) -> Path:
    demo = ROOT / "samples" / "demo"
    spec = {
        "defaults": {"config": str(ROOT / "configs" / "cpu-tiny.yaml"), "image": str(demo / "image.png"),
                     "depth": str(demo / "depth.npy"), "frames": frames,
                     "overrides": [f"width={size}", f"height={size}", f"focal={500.0 * size / 512}"]},
        "jobs": [{"name": f"seed{i}", "seed": i} for i in range(jobs)],
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (one per job)")
    p.add_argument("--no-results", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    load = os.getloadavg()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="scenescape-batch-") as tmp:
        t = Path(tmp)
        jobs_file = _jobs_file(t / "jobs.yaml", args.jobs, args.frames, args.size)
        cmd = [sys.executable, "-m", "scenescape", "batch", str(jobs_file), "--out", str(t / "batch"),
               "--local-cpus", str(args.cpus)]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        batch_s = time.perf_counter() - t0
        with open(t / "batch" / "summary.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert all(r["status"] == "done" for r in rows), rows
        run_s = sum(float(r["run_seconds"]) for r in rows)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        rerun_s = time.perf_counter() - t0

        import torch

        from scenescape.pipelines.batch import load_jobs, run_job

        torch.set_num_threads(1)
        jobs, _ = load_jobs(jobs_file)
        t0 = time.perf_counter()
        for job in jobs:
            assert run_job(job, str(t / "sequential"))["status"] == "done"
        seq_s = time.perf_counter() - t0
    frames = args.jobs * args.frames
    res = {"batch_s": batch_s, "sequential_s": seq_s, "rerun_s": rerun_s, "run_s": run_s, "frames": frames}
    print(f"batch {batch_s:.1f} s ({frames / batch_s:.2f} frames/s), sequential in one process {seq_s:.1f} s "
          f"({frames / seq_s:.2f} frames/s), finished-batch rerun {rerun_s:.1f} s; sum of the runs' loop times "
          f"in the batch {run_s:.1f} s")
    if not args.no_results:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        import ray

        text = f"""

## Batch on a local Ray instance ({stamp})

`python benchmarks/batch_speed.py --jobs {args.jobs} --frames {args.frames} --size {args.size} --cpus {args.cpus}`
(ray {ray.__version__}, load average before the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, nproc={os.cpu_count()};
the machine was shared with other jobs, so times are upper bounds). {args.jobs} offline scene jobs of the demo start
frame at {args.size}x{args.size}, {args.frames} frames each, one CPU per job.

| | wall (s) | frames/s |
|---|---:|---:|
| `scenescape batch`, {args.cpus} Ray CPUs (Ray start and worker imports included) | {batch_s:.1f} | {frames / batch_s:.2f} |
| the same jobs one after another in one process (`run_job`) | {seq_s:.1f} | {frames / seq_s:.2f} |
| `scenescape batch` again over the finished runs (all skipped, Ray not started) | {rerun_s:.1f} | - |

Sum of the runs' loop times inside the batch: {run_s:.1f} s.
"""
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    return res


if __name__ == "__main__":
    main()
