"""Batches of scene and object runs on Ray (``scenescape batch JOBS.yaml``).

A jobs file lists runs; each becomes one Ray task with the resources it asks for, and writes its own
run folder ``OUT/<job name>/`` with the product's own pipelines (:class:`ScenePipeline`,
:class:`ObjectPipeline`), so a batch run folder is exactly the folder of a single run: same files,
same atomic writes, same checkpoints.

Jobs file (paths in it are relative to the file's folder)::

    defaults:                    # optional: merged under every job (a job's own keys win)
      config: cpu-tiny.yaml      #   a preset; its path relative to this file
      overrides: [frames=8]      #   defaults' overrides come before each job's own
    retries: 2                   # optional: Ray retries per job (the --retries option wins)
    jobs:
      - name: room-a             # folder name: letters, digits, '-' and '_' (default: from the content)
        image: ../samples/demo/image.png
        depth: ../samples/demo/depth.npy
        seed: 1
      - name: mug
        mode: object             # scene (default) or object
        prompt: a ceramic mug
        config: object/analytic-cpu.yaml
        overrides: [steps=200]
        gpus: 1                  # resources of this job (default --gpus-per-run / --cpus-per-run)

The whole file is validated before anything runs (a :class:`JobSpec` per job; unknown keys are errors
that name the job): a file-level problem (not YAML, no ``jobs``, two jobs with one name) stops the batch;
an invalid job is reported with its error and the other jobs run.

Resume, at two levels:

* within a batch, a job whose worker dies (killed, out of memory, node lost) or that raises an
  unexpected exception is retried by Ray (``max_retries`` / ``retry_exceptions``) up to ``retries``
  times; each attempt continues the run folder from its last checkpoint. A user error (a
  :class:`~scenescape.errors.ScenescapeError`: bad input, corrupt checkpoint) is not retried: it would
  fail the same way.
* a later ``scenescape batch`` with the same file and ``--out`` skips finished runs without touching
  them (nothing is rewritten), resumes interrupted ones from their checkpoint and retries failed ones.
  A run folder whose saved config differs from its job's is an error for that job (rename the job or
  remove the folder), never silently reused.

Bookkeeping lives in ``OUT/.batch/`` (one JSON per job: the attempts and what each resumed from);
``OUT/summary.csv`` and ``OUT/summary.md`` list every job's status, attempts, frames and times.

Test hook: ``SCENESCAPE_BATCH_TEST_KILL=JOB:FRAME:FLAGFILE`` makes the worker running scene job ``JOB``
SIGKILL itself right after frame ``FRAME``, once (the flag file is created first; while it exists the
hook does nothing). The tests use it to kill a worker mid-run.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from scenescape.config import from_dict, load_yaml, merge_dicts, overrides_to_dict, to_dict
from scenescape.errors import ConfigError, InputError, RunError, ScenescapeError

BOOKKEEPING = ".batch"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
KILL_HOOK_ENV = "SCENESCAPE_BATCH_TEST_KILL"
RAY_HINT = ('scenescape batch needs Ray: pip install "scenescape[batch]" (or pip install "ray[default]>=2.9"); '
            "on a cluster, install it on every node")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


# ---------------------------------------------------------------------------------------------
# The jobs file
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class JobSpec:
    """One entry of ``jobs:`` (and the shape of ``defaults:``)."""

    name: str = ""
    """Run folder name under ``--out``; default: the prompt or image name plus a hash of the job."""
    mode: Literal["scene", "object"] = "scene"
    prompt: str = ""
    image: str | None = None
    """Scene mode: the start photo (resized to the config's size like ``generate --image``)."""
    depth: str | None = None
    """Scene mode: z-depth of ``image`` (.npy, or 16-bit PNG in mm), like ``--init-depth``."""
    camera: str | None = None
    """Scene mode: start camera JSON, like ``--camera``."""
    config: str | None = None
    """YAML preset (scene: ``configs/*.yaml``; object: ``configs/object/*.yaml``)."""
    overrides: list[str] = dataclasses.field(default_factory=list)
    """``key=value`` config overrides, as on the command line."""
    seed: int | None = None
    frames: int | None = None
    """Scene mode: number of frames, like ``generate --frames``."""
    trajectory: str | None = None
    """Scene mode: a preset name or a trajectory file, like ``generate --trajectory`` (its params reset)."""
    steps: int | None = None
    """Object mode: optimisation steps, like ``object --steps``."""
    cpus: float | None = None
    """Ray CPUs for this job (default ``--cpus-per-run``)."""
    gpus: float | None = None
    """Ray GPUs for this job (default ``--gpus-per-run``)."""


@dataclasses.dataclass
class BatchFile:
    """The top level of a jobs file."""

    jobs: list[Any] = dataclasses.field(default_factory=list)
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    retries: int | None = None


@dataclasses.dataclass
class Job:
    """A validated job, ready to ship to a worker (plain data only: absolute paths, a config dict).

    ``error`` is set (and nothing else need be) for a job that did not validate.
    """

    index: int
    name: str
    mode: str = "scene"
    prompt: str = ""
    image: str | None = None
    depth: str | None = None
    camera: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    cpus: float = 1.0
    gpus: float = 0.0
    error: str | None = None

    @property
    def label(self) -> str:
        where = f"jobs[{self.index}]"
        return where if self.name == where else f"job '{self.name}' ({where})"


def _abs(value: str | None, base: Path) -> str | None:
    if value is None or value == "":
        return None
    p = Path(value).expanduser()
    return str((p if p.is_absolute() else base / p).resolve())


def _merge_spec(defaults: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    out = {**defaults, **item}
    if "overrides" in defaults or "overrides" in item:
        d, o = defaults.get("overrides") or [], item.get("overrides") or []
        if isinstance(d, str) or isinstance(o, str):
            raise ConfigError("overrides must be a list of key=value strings, e.g. [seed=3, frames=8]")
        out["overrides"] = [*d, *o]
    return out


def _default_name(spec: JobSpec) -> str:
    from scenescape.io import slugify

    stem = spec.prompt or (Path(spec.image).stem if spec.image else spec.mode)
    digest = hashlib.sha256(json.dumps(to_dict(spec), sort_keys=True).encode()).hexdigest()[:8]
    return f"{slugify(stem, max_len=40, default=spec.mode).replace('.', '-')}-{digest}"


def _scene_config(spec: JobSpec, base: Path) -> dict[str, Any]:
    """The resolved SceneConfig (as plain data, with the prompt) of a scene job; validates it fully."""
    from scenescape.pipelines.scene import SceneConfig, ScenePipeline
    from scenescape.trajectories import looks_like_path

    if spec.steps is not None:
        raise InputError("'steps' is for object jobs; a scene job takes frames")
    # the preset, then the trajectory (its params reset), then the overrides, then the job's own keys
    data: dict = load_yaml(_abs(spec.config, base)) if spec.config else {}
    if spec.trajectory is not None:
        t = spec.trajectory
        data["trajectory"] = {"name": _abs(t, base) if looks_like_path(t) else t, "params": {}}
    data = merge_dicts(data, overrides_to_dict(list(spec.overrides)))
    if spec.prompt:
        data["prompt"] = spec.prompt
    if spec.seed is not None:
        data["seed"] = spec.seed
    if spec.frames is not None:
        data["frames"] = spec.frames
    cfg = from_dict(SceneConfig, data)
    if looks_like_path(cfg.trajectory.name):  # workers may run in another folder: make it absolute
        if not Path(cfg.trajectory.name).is_file():
            raise InputError(f"trajectory file '{cfg.trajectory.name}' does not exist")
        cfg.trajectory = dataclasses.replace(cfg.trajectory, name=str(Path(cfg.trajectory.name).resolve()))
    # the product's own trajectory code checks the preset name, its params and a file's camera count
    ScenePipeline(config=cfg).build_cameras(cfg.camera(), scene_scale=1.0)
    from scenescape.backends.base import DEPTH, INPAINTERS, TEXT_TO_IMAGE

    for key, registry in (("depth", DEPTH), ("first_depth", DEPTH), ("inpainter", INPAINTERS),
                          ("text_to_image", TEXT_TO_IMAGE)):
        _check_backend(getattr(cfg, key), registry, key)
    if not spec.image and cfg.first_frame == "image":
        raise InputError("the config's first_frame is 'image' but the job has no image: add image: PATH")
    if not spec.image and not cfg.prompt.strip():
        raise InputError("a scene job needs a prompt or an image (prompt: ..., image: PATH)")
    return to_dict(cfg)


def _check_backend(section: Any, registry: Any, key: str) -> None:
    """A backend section names a known backend and its options fit the backend's ``Config`` (nothing is
    built: no model is loaded on the machine that validates)."""
    if not section.name:
        return
    cls = registry.get(section.name)
    cfg_cls = getattr(cls, "Config", None)
    if cfg_cls is not None and dataclasses.is_dataclass(cfg_cls):
        from_dict(cfg_cls, dict(section.options), where=f"{key}.options")


def _object_config(spec: JobSpec, base: Path) -> dict[str, Any]:
    from scenescape.pipelines.object.pipeline import ObjectConfig

    for key in ("image", "depth", "camera", "frames", "trajectory"):
        if getattr(spec, key):
            raise InputError(f"'{key}' is for scene jobs; an object job takes a prompt and steps (mode: object)")
    if not spec.prompt.strip():
        raise InputError("an object job needs a prompt (prompt: a ceramic mug)")
    data: dict = load_yaml(_abs(spec.config, base)) if spec.config else {}
    data = merge_dicts(data, overrides_to_dict(list(spec.overrides)))
    if spec.seed is not None:
        data["seed"] = spec.seed
    if spec.steps is not None:
        data["steps"] = spec.steps
    data["progress"] = False
    cfg = from_dict(ObjectConfig, data)
    from scenescape.backends.base import GUIDANCE

    _check_backend(cfg.guidance, GUIDANCE, "guidance")
    return to_dict(cfg)


def load_jobs(path: str | Path, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> tuple[list[Job], BatchFile]:
    """Read and validate a jobs file.

    Returns the jobs (invalid ones carry ``error``) and the file's top level. A problem with the file
    itself (missing, not YAML, no jobs, duplicate names) raises :class:`ConfigError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"jobs file '{p}' does not exist")
    top = load_yaml(p)
    try:
        bf = from_dict(BatchFile, top)
    except ConfigError as e:
        raise ConfigError(f"jobs file '{p}': {e}") from e
    if not bf.jobs:
        raise ConfigError(f"jobs file '{p}' has no jobs: add a 'jobs:' list (see samples/batch-example.yaml)")
    if bf.retries is not None and bf.retries < 0:
        raise ConfigError(f"jobs file '{p}': retries must be >= 0, got {bf.retries}")
    if "name" in bf.defaults:
        raise ConfigError(f"jobs file '{p}': 'defaults' cannot set a name (each job has its own)")
    try:
        from_dict(JobSpec, bf.defaults, where="defaults")
    except ConfigError as e:
        raise ConfigError(f"jobs file '{p}': {e}") from e
    base = p.resolve().parent
    jobs: list[Job] = []
    for i, item in enumerate(bf.jobs):
        raw_name = item.get("name") if isinstance(item, dict) else None
        job = Job(index=i, name=str(raw_name) if raw_name else f"jobs[{i}]")
        try:
            if not isinstance(item, dict):
                raise ConfigError(f"expected a mapping of job keys, got {item!r}")
            spec = from_dict(JobSpec, _merge_spec(bf.defaults, item))
            if spec.name and not _NAME.match(spec.name):
                raise ConfigError(f"name '{spec.name}' must be letters, digits, '-' and '_' (it names the run "
                                  "folder), starting with a letter or digit")
            job.name = spec.name or _default_name(spec)
            for key in ("image", "depth", "camera"):
                v = _abs(getattr(spec, key), base)
                if v is not None and not Path(v).is_file():
                    raise InputError(f"{key} '{getattr(spec, key)}' does not exist (paths are relative to '{base}')")
                setattr(job, key, v)
            if spec.depth and not spec.image:
                raise InputError("depth needs image (the photo the depth belongs to)")
            if job.camera:
                from scenescape.pipelines.scene.inputs import load_start_camera

                load_start_camera(job.camera)  # a malformed camera file is this job's error now, not later
            job.mode, job.prompt = spec.mode, spec.prompt
            job.config = _scene_config(spec, base) if spec.mode == "scene" else _object_config(spec, base)
            job.cpus = float(spec.cpus if spec.cpus is not None else cpus_per_run)
            job.gpus = float(spec.gpus if spec.gpus is not None else gpus_per_run)
            if job.cpus < 0 or job.gpus < 0:
                raise ConfigError(f"cpus and gpus must be >= 0, got cpus={job.cpus} gpus={job.gpus}")
        except ScenescapeError as e:
            job.error = str(e)
        jobs.append(job)
    seen: dict[str, int] = {}
    for job in jobs:
        if job.name in seen:
            raise ConfigError(f"jobs file '{p}': jobs[{seen[job.name]}] and jobs[{job.index}] are both named "
                              f"'{job.name}' (one run folder each): give them different names")
        seen[job.name] = job.index
    return jobs, bf


# ---------------------------------------------------------------------------------------------
# One job (runs in a Ray worker, or in-process)
# ---------------------------------------------------------------------------------------------


def _saved_config(path: Path, mode: str) -> dict[str, Any]:
    try:
        if mode == "scene":
            from scenescape.pipelines.scene import SceneConfig

            return to_dict(SceneConfig.load(path))
        from scenescape.pipelines.object.pipeline import ObjectConfig

        return to_dict(ObjectConfig.load(path))
    except ScenescapeError as e:
        raise RunError(f"run folder '{path.parent}': its config.yaml cannot be read ({e})") from e


def _config_diff(saved: dict[str, Any], wanted: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    return sorted(k for k in set(saved) | set(wanted) if k not in ignore and saved.get(k) != wanted.get(k))


def _checkpoint_frame(run_dir: Path) -> int | None:
    """The last checkpointed frame of a scene run folder (from ``checkpoint/state.json``), if any."""
    try:
        frame = json.loads((run_dir / "checkpoint" / "state.json").read_text()).get("frame")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    return frame if isinstance(frame, int) else None


def _frames_on_disk(run_dir: Path) -> int:
    d = run_dir / "frames"
    return sum(1 for f in d.iterdir() if f.suffix == ".png" and not f.name.startswith(".")) if d.is_dir() else 0


def run_state(job: Job, out_root: str | Path) -> str:
    """``"finished"``, ``"partial"`` (a run folder with progress to resume) or ``"new"``.

    Raises :class:`RunError` when the folder holds something else: a run with another config, or
    files that are not a scenescape run.
    """
    from scenescape.pipelines.runs import read_marker

    run = Path(out_root) / job.name
    if not run.exists() or (run.is_dir() and not any(run.iterdir())):
        return "new"
    if not run.is_dir():
        raise RunError(f"'{run}' exists and is not a folder: move it or rename {job.label}")
    marker = read_marker(run)
    if marker is None:  # only folders scenescape marked are resumed or replaced
        raise RunError(f"'{run}' exists and is not a scenescape run folder (no valid .scenescape-run.json): "
                       f"move it or rename {job.label}")
    if marker["mode"] != job.mode:
        raise RunError(f"run folder '{run}' holds a {marker['mode']} run, but {job.label} is a {job.mode} job: "
                       "remove the folder or rename the job")
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        return "partial"  # its creation was interrupted: the run starts again in the same folder
    ignore = () if job.mode == "scene" else ("progress", "steps", "output")  # as the object resume allows
    diff = _config_diff(_saved_config(cfg_file, job.mode), job.config, ignore=ignore)
    if diff:
        raise RunError(f"run folder '{run}' holds a run with another config (differs in {diff}): remove "
                       f"the folder or rename {job.label}")
    manifest = run / "manifest.json"
    if job.mode == "scene":
        return "finished" if manifest.is_file() else "partial"
    try:
        m = json.loads(manifest.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        m = {}
    files = m.get("files") or {}
    export = (job.config.get("output") or {}).get("export", True)
    target = int(job.config.get("steps", 0) or 0) + int((job.config.get("mesh") or {}).get("steps", 0) or 0)
    if (m.get("steps") == m.get("target_steps") == target and all((run / f).is_file() for f in files.values())
            and (not export or "video" in files)):
        return "finished"
    return "partial"


def _record_attempt(out_root: Path, job: Job, batch_id: str, resume_from: Any) -> int:
    """Append this attempt to ``OUT/.batch/<job>.json``; the number of attempts in this batch."""
    from scenescape.io import write_json

    f = out_root / BOOKKEEPING / f"{job.name}.json"
    try:
        data = json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    history = list(data.get("attempts") or [])
    now = time.time()
    history.append({"batch": batch_id, "started": _stamp(now), "time": now, "host": socket.gethostname(),
                    "pid": os.getpid(), "resume_from": resume_from})
    write_json(f, {"job": job.name, "attempts": history})
    return sum(1 for h in history if h.get("batch") == batch_id)


def attempts_of(out_root: str | Path, name: str, batch_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded attempts of job ``name`` (of one batch if ``batch_id``)."""
    try:
        data = json.loads((Path(out_root) / BOOKKEEPING / f"{name}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [h for h in data.get("attempts") or [] if batch_id is None or h.get("batch") == batch_id]


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _kill_hook(name: str) -> Callable[[int, float], None] | None:
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec:
        return None
    job, frame, flag = spec.split(":", 2)
    if job != name:
        return None

    def hook(i: int, seconds: float) -> None:
        if i != int(frame):
            return
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fires once: the flag exists after
        except FileExistsError:
            return
        os.close(fd)
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _run_scene(job: Job, run: Path, state: str) -> dict[str, Any]:
    from scenescape.pipelines.scene import SceneConfig, ScenePipeline
    from scenescape.pipelines.scene.inputs import load_start_camera, load_start_inputs

    cfg = from_dict(SceneConfig, job.config)
    pipe = ScenePipeline.from_config(cfg)
    hook = _kill_hook(job.name)
    if state == "partial" and _checkpoint_frame(run) is not None:
        pipe.run(out_dir=run, resume=True, progress=False, on_frame=hook)
    else:  # nothing checkpointed yet (or a fresh folder): start (again) from the job's inputs
        img, depth = load_start_inputs(cfg, job.image, job.depth)  # as `generate --image --init-depth`
        cam = load_start_camera(job.camera) if job.camera else None
        pipe.run(prompt=cfg.prompt, init_image=img, init_depth=depth, start_camera=cam,
                 out_dir=run, overwrite=state == "partial", progress=False, on_frame=hook)
    m = json.loads((run / "manifest.json").read_text())
    return {"frames": int(m.get("frames", 0)), "run_seconds": float(m.get("loop_s", 0.0))}


def _run_object(job: Job, run: Path, state: str) -> dict[str, Any]:
    from scenescape.pipelines.object.pipeline import ObjectConfig, ObjectPipeline

    cfg = from_dict(ObjectConfig, job.config)
    fresh = state != "partial" or not (run / "config.yaml").is_file()  # nothing (or a half-made folder) to resume
    result = ObjectPipeline(cfg).run(job.prompt, run, resume=not fresh, overwrite=fresh and state == "partial")
    return {"steps": int(result.steps), "run_seconds": float(result.seconds)}


def run_job(job: Job, out_root: str, batch_id: str = "", plugins: list[str] | None = None) -> dict[str, Any]:
    """Run one job into ``out_root/<job.name>`` (skip it when finished, resume it when interrupted).

    Returns a result row. A :class:`ScenescapeError` (bad input, corrupt checkpoint) is returned as a
    failed row; any other exception propagates (Ray retries it, then reports it). ``plugins``: the
    driver's plugin consent (:func:`scenescape.registry.plugin_consent`), in force for this job only.
    """
    from scenescape.registry import plugins_allowed

    with plugins_allowed(plugins or []):  # the driver's consent (--allow-plugins / SCENESCAPE_ALLOW_PLUGINS)
        return _run_job(job, out_root, batch_id)


def _run_job(job: Job, out_root: str, batch_id: str) -> dict[str, Any]:
    t0 = time.time()
    out = Path(out_root)
    run = out / job.name
    row: dict[str, Any] = {"job": job.name, "mode": job.mode, "run_dir": str(run), "host": socket.gethostname()}
    try:
        state = run_state(job, out)
        if state == "finished":
            return {**row, "status": "skipped", "started": _stamp(t0), "finished": _stamp(time.time()),
                    "seconds": 0.0, **finished_info(job, out)}
        resume_from = _checkpoint_frame(run) if job.mode == "scene" else (
            "checkpoint.pt" if (run / "checkpoint.pt").is_file() else None)
        row["attempt"] = _record_attempt(out, job, batch_id, resume_from if state == "partial" else None)
        import warnings

        with warnings.catch_warnings():  # one line per warning, naming the job (as the CLI prints them)
            warnings.showwarning = lambda message, *a, **k: print(f"warning: {job.name}: {message}", file=sys.stderr)
            info = _run_scene(job, run, state) if job.mode == "scene" else _run_object(job, run, state)
        status = "done"
    except ScenescapeError as e:
        info, status = {"error": f"{type(e).__name__}: {e}"}, "failed"
    t1 = time.time()
    return {**row, **info, "status": status, "started": _stamp(t0), "finished": _stamp(t1),
            "seconds": round(t1 - t0, 3), "end_time": t1}


def finished_info(job: Job, out_root: str | Path) -> dict[str, Any]:
    """Frames/steps and run time of a finished run folder (from its manifest or summary)."""
    run = Path(out_root) / job.name
    try:
        if job.mode == "scene":
            m = json.loads((run / "manifest.json").read_text())
            return {"frames": int(m.get("frames", 0)), "run_seconds": float(m.get("loop_s", 0.0)),
                    "finished": m.get("finished", "")}
        m = json.loads((run / "manifest.json").read_text())
        return {"steps": int(m.get("steps", 0)), "run_seconds": float(m.get("seconds", 0.0)),
                "finished": m.get("finished", "")}
    except (FileNotFoundError, json.JSONDecodeError, ValueError, TypeError):
        return {}


# ---------------------------------------------------------------------------------------------
# The batch (driver side)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Progress:
    """A snapshot of the batch, passed to the ``on_progress`` callback."""

    total: int
    done: int
    running: int
    """Jobs whose task has started (a worker is on it)."""
    queued: int
    """Jobs submitted to Ray and waiting for resources."""
    failed: int
    skipped: int
    invalid: int
    frames: int
    """Scene frames written by this batch so far (on disk, in running and finished runs)."""
    seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"batch: {self.done}/{self.total} done, {self.running} running, {self.queued} queued, "
                f"{self.failed} failed "
                f"({self.skipped} skipped, {self.invalid} invalid); {self.frames} frames, "
                f"{self.frames_per_second:.2f} frames/s; {self.seconds:.0f} s")


@dataclasses.dataclass
class BatchResult:
    rows: list[dict[str, Any]]
    seconds: float
    frames: int
    summary: dict[str, Path]

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.get("status") == status)

    @property
    def ok(self) -> bool:
        return all(r.get("status") in ("done", "skipped") for r in self.rows)


def import_ray() -> Any:
    """``ray``, or a :class:`ScenescapeError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ScenescapeError(RAY_HINT) from e
    return ray


def connect(ray: Any, address: str | None, local_cpus: int | None = None) -> bool:
    """Connect to Ray. An existing connection is used as is; otherwise ``address`` (else the environment's
    ``RAY_ADDRESS``): None starts a local instance, ``"auto"`` joins the cluster this machine is part of,
    ``ray://HOST:PORT`` connects with Ray Client. True when this call connected (the caller disconnects)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable, as `ray job submit` sets
    kwargs: dict[str, Any] = {"logging_level": "WARNING"}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=local_cpus, include_dashboard=False, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
        hint = (" (is the cluster up? `ray start --head` on the head; --address auto only works on a cluster "
                "node; ray:// needs Ray Client: pip install \"scenescape[batch]\")") if address else ""
        raise ScenescapeError(f"cannot connect to {where}: {e}{hint}") from e
    return True


def run_batch(jobs: list[Job], out_root: str | Path, *, address: str | None = None, retries: int = 2,
              max_parallel: int | None = None, local_cpus: int | None = None,
              on_progress: Callable[[Progress], None] | None = None, progress_every: float = 10.0) -> BatchResult:
    """Run the jobs as Ray tasks; write ``summary.csv`` / ``summary.md`` in ``out_root``.

    Finished runs are skipped without starting Ray (a batch with nothing left to do needs no Ray at
    all); the others are submitted (at most ``max_parallel`` at a time) with their ``cpus``/``gpus``,
    ``max_retries=retries`` and ``retry_exceptions=True``.
    """
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel must be >= 1, got {max_parallel}")
    out = Path(out_root).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' exists and is not a folder")
    lock = _lock_batch(out)  # one batch per --out at a time
    try:
        return _run_locked(jobs, out, address, retries, max_parallel, local_cpus, on_progress, progress_every)
    finally:
        lock.close()


def _lock_batch(out: Path) -> Any:
    """Hold ``OUT/.batch/batch.lock`` (``flock``; the kernel drops it if this process dies)."""
    d = out / BOOKKEEPING
    d.mkdir(parents=True, exist_ok=True)
    fh = open(d / "batch.lock", "a+")
    try:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - no flock (Windows)
        return fh
    except OSError as e:
        fh.seek(0)
        who = fh.read().strip() or "another process"
        fh.close()
        raise RunError(f"another scenescape batch is running on '{out}' ({who}); wait for it to finish, or "
                       "choose another --out") from e
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    fh.flush()
    return fh


def _run_locked(jobs: list[Job], out: Path, address: str | None, retries: int, max_parallel: int | None,
                local_cpus: int | None, on_progress: Callable[[Progress], None] | None,
                progress_every: float) -> BatchResult:
    t0 = time.time()
    batch_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t0)) + f"-{os.getpid()}"
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        base = {"job": job.name, "mode": job.mode, "run_dir": str(out / job.name)}
        if job.error:
            rows[job.name] = {**base, "status": "invalid", "error": job.error}
            continue
        try:
            state = run_state(job, out)
        except ScenescapeError as e:
            rows[job.name] = {**base, "status": "failed", "error": f"{type(e).__name__}: {e}"}
            continue
        if state == "finished":
            rows[job.name] = {**base, "status": "skipped", **finished_info(job, out)}
        else:
            todo.append(job)
    baseline = {j.name: _frames_on_disk(out / j.name) for j in todo if j.mode == "scene"}

    started: set[str] = set()

    def snapshot(inflight: list[Job]) -> Progress:
        for j in inflight:  # a task has started once it recorded its attempt
            if j.name not in started and attempts_of(out, j.name, batch_id):
                started.add(j.name)
        running = [j for j in inflight if j.name in started]
        frames = sum(int(r.get("frames", 0)) - baseline.get(r["job"], 0) for r in rows.values()
                     if r.get("status") == "done" and r.get("mode") == "scene")
        frames += sum(_frames_on_disk(out / j.name) - baseline.get(j.name, 0) for j in running if j.mode == "scene")
        st = [r.get("status") for r in rows.values()]
        return Progress(total=len(jobs), done=st.count("done") + st.count("skipped"), running=len(running),
                        queued=len(inflight) - len(running), failed=st.count("failed"), skipped=st.count("skipped"), invalid=st.count("invalid"),
                        frames=max(frames, 0), seconds=time.time() - t0)

    def finish() -> BatchResult:
        ordered = []
        for job in jobs:
            row = dict(rows.get(job.name) or {"job": job.name, "mode": job.mode, "run_dir": str(out / job.name),
                                              "status": "interrupted", "error": "the batch stopped first"})
            if row.get("status") in ("done", "failed", "interrupted") and job.error is None:
                tries = attempts_of(out, job.name, batch_id)
                row["attempts"] = len(tries)
                if tries and isinstance(tries[0].get("time"), (int, float)):  # from the first attempt on
                    row["started"] = tries[0]["started"]
                    if isinstance(row.get("end_time"), (int, float)):
                        row["seconds"] = round(row["end_time"] - tries[0]["time"], 3)
            ordered.append(row)
        res = BatchResult(ordered, time.time() - t0, snapshot([]).frames, {})
        res.summary = write_summary(res, out)
        return res

    if not todo:
        result = finish()
        if on_progress is not None:
            on_progress(snapshot([]))
        return result
    ray = import_ray()
    owned = connect(ray, address, local_cpus)
    try:
        out.mkdir(parents=True, exist_ok=True)
        nodes = _node_resources(ray)
        waiting = []
        for job in todo:  # a task no node can hold would wait forever: report it now instead
            if nodes is not None and not any(n.get("CPU", 0.0) >= job.cpus and n.get("GPU", 0.0) >= job.gpus
                                             for n in nodes):
                have = ", ".join(f"{n.get('CPU', 0):g} CPUs {n.get('GPU', 0):g} GPUs" for n in nodes) or "no nodes"
                rows[job.name] = {"job": job.name, "mode": job.mode, "run_dir": str(out / job.name),
                                  "status": "failed",
                                  "error": f"needs {job.cpus:g} CPUs and {job.gpus:g} GPUs on one node, but the Ray "
                                           f"nodes have {have}; lower --cpus-per-run/--gpus-per-run (or the job's "
                                           "cpus/gpus) or add such a node"}
            else:
                waiting.append(job)
        remote = ray.remote(run_job)
        from scenescape.registry import plugin_consent

        consent = plugin_consent()  # jobs were validated under it; workers get the same, nothing more
        inflight: dict[Any, Job] = {}
        last_counts, last_time = (-1, -1, -1), time.time()
        while waiting or inflight:
            while waiting and (max_parallel is None or len(inflight) < max_parallel):
                job = waiting.pop(0)
                ref = remote.options(num_cpus=job.cpus, num_gpus=job.gpus, max_retries=retries,
                                     retry_exceptions=True, name=f"scenescape-{job.name}").remote(
                    job, str(out), batch_id, consent)
                inflight[ref] = job
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                job = inflight.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as e:  # retries used up: a crashed worker or an unexpected exception
                    row = {"job": job.name, "mode": job.mode, "run_dir": str(out / job.name),
                           "status": "failed", "error": _short_error(e)}
                rows[job.name] = row
            if on_progress is not None:
                p = snapshot(list(inflight.values()))
                counts = (p.done, p.running, p.failed)
                if ready or counts != last_counts or time.time() - last_time >= progress_every:
                    on_progress(p)
                    last_counts, last_time = counts, time.time()
        return finish()  # the summary is on disk before Ray shuts down
    except BaseException:
        finish()  # an interrupted batch (Ctrl-C) still leaves its summary; rerun to resume
        raise
    finally:
        if owned:
            ray.shutdown()


def _node_resources(ray: Any) -> list[dict[str, float]] | None:
    """Total resources of each live node (None when Ray cannot tell, e.g. an older Ray Client)."""
    try:
        return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
    except Exception:
        return None


def _short_error(e: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: " + (" | ".join(lines[-3:]) if lines else str(e))[:600]


# ---------------------------------------------------------------------------------------------
# Summary tables
# ---------------------------------------------------------------------------------------------

COLUMNS = ("job", "mode", "status", "attempts", "frames", "steps", "seconds", "run_seconds", "started",
           "finished", "host", "run_dir", "error")
"""``status``: done, skipped (finished before this batch), failed, invalid, interrupted; ``attempts``: tasks
started for the job in this batch; ``seconds``: wall time from its first attempt to its end (retries
included); ``run_seconds``: the run's own loop time (its manifest's ``loop_s``, object mode's seconds)."""


def write_summary(result: BatchResult, out_root: str | Path) -> dict[str, Path]:
    """``summary.csv`` and ``summary.md`` (one row per job, :data:`COLUMNS`), written atomically."""
    from scenescape.io import atomic_write_text

    out = Path(out_root)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in result.rows:
        w.writerow({k: _cell(r.get(k)) for k in COLUMNS})
    atomic_write_text(out / SUMMARY_CSV, buf.getvalue())
    md_cols = [c for c in COLUMNS if c not in ("run_dir", "host")]
    lines = [f"# Batch summary ({_stamp(time.time())})", "",
             f"{len(result.rows)} jobs: {result.count('done')} done, {result.count('skipped')} skipped (finished "
             f"before), {result.count('failed')} failed, {result.count('invalid')} invalid; {result.frames} frames "
             f"in {result.seconds:.1f} s ({result.frames / max(result.seconds, 1e-9):.2f} frames/s).", "",
             "| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
    for r in result.rows:
        lines.append("| " + " | ".join(_cell(r.get(c)).replace("|", "\\|").replace("\n", " ") for c in md_cols) + " |")
    atomic_write_text(out / SUMMARY_MD, "\n".join(lines) + "\n")
    return {"csv": out / SUMMARY_CSV, "md": out / SUMMARY_MD}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v else "0"
    return str(v)


__all__ = [
    "BatchFile", "BatchResult", "COLUMNS", "Job", "JobSpec", "Progress", "RAY_HINT", "attempts_of", "connect",
    "finished_info", "import_ray", "load_jobs", "run_batch", "run_job", "run_state", "write_summary",
]
