"""`scenescape batch`: the jobs file is validated up front; on a local Ray instance a job whose worker is
SIGKILLed mid-run is retried and resumes from its checkpoint, ending byte-for-byte equal to the same run
made alone by `scenescape generate`; a finished batch re-run rewrites nothing; an invalid job is reported
while the others complete."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from scenescape.cli import cli
from scenescape.errors import ConfigError
from scenescape.pipelines.batch import KILL_HOOK_ENV, attempts_of, load_jobs, run_job, run_state

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "samples" / "demo"
TINY = ROOT / "configs" / "cpu-tiny.yaml"
FRAMES = 5
KILL_AT = 2  # the worker of job "killed" SIGKILLs itself right after this frame, once


def _write_jobs(path: Path, jobs: list[dict], **top) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"jobs": jobs, **top}, sort_keys=False))
    return path


def _scene_job(name: str, seed: int, frames: int = FRAMES, **extra) -> dict:
    return {"name": name, "config": str(TINY), "image": str(DEMO / "image.png"), "depth": str(DEMO / "depth.npy"),
            "seed": seed, "frames": frames, **extra}


def _outputs(run: Path) -> dict[str, bytes]:
    """Every output of a run folder that does not record times (the manifest and video carry none of
    the run's content beyond the frames)."""
    keep = ("frames/", "depth/", "masks/", "inputs/", "config.yaml", "cameras.json", "transforms.json", "mesh.ply",
            "mesh.glb")
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and str(p.relative_to(run)).startswith(keep)}


