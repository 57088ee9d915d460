"""Which model weights a scene run holds when: the text-to-image model for frame 0 only, the diffusion
inpainter from frame 1 on (tiny random-weight models loaded through the real pipeline and from_pretrained)."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")

from scenescape.errors import ModelNotFoundError  # noqa: E402
from scenescape.pipelines.scene import ScenePipeline  # noqa: E402
from scenescape.testing import make_tiny_depth, make_tiny_sd  # noqa: E402

SIZE = 48


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("residency-models")
    return {"t2i": make_tiny_sd(root / "t2i"), "inpaint": make_tiny_sd(root / "inp", inpainting=True),
            "depth": make_tiny_depth(root / "depth", kind="depth_anything")}


def _config(models: dict, frames: int = 3) -> dict:
    return {
        "seed": 4, "frames": frames, "width": SIZE, "height": SIZE, "focal": 46.0, "device": "cpu",
        "first_frame": "auto", "trajectory": {"name": "backward", "params": {"step": 0.05}},
        "text_to_image": {"name": "diffusers", "options": {"model": models["t2i"], "steps": 1}},
        "inpainter": {"name": "diffusers", "options": {"model": models["inpaint"], "steps": 1}},
        "depth": {"name": "transformers", "options": {"model": models["depth"]}},
    }


class Probe:
    """Wraps the backends' calls and records, at each, what the process still holds."""

    def __init__(self, pipe: ScenePipeline):
        self.pipe, self.events, self.t2i_refs = pipe, [], []
        t2i, inp = pipe.text_to_image, pipe.inpainter
        gen, inpaint = t2i.generate, inp.inpaint

        def generate(*a, **k):
            self.events.append(("generate", inp.loaded))
            out = gen(*a, **k)
            p = t2i.pipe
            self.t2i_refs = [weakref.ref(m) for m in (p.unet, p.text_encoder, p.vae)]
            return out

        def wrapped_inpaint(*a, **k):
            gc.collect()
            self.events.append(("inpaint", inp.loaded, t2i.loaded, [r() is not None for r in self.t2i_refs]))
            return inpaint(*a, **k)

        t2i.generate, inp.inpaint = generate, wrapped_inpaint


def _files(run: Path) -> dict[str, bytes]:
    keep = ("frames/", "depth/", "masks/", "cameras.json", "transforms.json", "mesh.ply", "inputs/")
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and str(p.relative_to(run)).startswith(keep)}


@pytest.mark.slow
def test_text_to_image_held_for_frame_0_only_and_inpainter_loaded_at_frame_1(models, tmp_path):
    pipe = ScenePipeline.from_config(_config(models))
    t2i, inp = pipe.text_to_image, pipe.inpainter
    assert not t2i.loaded and not inp.loaded  # nothing is loaded by building the pipeline
    probe = Probe(pipe)
    res = pipe.run("a small room", out_dir=tmp_path / "run", progress=False)
    assert len(res.frames) == 3 and res.masks[1].any()
    kinds = [e[0] for e in probe.events]
    assert kinds == ["generate", "inpaint", "inpaint"]
    assert probe.events[0][1] is False  # the inpainter is not loaded while frame 0 is made
    first_inpaint = probe.events[1]
    assert first_inpaint[1] is False  # ... nor before frame 1's inpainting loads it
    assert first_inpaint[2] is False and probe.t2i_refs and first_inpaint[3] == [False, False, False]
    # after frame 0 nothing references the text-to-image UNet, text encoder or VAE any more
    gc.collect()
    assert all(r() is None for r in probe.t2i_refs) and inp.loaded and not t2i.loaded
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["backends"]["text_to_image"]["class"] == "scenescape.backends.t2i.diffusers:DiffusersTextToImage"
    assert man["backends"]["text_to_image"]["options"]["model"] == models["t2i"]

    # a run stopped after frame 1 and resumed gives the same files, and never loads the text-to-image model
    class Stop(Exception):
        pass

    def stop_after_1(i, _s):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        ScenePipeline.from_config(_config(models)).run("a small room", out_dir=tmp_path / "cut", progress=False,
                                                       on_frame=stop_after_1)
    again = ScenePipeline.from_config(_config(models))
    calls = []
    again.text_to_image.generate = lambda *a, **k: calls.append(a)
    resumed = again.run("a small room", out_dir=tmp_path / "cut", resume=True, progress=False)
    assert not calls and not again.text_to_image.loaded and again.inpainter.loaded
    assert len(resumed.frames) == 3
    a, b = _files(tmp_path / "run"), _files(tmp_path / "cut")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a[k] != b.get(k)]
    man2 = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert man2["backends"] == man["backends"]


def test_missing_model_is_an_error_when_the_pipeline_is_built(models, tmp_path):
    for section in ("text_to_image", "inpainter"):
        cfg = _config(models)
        cfg[section]["options"]["model"] = str(tmp_path / "no-such-model")
        with pytest.raises(ModelNotFoundError, match="no-such-model"):
            ScenePipeline.from_config(cfg)


def test_release_drops_the_weights_and_a_later_call_reloads_them(models):
    from scenescape.backends import TEXT_TO_IMAGE, build_backend

    t2i = build_backend(TEXT_TO_IMAGE, "diffusers", {"model": models["t2i"], "steps": 1, "device": "cpu"})
    a = t2i.generate("a hall", 32, 32, seed=2)
    ref = weakref.ref(t2i.pipe.unet)
    t2i.release()
    gc.collect()
    assert ref() is None and not t2i.loaded
    assert np.array_equal(t2i.generate("a hall", 32, 32, seed=2), a)  # reloaded, same image


@pytest.mark.slow
def test_memory_benchmark_phases_come_from_what_the_pipeline_holds(tmp_path):
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("scene_memory", root / "benchmarks" / "scene_memory.py")
    sm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sm)
    log = sm.residency("gpu-quality", tmp_path, frames=3, size=32)
    assert {r["frame"] for r in log} == {0, 1, 2}
    ph = sm.phases(log)
    assert sorted(ph["frame 0"]["held"]) == ["depth", "t2i", "text", "vae"]  # no inpainting UNet yet
    assert sorted(ph["frames >= 1"]["held"]) == ["depth", "text", "unet", "vae"]  # the t2i model is gone
    assert ph["frame 0"]["calls"] == {"text", "t2i", "vae", "depth"}
    # composed from per-component rows: a phase counts only the networks alive in it
    rows = {c: {"weights_mb": w, "peak_mb": w + ws + 100.0, "base_mb": 100.0}
            for c, w, ws in (("text", 1000, 10), ("unet", 3000, 400), ("t2i", 2900, 300), ("vae", 500, 900),
                             ("depth", 250, 200))}
    per, _ = sm.compose(rows, ph)
    assert per["frame 0"]["peak_mb"] == pytest.approx(100 + 1000 + 2900 + 500 + 250 + 900)
    assert per["frames >= 1"]["peak_mb"] == pytest.approx(100 + 1000 + 3000 + 500 + 250 + 900)
