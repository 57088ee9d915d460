"""Resume: a `scenescape generate` killed with SIGKILL mid-run and resumed ends with exactly the frames and
mesh of an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scenescape.backends.inpaint import OpenCVInpainter
from scenescape.cli import cli
from scenescape.io import save_image, save_npy
from scenescape.io.meshes import load_mesh

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 8


class SlowInpainter(OpenCVInpainter):
    """OpenCV Telea plus a pause, so the test can kill the run between frames (named as
    ``test_resume:SlowInpainter`` in the config: the ``module:Class`` path of user backends)."""

    def inpaint(self, image, mask, camera=None, prompt="", seed=None, negative_prompt=None):
        time.sleep(0.2)
        return super().inpaint(image, mask, camera, prompt)


def _args(photo: Path, out: Path) -> list[str]:
    return ["generate", "--config", str(ROOT / "configs" / "cpu-tiny.yaml"), "--image", str(photo / "image.png"),
            "--init-depth", str(photo / "depth.npy"), "--frames", str(FRAMES), "--out", str(out), "--quiet",
            "seed=7", "inpainter.name=test_resume:SlowInpainter", "width=80", "height=80", "focal=78",
            "--allow-plugins"]


def _files(run: Path) -> dict[str, bytes]:
    keep = ("frames/", "depth/", "masks/", "cameras.json", "transforms.json", "mesh.ply", "mesh.glb", "inputs/")
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and str(p.relative_to(run)).startswith(keep)}


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    from scenescape.evaluation import default_camera, make_world

    photo = tmp_path / "photo"
    cam = default_camera("room", 80, 80, 78.0)
    img, dep = make_world("room").render(cam)
    save_image(photo / "image.png", img.numpy())
    save_npy(photo / "depth.npy", dep.numpy())

    # the interrupted run, in its own process
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "scenescape", *_args(photo, killed)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = killed / "checkpoint" / "state.json"
    done = -1
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                done = json.loads(state.read_text())["frame"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            if done >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and done < 3:
            proc.kill()
        proc.wait(timeout=60)
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (rc {proc.returncode}): {out}"
    assert not (killed / "manifest.json").exists() and not (killed / "mesh.ply").exists()
    assert done < FRAMES - 1

    # resume it: the checkpointed frames are kept (not recomputed), the rest is made
    kept = {p: p.stat().st_mtime_ns for p in (killed / "frames").glob("*.png") if int(p.stem) <= done}
    assert len(kept) == done + 1
    time.sleep(0.05)
    # the run folder names a plugin: its resume needs the user's consent again
    res = CliRunner().invoke(cli, ["generate", "--resume", str(killed), "--quiet", "--allow-plugins"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "resume recomputed checkpointed frames"

    # the same run without interruption
    full = tmp_path / "full"
    res = CliRunner().invoke(cli, _args(photo, full), catch_exceptions=False)
    assert res.exit_code == 0, res.output

    a, b = _files(killed), _files(full)
    assert sorted(a) == sorted(b)
    assert len([k for k in a if k.startswith("frames/")]) == FRAMES
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, f"files differ after resume: {differ}"
    ma, mb = load_mesh(killed / "mesh.ply"), load_mesh(full / "mesh.ply")
    assert np.array_equal(ma.vertices.numpy(), mb.vertices.numpy())
    assert np.array_equal(ma.faces.numpy(), mb.faces.numpy())
    man = json.loads((killed / "manifest.json").read_text())
    assert man["frames"] == FRAMES and len(man["frame_times_s"]) == FRAMES
