"""Kill a run at every write boundary (SIGKILL right after the k-th atomic write lands, or before its rename),
in scene and in object mode; then resume it (or run the exact command the error prints) and compare every
output byte for byte with an uninterrupted run (object mode: weights, optimiser and generator state too).

The boundaries come from the atomic writers themselves (``SCENESCAPE_DEBUG_KILL_AT_WRITE``), not from
timing. The killed runs are forked from the test process (no interpreter start-up per kill).
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from scenescape.cli import cli
from scenescape.io import files, save_image, save_npy

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "cpu-tiny.yaml")
SKIP = {".scenescape-run.json", ".scenescape-run.lock", "manifest.json"}  # run id, times: differ by nature

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def invoke(args: list[str]):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def forked(args: list[str], spec: str, timeout: float = 120.0) -> int:
    """Run the CLI in a forked child with the kill hook set; ``-signal`` if it was killed, else its exit code."""
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh process (Ctrl-C test)
            os.environ[files.KILL_ENV] = spec
            files._writes = 0
            res = CliRunner().invoke(cli, [str(a) for a in args])
            code = res.exit_code if isinstance(res.exit_code, int) else 98
        finally:
            os._exit(code)
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked run {args} with {spec} hung")
        time.sleep(0.01)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def outputs(run: Path, skip_dirs: tuple[str, ...] = ()) -> dict[str, bytes]:
    out = {}
    for p in sorted(run.rglob("*")):
        rel = str(p.relative_to(run))
        if p.is_file() and p.name not in SKIP and not rel.startswith(skip_dirs):
            out[rel] = p.read_bytes()
    return out


def resume_or_restart(mode_cmd: str, run: Path, args: list[str]) -> str:
    """``--resume RUN``; when the run was killed while being created, run the command the error names (or,
    killed before even the marker landed, the original command: the error says so)."""
    res = invoke([mode_cmd, "--resume", run, "--quiet"])
    if res.exit_code == 2 and "is empty, so it is not a scenescape run folder" in res.output:
        assert f"start the run again with --out {run}" in res.output, res.output
        res = invoke(args)
        assert res.exit_code == 0, res.output
        return "restarted"
    if res.exit_code == 2 and "start it again with: " in res.output:
        cmd = shlex.split(res.output.split("start it again with: ", 1)[1].strip().splitlines()[0])
        assert cmd[0] == "scenescape" and "--overwrite" in cmd and str(run) in cmd
        res = invoke(cmd[1:])
        assert res.exit_code == 0, res.output
        return "restarted"
    assert res.exit_code == 0, res.output
    return "resumed"


# ------------------------------------------------------------------------------------------ scene mode
@pytest.fixture(scope="module")
def scene_setup(tmp_path_factory):
    from scenescape.evaluation import default_camera, make_world

    d = tmp_path_factory.mktemp("kill_scene")
    cam = default_camera("room", 48, 48, 47.0)
    img, dep = make_world("room").render(cam)
    save_image(d / "image.png", img.numpy())
    save_npy(d / "depth.npy", dep.numpy())

    def args(out: Path) -> list[str]:
        return ["generate", "--config", TINY, "--image", d / "image.png", "--init-depth", d / "depth.npy",
                "--frames", "3", "--out", out, "--quiet", "seed=7", "width=48", "height=48", "focal=47",
                "output.async_write=false"]

    ref = d / "ref"
    n0 = files.atomic_write_count()
    res = invoke(args(ref))
    assert res.exit_code == 0, res.output
    n = files.atomic_write_count() - n0
    assert n >= 20  # marker, config, 3 inputs, index, cameras, 3 x (4 images/arrays + mesh + state), final 6
    return d, args, ref, n


def _scene_kill_and_compare(scene_setup, k: int, tmp: bool = False, tag: str = "") -> str:
    d, args, ref, n = scene_setup
    out = d / f"{tag}k{k}{'t' if tmp else ''}"
    rc = forked(args(out), f"{k}:tmp" if tmp else str(k))
    assert rc == -signal.SIGKILL, f"write {k}: the run was not killed (rc {rc})"
    how = resume_or_restart("generate", out, args(out))
    a, b = outputs(out, ("checkpoint/",)), outputs(ref, ("checkpoint/",))
    assert sorted(a) == sorted(b), (k, how, set(a) ^ set(b))
    differ = [name for name in a if a[name] != b[name]]
    assert not differ, f"killed at write {k} ({how}): files differ: {differ}"
    assert not [p for p in out.rglob(".*.*.*") if p.name not in SKIP], "temporary files left behind"
    return how


def test_scene_kill_mid_frame_before_a_rename(scene_setup):
    """Fast lane: killed with a temporary file written but not renamed, in frame 1 (the full sweep below
    covers every boundary, including those inside the folder's creation)."""
    assert _scene_kill_and_compare(scene_setup, 12, tmp=True) == "resumed"


@pytest.mark.slow
def test_scene_kill_at_every_write_boundary(scene_setup):
    n = scene_setup[3]
    hows = [_scene_kill_and_compare(scene_setup, k, tag="all-") for k in range(1, n + 1)]
    hows += [_scene_kill_and_compare(scene_setup, k, tmp=True, tag="all-") for k in range(1, n + 1, 3)]
    assert "restarted" in hows and "resumed" in hows


def test_ctrl_c_exits_130_and_the_run_resumes(scene_setup):
    d, args, ref, n = scene_setup
    out = d / "ctrl-c"
    rc = forked(args(out), f"{n // 2}:INT")
    assert rc == 130
    assert resume_or_restart("generate", out, args(out)) == "resumed"
    assert outputs(out, ("checkpoint/",)) == outputs(ref, ("checkpoint/",))


# ------------------------------------------------------------------------------------------ object mode
OBJECT = ["guidance.name=analytic", "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12",
          "nerf.max_resolution=64", "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4",
          "output.video_frames=3", "output.video_size=16", "output.mesh_resolution=16",
          "output.mesh_formats=[glb,ply]", "output.val_every=1", "output.checkpoint_every=1", "output.val_views=2"]


@pytest.fixture(scope="module")
def object_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill_object")

    def args(out: Path) -> list[str]:
        return ["object", "a red ball", "--steps", "3", "--out", out, "--quiet", *OBJECT]

    ref = d / "ref"
    n0 = files.atomic_write_count()
    res = invoke(args(ref))
    assert res.exit_code == 0, res.output
    n = files.atomic_write_count() - n0
    assert n >= 12  # marker, config, prompt, index, 3 x (validation, checkpoint), mesh x2, video, manifest
    return d, args, ref, n


def _object_kill_and_compare(object_setup, k: int, tmp: bool = False, tag: str = "") -> str:
    d, args, ref, n = object_setup
    out = d / f"{tag}k{k}{'t' if tmp else ''}"
    rc = forked(args(out), f"{k}:tmp" if tmp else str(k))
    assert rc == -signal.SIGKILL, f"write {k}: the run was not killed (rc {rc})"
    how = resume_or_restart("object", out, args(out))
    a, b = outputs(out), outputs(ref)
    assert sorted(a) == sorted(b), (k, how, set(a) ^ set(b))
    differ = [name for name in a if a[name] != b[name]]
    assert not differ, f"killed at write {k} ({how}): files differ: {differ}"
    ca = torch.load(out / "checkpoint.pt", weights_only=True)
    cb = torch.load(ref / "checkpoint.pt", weights_only=True)
    for part in ("field", "background"):
        assert ca[part].keys() == cb[part].keys()
        assert all(torch.equal(ca[part][key], cb[part][key]) for key in ca[part]), part
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(
        torch.equal(torch.as_tensor(sa[i][s]), torch.as_tensor(sb[i][s])) for i in sa for s in sa[i])
    assert torch.equal(ca["generator"], cb["generator"]) and ca["losses"] == cb["losses"]
    return how


def test_object_kill_after_the_first_checkpoint(object_setup):
    assert _object_kill_and_compare(object_setup, 6) == "resumed"


@pytest.mark.slow
def test_object_kill_at_every_write_boundary(object_setup):
    n = object_setup[3]
    hows = [_object_kill_and_compare(object_setup, k, tag="all-") for k in range(1, n + 1)]
    hows += [_object_kill_and_compare(object_setup, k, tmp=True, tag="all-") for k in range(1, n + 1, 2)]
    assert "restarted" in hows and "resumed" in hows
