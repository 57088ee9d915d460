"""Safety (issue 9): no code runs from a config the user did not opt into, --overwrite never deletes a stranger's
folder, bad run-folder state is refused before anything is written, one process per run folder, and hostile
inputs give one clear error. Every refusal asserts the message, exit status 2, and that the folder on disk is
unchanged (SHA-256 of every file before and after)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from scenescape.backends.inpaint import OpenCVInpainter
from scenescape.cli import cli
from scenescape.io import save_image, save_npy, write_json

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "cpu-tiny.yaml")
OBJECT = ["guidance.name=analytic", "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12",
          "nerf.max_resolution=64", "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4",
          "output.export=false", "output.val_every=0", "output.checkpoint_every=1"]


class CountingInpainter(OpenCVInpainter):
    """A harmless user plugin (``test_safety:CountingInpainter``)."""

    calls = 0

    def inpaint(self, image, mask, camera=None, prompt="", **kwargs):
        CountingInpainter.calls += 1
        return super().inpaint(image, mask, camera, prompt, **kwargs)


def invoke(*args, env=None):
    return CliRunner(env=env).invoke(cli, [str(a) for a in args], catch_exceptions=False)


def checksums(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args: list, match: list[str], folder: Path | None = None, env=None) -> str:
    """Run the CLI; assert exit 2, one ``error:`` line containing every ``match``, no traceback, folder unchanged."""
    before = checksums(folder) if folder is not None else None
    existed = folder.exists() if folder is not None else None
    res = invoke(*args, env=env)
    errs = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2, res.output
    assert len(errs) == 1 and "Traceback" not in res.output, res.output
    for m in match:
        assert m in errs[0], (m, errs[0])
    if folder is not None:
        assert folder.exists() == existed and checksums(folder) == before, "the folder changed"
    return errs[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from scenescape.evaluation import default_camera, make_world

    d = tmp_path_factory.mktemp("photo")
    cam = default_camera("room", 64, 64, 62.5)
    img, dep = make_world("room").render(cam)
    save_image(d / "image.png", img.numpy())
    save_npy(d / "depth.npy", dep.numpy())
    write_json(d / "camera.json", cam.to_dict())
    return d


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory, photo):
    out = tmp_path_factory.mktemp("runs") / "scene"
    res = invoke("generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", photo / "depth.npy",
                 "--out", out, "--quiet", "frames=3")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def object_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "object"
    res = invoke("object", "a red ball", "--steps", 2, "--out", out, "--quiet", *OBJECT)
    assert res.exit_code == 0, res.output
    return out


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------------ plugins
def _evil_config(tmp_path: Path, section: str = "depth") -> tuple[Path, Path]:
    flag = tmp_path / "pwned"
    cfg = yaml.safe_load(Path(TINY).read_text())
    cfg[section] = {"name": "os:system", "options": {"command": f"touch {flag}"}}
    path = tmp_path / "evil.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, flag


def test_plugin_in_a_config_is_refused_without_consent(tmp_path, photo):
    evil, flag = _evil_config(tmp_path)
    out = tmp_path / "run"
    err = refused(["generate", "--config", evil, "--image", photo / "image.png", "--out", out],
                  ["depth.name", "'os:system'", "module 'os'", "--allow-plugins", "SCENESCAPE_ALLOW_PLUGINS=os"], out)
    assert "plugin" in err
    assert not flag.exists() and not out.exists()
    # an override is a config too; and the allow-list names other modules only
    refused(["generate", "--config", TINY, "--image", photo / "image.png", "--out", out, "inpainter.name=os:system",
             "inpainter.options={command: 'touch " + str(flag) + "'}"], ["inpainter.name", "os:system"], out,
            env={"SCENESCAPE_ALLOW_PLUGINS": "ossy,my_pkg"})
    assert not flag.exists() and not out.exists()


def test_plugin_in_a_run_folders_config_is_refused_on_resume(tmp_path, scene_run):
    run = copy_run(scene_run, tmp_path / "shared-run")
    flag = tmp_path / "pwned"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["inpainter"] = {"name": "os:system", "options": {"command": f"touch {flag}"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "checkpoint" / "state.json").unlink()  # so that a resume would run the inpainter
    refused(["generate", "--resume", run], ["inpainter.name", "os:system", "--allow-plugins"], run)
    assert not flag.exists()


def test_object_guidance_plugin_is_refused(tmp_path, object_run):
    flag = tmp_path / "pwned"
    out = tmp_path / "obj"
    refused(["object", "a mug", "--out", out, *OBJECT, "guidance.name=os:system",
             f"guidance.options={{command: 'touch {flag}'}}"], ["guidance.name", "os:system", "--allow-plugins"], out)
    assert not flag.exists() and not out.exists()
    run = copy_run(object_run, tmp_path / "shared-obj")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["guidance"] = {"name": "os:system", "options": {"command": f"touch {flag}"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    refused(["object", "--resume", run], ["guidance.name", "os:system"], run)
    assert not flag.exists()


def test_plugins_run_with_consent_and_entry_points_without(tmp_path, photo, monkeypatch):
    base = ["generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", photo / "depth.npy",
            "--quiet", "frames=2"]
    CountingInpainter.calls = 0
    res = invoke(*base, "--out", tmp_path / "a", "inpainter.name=test_safety:CountingInpainter", "--allow-plugins")
    assert res.exit_code == 0, res.output
    assert CountingInpainter.calls == 1
    res = invoke(*base, "--out", tmp_path / "b", "inpainter.name=test_safety:CountingInpainter",
                 env={"SCENESCAPE_ALLOW_PLUGINS": "test_safety"})
    assert res.exit_code == 0, res.output
    assert CountingInpainter.calls == 2
    # consent lasts one invocation
    refused([*base, "--out", tmp_path / "c", "inpainter.name=test_safety:CountingInpainter"],
            ["inpainter.name", "test_safety"], tmp_path / "c")
    # an installed entry point (group scenescape.inpainter) is a registered name: no consent needed
    dist = tmp_path / "site" / "counting_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[scenescape.inpainter]\ncounting = test_safety:CountingInpainter\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    res = invoke(*base, "--out", tmp_path / "d", "inpainter.name=counting")
    assert res.exit_code == 0, res.output
    assert CountingInpainter.calls == 3


# ------------------------------------------------------------------------------------------ run folders
def test_overwrite_deletes_only_marked_run_folders(tmp_path, photo, scene_run):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("my: project\n")
    (project / "checkpoint").mkdir()
    (project / "manifest.json").write_text("{}")
    args = ["generate", "--config", TINY, "--image", photo / "image.png", "--out", project, "--quiet", "frames=2"]
    refused([*args, "--overwrite"], ["not a scenescape run folder", "checkpoint, config.yaml, manifest.json",
                                     "choose another --out"], project)
    refused(["object", "a mug", "--out", project, "--overwrite", *OBJECT], ["not a scenescape run folder"], project)
    refused(["object", "a mug", "--out", project, *OBJECT], ["not a scenescape run folder"], project)
    # a forged marker (no valid checksum) is not scenescape's
    (project / ".scenescape-run.json").write_text(json.dumps({"format": "scenescape-run", "mode": "scene",
                                                               "run_id": "x"}))
    refused([*args, "--overwrite"], ["not a scenescape run folder"], project)
    refused(["generate", "--resume", project], ["not a scenescape run folder"], project)
    # a real run folder is replaced with --overwrite, and needs it
    run = copy_run(scene_run, tmp_path / "run")
    args = ["generate", "--config", TINY, "--image", photo / "image.png", "--out", run, "--quiet", "frames=2"]
    refused(args, ["already holds a scene run", f"--resume {run}"], run)
    res = invoke(*args, "--overwrite")
    assert res.exit_code == 0, res.output
    assert len(list((run / "frames").iterdir())) == 2
    # an object run is not resumed as a scene
    refused(["generate", "--resume", tmp_path / "run2"], ["does not exist"])


def test_object_mode_into_an_existing_folder(tmp_path, object_run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    refused(["object", "a mug", "--out", mine, *OBJECT], ["not a scenescape run folder", "notes.txt"], mine)
    run = copy_run(object_run, tmp_path / "obj")
    refused(["object", "a red ball", "--out", run, *OBJECT], ["already holds a object run", "--resume"], run)
    refused(["generate", "--resume", run], ["holds a object run", "scenescape object --resume"], run)
    refused(["object", "--resume", run, "seed=4"], ["only steps, progress and output.* may be changed"], run)


def _state(run: Path) -> dict:
    return json.loads((run / "checkpoint" / "state.json").read_text())


def _write_state(run: Path, data: dict, rechecksum: bool) -> None:
    from scenescape.pipelines.runs import _digest

    if rechecksum:
        data = {k: v for k, v in data.items() if k != "checksum"}
        data["checksum"] = _digest(data)
    (run / "checkpoint" / "state.json").write_text(json.dumps(data))


@pytest.mark.parametrize("edit, rechecksum, words", [
    ({"frame": -3}, False, ["does not match its own checksum"]),
    ({"frame": -3}, True, ["frame -3 is outside the run's 3 cameras"]),
    ({"frame": 99}, True, ["frame 99 is outside the run's 3 cameras"]),
    ({"frame": 1.5}, True, ["'frame' must be an integer"]),
    ({"files": {"mesh": "../../etc/passwd", "deltas": []}}, True, ["'files.mesh' must name a mesh-NNNN.npz"]),
    ({"counts": {"vertices": -1, "faces": 2}}, True, ["'counts'"]),
    ({"version": 1}, True, ["from another version"]),
])
def test_bad_state_json_is_refused_and_nothing_is_written(tmp_path, scene_run, edit, rechecksum, words):
    run = copy_run(scene_run, tmp_path / "run")
    data = _state(run)
    data.update(edit)
    _write_state(run, data, rechecksum)
    refused(["generate", "--resume", run], ["state.json", *words, "--overwrite"], run)


def test_changed_inputs_and_corrupt_frames_are_refused(tmp_path, scene_run):
    run = copy_run(scene_run, tmp_path / "run")
    img = np.load(run / "inputs" / "image.npy")
    np.save(run / "inputs" / "image.npy", img[::-1])
    refused(["generate", "--resume", run], ["inputs/image.npy", "checksum differs"], run)
    run = copy_run(scene_run, tmp_path / "run2")
    (run / "frames" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    refused(["generate", "--resume", run], ["frame 1", "corrupt"], run)


def test_interrupted_creation_says_exactly_what_to_do(tmp_path, photo):
    from scenescape.pipelines.runs import RunFolder

    out = tmp_path / "half"
    cmd = ["scenescape", "generate", "--image", str(photo / "image.png"), "--out", str(out)]
    RunFolder.create(out, mode="scene", command=cmd, inputs=["image.npy", "camera.json"]).close()
    err = refused(["generate", "--resume", out], ["interrupted while it was being created", "config.yaml",
                                                  "inputs/image.npy", "never written", "start it again with: "
                                                  f"scenescape generate --image {photo / 'image.png'} --out {out} "
                                                  "--overwrite"], out)
    assert err.endswith("--overwrite")


def test_corrupt_object_checkpoint_is_refused(tmp_path, object_run):
    run = copy_run(object_run, tmp_path / "obj")
    ck = run / "checkpoint.pt"
    data = bytearray(ck.read_bytes())
    ck.write_bytes(bytes(data[: len(data) // 2]))  # a torn file
    refused(["object", "--resume", run], ["checkpoint.pt", "cannot be read", "corrupt"], run)
    refused(["object", "--export", run], ["checkpoint.pt", "cannot be read"], run)
    import torch

    good = torch.load(object_run / "checkpoint.pt", weights_only=True)
    for edit, words in (({"step": -2}, ["'step' must be an integer >= 0"]), ({"step": 50}, ["past the configured"]),
                        ({"losses": [1.0]}, ["'losses' must list 2"])):
        torch.save({**good, **edit}, ck)
        refused(["object", "--resume", run], ["checkpoint.pt", "invalid", *words], run)
    ck.write_bytes(b"PK\x03\x04 pickle bombs are not loaded")
    refused(["object", "--resume", run], ["checkpoint.pt", "cannot be read"], run)


def hold_lock(run: Path) -> int:
    """A forked process that opens ``run`` (taking its lock) and waits to be killed; its pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            from scenescape.pipelines.runs import RunFolder

            folder = RunFolder.open_existing(run)
            os.write(w, b"locked")
            time.sleep(600)
            folder.close()
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 6) == b"locked"
    os.close(r)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_second_process_on_the_same_folder_is_refused_and_a_dead_ones_lock_is_not(tmp_path, scene_run):
    run = copy_run(scene_run, tmp_path / "run")
    (run / "checkpoint" / "state.json").unlink()  # something left to do
    (run / "manifest.json").unlink()
    holder = hold_lock(run)
    try:
        refused(["generate", "--resume", run], ["in use by another scenescape process", "wait"], run)
        refused(["generate", "--config", TINY, "--out", run, "--overwrite", "--image", run / ".." / "x.png"],
                ["does not exist"], run)  # (bad input is reported first)
    finally:
        os.kill(holder, signal.SIGKILL)  # the lock file stays, the lock does not
        os.waitpid(holder, 0)
    assert (run / ".scenescape-run.lock").exists()
    res = invoke("generate", "--resume", run, "--quiet")
    assert res.exit_code == 0, res.output
    assert (run / "manifest.json").is_file()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_overwrite_of_a_folder_in_use_is_refused(tmp_path, scene_run, photo):
    run = copy_run(scene_run, tmp_path / "run")
    holder = hold_lock(run)
    try:
        refused(["generate", "--config", TINY, "--image", photo / "image.png", "--out", run, "--overwrite", "--quiet"],
                ["in use by another scenescape process"], run)
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)


