"""``scenescape object`` end to end on CPU with a tiny random-weight Stable Diffusion; resume; bad input."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from scenescape.cli import cli
from scenescape.io import read_video
from scenescape.io.meshes import load_mesh


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from scenescape.testing.tiny import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


def _tiny_overrides(folder: str) -> list[str]:
    return [
        "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12", "nerf.max_resolution=64", "nerf.hidden=16",
        "nerf.layers=1", "render.num_samples=12", "render.num_importance=4", "shading.albedo_steps=2",
        "loss.orientation_ramp_steps=4",
        f"guidance.options={{model: '{folder}', resolution: 64, guidance_scale: 7.5, negative_prompt: blurry}}",
        "output.val_every=2", "output.val_views=2", "output.checkpoint_every=2", "output.video_frames=4",
        "output.video_size=24", "output.mesh_resolution=24",
    ]


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_object_cli_end_to_end_with_tiny_sd(tmp_path, tiny_sd):
    out = tmp_path / "mug"
    res = _invoke("object", "a ceramic mug", "--out", out, "--steps", 4, "--quiet", *_tiny_overrides(tiny_sd))
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "config.yaml", "mesh.glb", "mesh.obj", "mesh.ply", "video.mp4", "manifest.json",
                 "validation/step_000002.png", "validation/step_000004.png"):
        assert (out / name).is_file(), name
    ck = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 4 and ck["prompt"] == "a ceramic mug" and len(ck["losses"]) == 4
    assert all(torch.isfinite(torch.tensor(ck["losses"])))
    video = read_video(out / "video.mp4")
    assert video.shape == (4, 24, 48, 3)  # RGB | normals side by side

    mesh = load_mesh(out / "mesh.ply")
    assert mesh.num_faces > 50 and mesh.colors.std() > 0  # albedo colours, not a flat default
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["steps"] == 4 and summary["guidance"] == "stable_diffusion" and summary["seed"] == 0
    assert "torch" in summary["versions"] and summary["timings_s"]["train"] > 0

    # an existing run needs --resume: nothing is overwritten
    before = (out / "checkpoint.pt").read_bytes()
    res = _invoke("object", "a ceramic mug", "--out", out, "--steps", 4, "--quiet", *_tiny_overrides(tiny_sd))
    assert res.exit_code == 2 and "--resume" in res.output
    assert (out / "checkpoint.pt").read_bytes() == before

    # re-export mesh and video from the checkpoint with other output settings
    (out / "mesh.obj").unlink()
    res = _invoke("object", "--export", out, "output.video_extra=depth", "output.mesh_formats=[obj]",
                  "output.mesh_threshold=null")
    assert res.exit_code == 0, res.output
    assert (out / "mesh.obj").is_file() and "mesh_obj" in res.output
    assert read_video(out / "video.mp4").shape == (4, 24, 48, 3)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_sd):
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline

    items = _tiny_overrides(tiny_sd) + ["steps=6", "progress=false", "output.export=false", "output.val_every=0"]
    ObjectPipeline(ObjectConfig.load(None, items)).run("a ceramic mug", tmp_path / "full")
    part = ObjectPipeline(ObjectConfig.load(None, items)).run("a ceramic mug", tmp_path / "part", stop_after=3)
    assert part.steps == 3
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["step"] == 3
    res = _invoke("object", "--resume", tmp_path / "part")
    assert res.exit_code == 0, res.output
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert b["step"] == 6 and a["losses"] == pytest.approx(b["losses"], rel=1e-6)
    for k in a["field"]:
        assert torch.allclose(a["field"][k], b["field"][k], atol=1e-6), k
    # resuming with a different config is refused
    res = _invoke("object", "--resume", tmp_path / "part", "seed=5")
    assert res.exit_code == 2 and "seed=5" in res.output and "only steps, progress and output" in res.output
    res = _invoke("object", "a ceramic mug", "--out", tmp_path / "part", *items)
    assert res.exit_code == 2 and "--resume" in res.output


@pytest.mark.parametrize("args, words", [
    (["", "--steps", "2"], ["prompt"]),
    (["   "], ["prompt"]),
    (["a mug", "camera.radius=[0, 2]"], ["camera.radius", "> 0"]),
    (["a mug", "camera.radius=[-1, 2]"], ["camera.radius"]),
    (["a mug", "camera.fov=[30, 180]"], ["fov", "(0, 180)"]),
    (["a mug", "camera.fov=[0, 60]"], ["fov"]),
    (["a mug", "nerf.levls=4"], ["unknown config key", "levels"]),
    (["a mug", "guidance.options={mode: sdss}"], ["mode"]),
    (["a mug", "--steps", "0"], ["steps"]),
])
def test_bad_input_is_a_clear_error(tmp_path, args, words):
    res = _invoke("object", *args, "--out", tmp_path / "run", "guidance.name=analytic")
    assert res.exit_code not in (0, None), res.output
    text = res.output
    assert "error" in text.lower()
    for w in words:
        assert w in text, (w, text)
    assert "Traceback" not in text
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_export_of_a_missing_run_is_a_clear_error(tmp_path):
    res = _invoke("object", "--export", tmp_path / "nothing")
    assert res.exit_code == 2 and "does not exist" in res.output


def test_recipe_main_runs_at_small_size(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "pipelines" / "text_to_object.py"
    spec = importlib.util.spec_from_file_location("text_to_object", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    overrides = [
        "guidance.name=analytic", "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12",
        "nerf.max_resolution=64", "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4",
        "progress=false", "output.video_frames=3", "output.video_size=16", "output.mesh_resolution=24",
        "output.mesh_formats=[glb]",
    ]
    res = mod.main("a red ball", str(tmp_path / "ball"), steps=3, overrides=overrides)
    assert res.steps == 3 and len(res.losses) == 3
    assert {"checkpoint", "mesh_glb", "video"} <= set(res.files)
    assert (tmp_path / "ball" / "mesh.glb").is_file() and not (tmp_path / "ball" / "mesh.obj").exists()


_ANALYTIC_TINY = ["resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12", "nerf.max_resolution=64",
                  "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4", "output.video_frames=3",
                  "output.video_size=16", "output.mesh_resolution=16", "output.checkpoint_every=0"]


def _analytic(*args):
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "configs" / "object" / "analytic-cpu.yaml"
    return CliRunner().invoke(cli, ["object", "an analytic object", "--config", str(cfg), "--quiet",
                                    *[str(a) for a in args], *_ANALYTIC_TINY], catch_exceptions=False)


@pytest.mark.slow
def test_object_always_writes_its_outputs_or_says_why(tmp_path):
    # the shipped CPU config writes the documented outputs (mesh, video, checkpoint) by default
    out = tmp_path / "a"
    res = _analytic("--out", out, "--steps", 3)
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "mesh.glb", "mesh.obj", "mesh.ply", "video.mp4"):
        assert (out / name).is_file(), name
    assert "warning:" not in res.output

    # no surface at the threshold: the video and checkpoint are written, the mesh is not, and a
    # warning line says so with the threshold used and the key that changes it
    out = tmp_path / "b"
    res = _analytic("--out", out, "--steps", 3, "output.mesh_threshold=1e9")
    assert res.exit_code == 0, res.output
    assert (out / "video.mp4").is_file() and (out / "checkpoint.pt").is_file()
    assert not list(out.glob("mesh.*"))
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning: mesh not written")]
    assert len(lines) == 1 and "1e+09" in lines[0] and "output.mesh_threshold" in lines[0], res.output
    assert f"--export {out}" in lines[0]
    summary = json.loads((out / "manifest.json").read_text())
    assert set(summary["not_written"]) == {"mesh"}

    # export switched off: both outputs named, with the command that writes them
    out = tmp_path / "c"
    res = _analytic("--out", out, "--steps", 2, "output.export=false")
    assert res.exit_code == 0
    warns = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert [w.split(" not written")[0] for w in warns] == ["warning: mesh", "warning: video"]
    assert all("output.export is false" in w for w in warns)
    res = _invoke("object", "--export", out)  # ... and that command writes them
    assert res.exit_code == 0 and (out / "mesh.glb").is_file() and (out / "video.mp4").is_file()
    assert json.loads((out / "manifest.json").read_text())["not_written"] == {}