def _snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """(mtime_ns, sha256) of every file in the run folders under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] not in (".batch", "summary.csv", "summary.md"):
            out[str(rel)] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return {r["job"]: r for r in csv.DictReader(f)}


# ---------------------------------------------------------------------------------------------
# The jobs file (no Ray)
# ---------------------------------------------------------------------------------------------


def test_jobs_file_is_validated_per_job_with_defaults_and_relative_paths(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "image.png").write_bytes((DEMO / "image.png").read_bytes())
    jobs_file = _write_jobs(tmp_path / "jobs" / "jobs.yaml", [
        {"name": "ok", "image": "../in/image.png", "overrides": ["frames=3"]},
        {"name": "typo", "imagee": "x.png"},
        {"name": "noimage", "image": "../in/missing.png"},
        {"name": "obj-photo", "mode": "object", "prompt": "a mug", "image": "../in/image.png"},
        {"name": "badkey", "overrides": ["inpainter.options.radiuss=2"]},
        {"prompt": "a quiet library", "overrides": ["text_to_image.name=", "first_frame=inpainter"]},
    ], defaults={"config": str(TINY), "overrides": ["seed=5"]})
    jobs, top = load_jobs(jobs_file)
    by = {j.name: j for j in jobs}
    ok = by["ok"]
    assert ok.error is None and ok.image == str((tmp_path / "in" / "image.png").resolve())
    assert ok.config["frames"] == 3 and ok.config["seed"] == 5 and ok.config["width"] == 64  # preset + both overrides
    assert "unknown config key 'imagee'" in by["typo"].error and "Did you mean 'image'" in by["typo"].error
    assert "does not exist" in by["noimage"].error
    assert "scene jobs" in by["obj-photo"].error
    assert "radiuss" in by["badkey"].error
    unnamed = jobs[5]
    assert unnamed.error is None and unnamed.name.startswith("a-quiet-library-")  # a name from the content
    assert load_jobs(jobs_file)[0][5].name == unnamed.name  # stable

    shipped, _ = load_jobs(ROOT / "samples" / "batch-example.yaml")  # the README's example stays valid
    assert [j.error for j in shipped] == [None] * len(shipped) and {j.mode for j in shipped} == {"scene", "object"}

    with pytest.raises(ConfigError, match="both named 'a'"):
        load_jobs(_write_jobs(tmp_path / "dup.yaml", [{"name": "a", "prompt": "x"}, {"name": "a", "prompt": "y"}]))
    with pytest.raises(ConfigError, match="unknown config key 'job'"):
        load_jobs(_write_jobs(tmp_path / "top.yaml", [], job=[]))
    with pytest.raises(ConfigError, match="has no jobs"):
        load_jobs(_write_jobs(tmp_path / "empty.yaml", []))
    (evil,), _ = load_jobs(_write_jobs(tmp_path / "name.yaml", [{"name": "../evil", "prompt": "x"}]))
    assert "must be letters" in evil.error  # a name is a folder under --out, never a path


def test_batch_without_ray_says_how_to_get_it(tmp_path, monkeypatch):
    jobs_file = _write_jobs(tmp_path / "jobs.yaml", [_scene_job("a", 0)])
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    r = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert "\nerror: scenescape batch needs Ray: pip install \"scenescape[batch]\"" in r.output
    assert not (tmp_path / "out" / "a").exists()  # nothing was run


@pytest.mark.slow
def test_run_job_skips_finished_and_refuses_another_config(tmp_path):
    jobs_file = _write_jobs(tmp_path / "jobs.yaml", [_scene_job("a", 1, frames=2)])
    (job,), _ = load_jobs(jobs_file)
    out = tmp_path / "out"
    assert run_state(job, out) == "new"
    row = run_job(job, str(out), "b1")
    assert row["status"] == "done" and row["frames"] == 2 and row["attempt"] == 1, row
    assert run_state(job, out) == "finished"
    before = _snapshot(out)
    again = run_job(job, str(out), "b2")
    assert again["status"] == "skipped" and _snapshot(out) == before
    assert [a["batch"] for a in attempts_of(out, "a")] == ["b1"]  # the skip is not an attempt

    (changed,), _ = load_jobs(_write_jobs(tmp_path / "jobs2.yaml", [_scene_job("a", 2, frames=2)]))
    row = run_job(changed, str(out), "b3")
    assert row["status"] == "failed" and "another config" in row["error"] and "seed" in row["error"]
    assert _snapshot(out) == before
    r = CliRunner().invoke(cli, ["batch", str(tmp_path / "jobs2.yaml"), "--out", str(out), "--check"])
    assert r.exit_code == 0 and "a: scene, error: run folder" in r.output, r.output

    import fcntl  # one batch per --out: a second one (here: this process holding the lock) is refused

    with open(out / ".batch" / "batch.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(out)])
    assert r.exit_code == 2 and "another scenescape batch is running on" in r.output, r.output
    assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------
# On a local Ray instance (2 CPUs)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install "scenescape[batch]"')
    flag = tmp_path_factory.mktemp("kill") / "fired"
    old = os.environ.get(KILL_HOOK_ENV)
    os.environ[KILL_HOOK_ENV] = f"killed:{KILL_AT}:{flag}"  # the workers inherit the driver's environment
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield flag
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop(KILL_HOOK_ENV, None)
        else:
            os.environ[KILL_HOOK_ENV] = old


@pytest.mark.slow
def test_batch_survives_a_killed_worker_and_equals_single_runs(local_ray, tmp_path):
    import numpy as np

    from scenescape.io import load_image, save_image

    # job "delta" starts from a non-square photo (96x64 px) and its depth: the batch must read and fit it to the
    # configured 64x64 exactly as `generate --image --init-depth` does
    photo = tmp_path / "photo"
    save_image(photo / "wide.png", load_image(DEMO / "image.png")[100:292, 64:352])
    np.save(photo / "wide.npy", np.load(DEMO / "depth.npy")[100:292, 64:352].astype(np.float32))
    inputs = {"delta": (photo / "wide.png", photo / "wide.npy")}
    names = ["alpha", "killed", "gamma", "delta"]
    specs = []
    for seed, n in enumerate(names):
        img, dep = inputs.get(n, (DEMO / "image.png", DEMO / "depth.npy"))
        specs.append(_scene_job(n, seed, image=str(img), depth=str(dep)))
    jobs_file = _write_jobs(tmp_path / "jobs.yaml", specs, retries=2)
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(cli, ["batch", str(jobs_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert local_ray.exists(), "the kill hook never fired: no worker was killed"
    assert "4/4 done" in r.output and "frames/s" in r.output

    # the killed job took a second attempt, which resumed from a checkpoint (not from scratch)
    tries = attempts_of(out, "killed")
    assert len(tries) == 2 and tries[0]["resume_from"] is None, tries
    assert isinstance(tries[1]["resume_from"], int) and 0 <= tries[1]["resume_from"] <= KILL_AT
    assert tries[0]["pid"] != tries[1]["pid"]  # another worker process
    table = _summary(out)
    assert {n: table[n]["status"] for n in names} == dict.fromkeys(names, "done")
    assert table["killed"]["attempts"] == "2" and table["alpha"]["attempts"] == "1"
    assert "| killed | scene | done | 2 | 5 |" in (out / "summary.md").read_text()

    # each run folder equals the same job run alone with `scenescape generate`
    for seed, name in enumerate(names):
        run = out / name
        assert json.loads((run / "manifest.json").read_text())["frames"] == FRAMES
        alone = tmp_path / "alone" / name
        img, dep = inputs.get(name, (DEMO / "image.png", DEMO / "depth.npy"))
        g = runner.invoke(cli, ["generate", "--config", str(TINY), "--image", str(img), "--init-depth", str(dep),
                                "--frames", str(FRAMES), "--out", str(alone), "--quiet", f"seed={seed}"])
        assert g.exit_code == 0, g.output
        got, want = _outputs(run), _outputs(alone)
        assert sorted(got) == sorted(want) and len(got) > 4 * FRAMES
        assert [k for k in want if got[k] != want[k]] == [], name

    # a finished batch re-run does no work: every run folder file keeps its bytes and its mtime
    before = _snapshot(out)
    r = runner.invoke(cli, ["batch", str(jobs_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert _snapshot(out) == before
    assert {row["status"] for row in _summary(out).values()} == {"skipped"}
    assert len(attempts_of(out, "alpha")) == 1


@pytest.mark.slow
def test_batch_reports_an_invalid_job_and_completes_the_others(local_ray, tmp_path):
    jobs_file = _write_jobs(tmp_path / "jobs.yaml", [
        _scene_job("good", 4, frames=3),
        {**_scene_job("broken", 5, frames=3), "seeed": 6},
        _scene_job("greedy", 6, frames=3, gpus=1),  # no node has a GPU: reported, not queued forever
    ])
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "invalid: job 'broken' (jobs[1]): unknown config key 'seeed'" in r.output
    assert (out / "good" / "manifest.json").is_file() and not (out / "broken").exists()
    table = _summary(out)
    assert table["good"]["status"] == "done"
    assert table["broken"]["status"] == "invalid" and "seeed" in table["broken"]["error"]
    assert table["greedy"]["status"] == "failed" and "needs 1 CPUs and 1 GPUs on one node" in table["greedy"]["error"]
    assert "2 CPUs 0 GPUs" in table["greedy"]["error"] and not (out / "greedy").exists()


@pytest.mark.slow
def test_object_job_runs_skips_and_continues_with_more_steps(tmp_path):
    def jobs(steps: int) -> Path:
        return _write_jobs(tmp_path / f"jobs{steps}.yaml", [{
            "name": "obj", "mode": "object", "prompt": "a test object", "seed": 3, "steps": steps,
            "config": str(ROOT / "configs" / "object" / "analytic-cpu.yaml"),
            "overrides": ["resolution=16", "render.num_samples=8", "render.num_importance=0", "nerf.levels=2"]}])

    out = tmp_path / "out"
    (job,), _ = load_jobs(jobs(2))
    assert job.error is None and job.config["progress"] is False
    assert run_job(job, str(out), "b1")["status"] == "done"
    assert run_state(job, out) == "finished"
    before = _snapshot(out)
    assert run_job(job, str(out), "b2")["status"] == "skipped" and _snapshot(out) == before
    (more,), _ = load_jobs(jobs(3))  # more steps: the same run continues from its checkpoint
    assert run_state(more, out) == "partial"
    row = run_job(more, str(out), "b3")
    assert row["status"] == "done" and row["steps"] == 3, row
    assert attempts_of(out, "obj", "b3")[0]["resume_from"] == "checkpoint.pt"
    assert json.loads((out / "obj" / "manifest.json").read_text())["steps"] == 3


def test_batch_checks_every_model_of_every_job_before_running(tmp_path, monkeypatch):
    import socket

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with socket.socket() as s:  # a hub endpoint nobody listens on
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    monkeypatch.setitem(sys.modules, "ray", None)  # the check comes before Ray is needed
    jobs_file = _write_jobs(tmp_path / "jobs.yaml", [
        _scene_job("offline", 0),
        {"name": "gpu", "prompt": "a cozy library", "config": str(ROOT / "configs" / "gpu-quality.yaml")},
        {"name": "fast", "prompt": "a cave", "config": str(ROOT / "configs" / "gpu-fast.yaml")},
    ])
    r = CliRunner().invoke(cli, ["batch", str(jobs_file), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    first = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
    assert first.startswith("error: 3 model(s)") and "cannot be reached" in first  # the shared ones once
    for model in ("depth-anything/Depth-Anything-V2-Small-hf", "stabilityai/stable-diffusion-2-inpainting",
                  "stabilityai/stable-diffusion-2-1-base"):
        assert r.output.count(f"hf download {model} ") == 1
    assert "needs Ray" not in r.output and not (tmp_path / "out" / "offline").exists()


def test_batch_touches_only_scenescape_run_folders_and_plugins_need_consent(tmp_path, monkeypatch):
    from scenescape.registry import PLUGIN_ENV, disallow_plugins, plugin_consent, plugins_allowed

    jobs_file = _write_jobs(tmp_path / "jobs.yaml", [_scene_job("a", 1, frames=2)])
    (job,), _ = load_jobs(jobs_file)
    out = tmp_path / "out"
    stranger = out / "a"
    stranger.mkdir(parents=True)
    (stranger / "config.yaml").write_text("seed: 1\n")  # a folder that merely looks like a run
    (stranger / "notes.txt").write_text("mine")
    row = run_job(job, str(out), "b1")
    assert row["status"] == "failed" and "not a scenescape run folder" in row["error"], row
    assert sorted(p.name for p in stranger.iterdir()) == ["config.yaml", "notes.txt"]

    # a plugin backend in a job: refused at validation without consent, accepted with it
    monkeypatch.delenv(PLUGIN_ENV, raising=False)
    disallow_plugins()
    plug = _write_jobs(tmp_path / "plug.yaml", [_scene_job("p", 1, frames=2, overrides=[
        "inpainter.name=scenescape.backends.inpaint.opencv:OpenCVInpainter"])])
    (bad,), _ = load_jobs(plug)
    assert bad.error and "is a plugin" in bad.error and "--allow-plugins" in bad.error, bad.error
    r = CliRunner().invoke(cli, ["batch", str(plug), "--out", str(tmp_path / "o2"), "--check"])
    assert "is a plugin" in r.output, r.output
    r = CliRunner().invoke(cli, ["batch", str(plug), "--out", str(tmp_path / "o2"), "--check", "--allow-plugins"])
    assert r.exit_code == 0 and "is a plugin" not in r.output and "p: scene, new" in r.output, r.output
    assert plugin_consent() == []  # the consent was for that invocation only
    # a worker gets the driver's consent as an argument (a Ray worker is another process)
    with plugins_allowed("scenescape.backends"):
        (good,), _ = load_jobs(plug)
        handed = plugin_consent()
    assert good.error is None and handed == ["scenescape.backends"]
    row = run_job(good, str(tmp_path / "o3"), "b1")
    assert row["status"] == "failed" and "is a plugin" in row["error"], row  # no consent in this "worker"
    row = run_job(good, str(tmp_path / "o3"), "b2", handed)
    assert row["status"] == "done" and row["frames"] == 2, row
    disallow_plugins()