# -------------------------------------------------------------------------------- validation before writing
@pytest.mark.parametrize("override, words", [
    ("device=cuda", ["device 'cuda'", "CUDA is not available", "device=auto"]),
    ("trajectory.params.stepp=1", ["no parameter 'stepp'", "Did you mean 'step'"]),
    ("trajectory.params.step=.nan", ["trajectory 'forward_yaw'", "NaN or infinite"]),
    ("trajectory.params.step=abc", ["must be a number"]),
])
def test_validation_happens_before_anything_is_written(tmp_path, photo, override, words):
    import torch

    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "run"
    refused(["generate", "--config", TINY, "--image", photo / "image.png", "--out", out, override], words, out)
    assert not out.exists()


def test_object_device_and_prompt_validation(tmp_path):
    import torch

    out = tmp_path / "obj"
    if not torch.cuda.is_available():
        refused(["object", "a mug", "--out", out, *OBJECT, "device=cuda"], ["CUDA is not available"], out)
    refused(["object", "", "--out", out, *OBJECT], ["prompt must be a non-empty text"], out)
    assert not out.exists()


def test_out_that_is_a_file_or_cannot_be_made(tmp_path, photo):
    f = tmp_path / "file.txt"
    f.write_text("x")
    base = ["generate", "--config", TINY, "--image", photo / "image.png"]
    before = checksums(tmp_path)
    res = invoke(*base, "--out", f)  # click itself refuses a file for --out
    assert res.exit_code == 2 and "is a file" in res.output and checksums(tmp_path) == before
    refused([*base, "--out", f / "sub"], ["cannot create run folder", "is a file"], tmp_path)
    refused(["object", "a mug", "--out", f / "sub", *OBJECT], ["cannot create run folder"], tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        refused([*base, "--out", ro / "run"], ["not writable"], ro)


def test_malformed_camera_and_trajectory_files_name_the_file(tmp_path, photo):
    base = ["generate", "--config", TINY, "--image", photo / "image.png", "--out", tmp_path / "run"]
    cam = tmp_path / "cam.json"
    cam.write_text('{"fx": 50}')
    refused([*base, "--camera", cam], [str(cam), "missing field(s) ['fy'"], tmp_path)
    cam.write_text("{not json")
    refused([*base, "--camera", cam], [str(cam), "not valid JSON"], tmp_path)
    cam.write_text('[1, 2, 3]')
    refused([*base, "--camera", cam], [str(cam)], tmp_path)
    traj = tmp_path / "t.json"
    traj.write_text("{oops")
    refused([*base, "--trajectory", traj], [str(traj)], tmp_path)
    traj.write_text('{"cameras": "nope"}')
    refused([*base, "--trajectory", traj], [str(traj)], tmp_path)
    assert not (tmp_path / "run").exists()


def test_prompts_hostile_and_odd(tmp_path, photo, monkeypatch):
    from scenescape.cli.scene import default_out_dir

    for prompt in ("../../x", "x" * 10000, "\U0001F600\U0001F3E0", "", "a/b\\c"):
        d = default_out_dir(prompt, tmp_path / "runs")
        assert d.parent == tmp_path / "runs" and len(d.name) < 80 and "/" not in d.name and ".." not in d.name
    refused(["generate", "--config", TINY, "--image", photo / "image.png", "--out", tmp_path / "n", "prompt=a\x00b"],
            ["NUL"], tmp_path / "n")
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline

    with pytest.raises(ValueError, match="NUL"):
        ObjectPipeline(ObjectConfig.load(None, OBJECT)).run("a\x00b", tmp_path / "o")
    # a long emoji prompt with a path in it: the default folder stays under runs/, the prompt round-trips
    monkeypatch.chdir(tmp_path)
    prompt = "../../x \U0001F600 " + "y" * 10000
    res = invoke("generate", prompt, "--config", TINY, "--image", photo / "image.png", "--quiet", "frames=2")
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    assert run.name.startswith("x-y") and yaml.safe_load((run / "config.yaml").read_text())["prompt"] == prompt


# ---------------------------------------------------------------------------------------- small things
def test_files_are_written_world_readable(scene_run):
    import stat

    for name in ("config.yaml", "manifest.json", "frames/0000.png", "mesh.ply", "video.mp4", "checkpoint/state.json"):
        mode = stat.S_IMODE((scene_run / name).stat().st_mode)
        assert mode == 0o666 & ~_umask(), (name, oct(mode))


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def test_yaml_numbers_and_one_line_errors(tmp_path, photo):
    from scenescape.config import load_yaml, parse_override

    (tmp_path / "c.yaml").write_text("a: 1e6\nb: 1E-4\nc: -2.5e+3\nd: 7\ne: 1e6x\n")
    assert load_yaml(tmp_path / "c.yaml") == {"a": 1e6, "b": 1e-4, "c": -2500.0, "d": 7, "e": "1e6x"}
    assert parse_override("inpainter.options.radius=1e1") == (["inpainter", "options", "radius"], 10.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1, 2\nframes: 3\n")
    err = refused(["generate", "--config", bad, "--out", tmp_path / "r"], [str(bad), "not valid YAML", "line 2"])
    assert "\n" not in err


def test_int64_and_complex_depth_are_refused(tmp_path, photo):
    for name, arr, words in (("int.npy", np.full((64, 64), 2, np.int64), ["int64", "floating-point"]),
                             ("c.npy", np.full((64, 64), 2 + 1j), ["complex"]),
                             ("s.npy", np.array("a"), ["text"]),
                             ("scalar.npy", np.float32(2.0), ["2-D", "shape ()"])):
        np.save(tmp_path / name, arr)
        refused(["generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", tmp_path / name,
                 "--out", tmp_path / "r"], [str(tmp_path / name), *words], tmp_path)


def test_yaml_tags_that_build_objects_are_refused(tmp_path, scene_run):
    run = copy_run(scene_run, tmp_path / "run")
    flag = tmp_path / "pwned"
    (run / "config.yaml").write_text(f"seed: !!python/object/apply:os.system ['touch {flag}']\n")
    refused(["generate", "--resume", run], ["config.yaml", "not valid YAML", "line 1"], run)
    assert not flag.exists()
