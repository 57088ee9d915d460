"""``scenescape batch JOBS.yaml``: many scene/object runs as Ray tasks (see :mod:`scenescape.pipelines.batch`).

Examples::

    scenescape batch samples/batch-example.yaml --out runs/batch            # local Ray instance
    scenescape batch jobs.yaml --address auto --gpus-per-run 1 --out /shared/runs/sweep   # on a cluster
    scenescape batch jobs.yaml --out runs/batch --check                     # validate only

Exit status: 0 when every job is done (or was finished before), 1 when a job failed or is invalid (the
summary says which and why), 2 for a problem with the command itself (the jobs file, Ray missing).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scenescape.cli import plugin_option


@click.command("batch")
@click.argument("jobs_file", metavar="JOBS.yaml", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the run folders (one per job) and summary.csv/.md; default runs/batch-<JOBS name>. "
                   "On a cluster: shared storage every node sees at this path.")
@click.option("--address", default=None, metavar="ray://HOST:PORT|auto",
              help="Ray cluster to use: 'auto' (this machine is a cluster node), ray://HOST:PORT (Ray Client) "
                   "or HOST:PORT; default a local Ray instance.")
@click.option("--gpus-per-run", type=float, default=0.0, show_default=True, help="Ray GPUs per job.")
@click.option("--cpus-per-run", type=float, default=1.0, show_default=True, help="Ray CPUs per job.")
@click.option("--max-parallel", type=int, default=None, help="At most N jobs at once (default: as resources allow).")
@click.option("--retries", type=int, default=None,
              help="Ray retries per job after a crash or unexpected error (default: the file's 'retries', else 2).")
@click.option("--local-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all).")
@click.option("--check", is_flag=True, help="Validate the jobs file and show each job's state; run nothing.")
@plugin_option
def batch(jobs_file: str, out_dir: str | None, address: str | None, gpus_per_run: float, cpus_per_run: float,
          max_parallel: int | None, retries: int | None, local_cpus: int | None, check: bool) -> None:
    """Run every job of JOBS.yaml (scene or object runs) as Ray tasks, each into its own run folder.

    Finished runs are skipped, interrupted ones resume from their checkpoint, crashed ones are retried.
    """
    from scenescape.errors import ScenescapeError
    from scenescape.io import slugify
    from scenescape.pipelines.batch import load_jobs, run_batch, run_state

    if max_parallel is not None and max_parallel < 1:
        raise click.UsageError("--max-parallel must be >= 1")
    if gpus_per_run < 0 or cpus_per_run < 0:
        raise click.UsageError("--gpus-per-run and --cpus-per-run must be >= 0")
    jobs, top = load_jobs(jobs_file, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    out = Path(out_dir) if out_dir else Path("runs") / f"batch-{slugify(Path(jobs_file).stem, default='jobs')}"
    n_retries = retries if retries is not None else (top.retries if top.retries is not None else 2)
    if n_retries < 0:
        raise click.UsageError("--retries must be >= 0")
    for job in jobs:
        if job.error:
            click.echo(f"invalid: {job.label}: {job.error}", err=True)
    if check:
        for job in jobs:
            if job.error:
                state = "invalid"
            else:
                try:
                    state = run_state(job, out)
                except ScenescapeError as e:
                    state = f"error: {e}"
            click.echo(f"{job.name}: {job.mode}, {state}, cpus={job.cpus:g} gpus={job.gpus:g}")
        sys.exit(1 if any(j.error for j in jobs) else 0)
    from scenescape.backends.models import preflight_models

    # every model of every job checked once, before any worker loads one; all missing in one message
    preflight_models([job.config for job in jobs if not job.error])
    click.echo(f"{len(jobs)} jobs -> {out}")
    result = run_batch(jobs, out, address=address, retries=n_retries, max_parallel=max_parallel,
                       local_cpus=local_cpus, on_progress=lambda p: click.echo(p.line()))
    for row in result.rows:
        if row.get("status") in ("failed", "invalid"):
            click.echo(f"{row['status']}: {row['job']}: {row.get('error', '')}", err=True)
    click.echo(f"summary: {result.summary['md']} ({result.summary['csv'].name})")
    if not result.ok:
        sys.exit(1)


COMMANDS = [batch]
