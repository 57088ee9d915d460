"""The recipes in pipelines/ run end to end at a small size (public API only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_run(out: Path, frames: int, size: int) -> None:
    for name in ("video.mp4", "mesh.ply", "mesh.glb", "cameras.json", "transforms.json", "manifest.json",
                 "config.yaml"):
        assert (out / name).is_file(), name
    assert len(list((out / "frames").glob("*.png"))) == frames
    d = np.load(out / "depth" / f"{frames - 1:04d}.npy")
    assert d.shape == (size, size) and np.isfinite(d).all() and (d > 0).all()


def test_offline_demo_recipe(tmp_path):
    res = _load("offline_demo").main(tmp_path / "demo", size=48, frames=3)
    assert len(res.frames) == 3 and res.mesh.num_faces > 0
    assert all(m.any() for m in res.masks[1:])
    _check_run(tmp_path / "demo", 3, 48)


def test_photo_to_scene_recipe(tmp_path):
    from scenescape.evaluation import default_camera, make_world
    from scenescape.io import save_image

    img, _ = make_world("corridor").render(default_camera("corridor", 40, 40, 39.0))
    photo = tmp_path / "photo.png"
    save_image(photo, img.numpy())
    res = _load("photo_to_scene").main(tmp_path / "scene", size=40, frames=3, image=photo)  # prior depth
    assert len(res.frames) == 3
    man = json.loads((tmp_path / "scene" / "manifest.json").read_text())
    assert man["backends"]["first_depth"]["name"] == "prior" and man["backends"]["inpainter"]["name"] == "opencv"
    _check_run(tmp_path / "scene", 3, 40)


@pytest.mark.slow
def test_text_to_walkthrough_recipe_with_tiny_models(tmp_path):
    pytest.importorskip("diffusers")
    from scenescape.testing import make_tiny_depth, make_tiny_sd

    models = tmp_path / "models"
    cfg = {
        "seed": 1,
        "first_frame": "text_to_image",
        "trajectory": {"name": "scenescape", "params": {"step": 0.02}},
        "text_to_image": {"name": "diffusers", "options": {"model": make_tiny_sd(models / "t2i"), "steps": 2}},
        "inpainter": {"name": "diffusers",
                      "options": {"model": make_tiny_sd(models / "inp", inpainting=True), "steps": 2}},
        "depth": {"name": "transformers", "options": {"model": make_tiny_depth(models / "depth")}},
        "device": "cpu",
    }
    mod = _load("text_to_walkthrough")
    res = mod.main(tmp_path / "text", size=64, frames=2, prompt="a small test room", config=cfg)
    assert len(res.frames) == 2 and res.mesh.num_faces > 0 and res.masks[1].any()
    man = json.loads((tmp_path / "text" / "manifest.json").read_text())
    assert man["prompt"] == "a small test room" and man["backends"]["text_to_image"]["name"] == "diffusers"
    _check_run(tmp_path / "text", 2, 64)
    with pytest.raises(ValueError, match="prompt is needed"):
        mod.main(tmp_path / "empty", size=64, frames=2, prompt="  ", config=cfg)
