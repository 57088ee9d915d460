"""Model resolution, ``scenescape models``, and ``scenescape generate`` end to end with tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from scenescape.backends.models import (
    fetch_command,
    model_status,
    pick_device,
    pick_dtype,
    resolve_model,
)
from scenescape.cli import cli
from scenescape.errors import ModelNotFoundError
from scenescape.testing import make_tiny_depth, make_tiny_sd

ROOT = Path(__file__).resolve().parents[1]
MISSING = "nobody-here/no-such-inpainting-model"




@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-cli")
    return {
        "inpaint": make_tiny_sd(root / "sd-inpaint", inpainting=True),
        "depth": make_tiny_depth(root / "da", kind="depth_anything"),
    }


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


def _runner() -> CliRunner:
    return CliRunner()


# ------------------------------------------------------------------------------------------
# resolution
# ------------------------------------------------------------------------------------------

def test_resolve_local_folder_and_errors(tiny, tmp_path, offline):
    assert resolve_model(tiny["inpaint"], "diffusers") == tiny["inpaint"]
    assert resolve_model(tiny["depth"], "transformers") == tiny["depth"]
    st = model_status(tiny["inpaint"], "diffusers")
    assert st.present and st.source == "folder"
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        resolve_model(tiny["depth"], "diffusers")  # a transformers folder is not a pipeline
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), "transformers")
    with pytest.raises(ModelNotFoundError) as e:
        resolve_model(MISSING, "diffusers")
    msg = str(e.value)
    assert MISSING in msg and "HF_HUB_OFFLINE" in msg and "\n" not in msg
    assert "hf download" in fetch_command(MISSING, "diffusers")


def test_cached_hub_id_resolves_offline(tiny, tmp_path, monkeypatch):
    # a hub id present in the ordinary HF cache layout resolves to its snapshot without network
    cache = tmp_path / "hub"
    snap = cache / "models--someone--tiny-depth" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for f in Path(tiny["depth"]).iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (cache / "models--someone--tiny-depth" / "refs").mkdir()
    (cache / "models--someone--tiny-depth" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    assert Path(resolve_model("someone/tiny-depth", "transformers")) == snap


def test_device_and_dtype():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        pick_dtype("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


# ------------------------------------------------------------------------------------------
# scenescape models
# ------------------------------------------------------------------------------------------

def test_models_command_present(tiny, offline):
    r = _runner().invoke(cli, [
        "models", "--config", str(ROOT / "configs" / "gpu-quality.yaml"),
        f"inpainter.options.model={tiny['inpaint']}", f"depth.options.model={tiny['depth']}",
        f"text_to_image.options.model={tiny['inpaint']}",
    ])
    assert r.exit_code == 0, r.output
    assert r.output.count("present") == 3


def test_models_command_missing_offline(tiny, offline):
    r = _runner().invoke(cli, [
        "models", "--config", str(ROOT / "configs" / "scenescape-faithful.yaml"),
        f"inpainter.options.model={MISSING}", f"depth.options.model={tiny['depth']}",
    ])
    assert r.exit_code == 1
    assert MISSING in r.output and "MISSING" in r.output
    assert f"hf download {MISSING}" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("preset", ["gpu-quality", "gpu-fast", "scenescape-faithful"])
def test_presets_are_valid_configs(preset):
    from scenescape.cli.models import required_models
    from scenescape.config import load_config
    from scenescape.pipelines.scene import SceneConfig

    cfg = load_config(SceneConfig, ROOT / "configs" / f"{preset}.yaml")
    reqs = required_models(cfg)  # also validates every backend's options against its Config
    assert {r.section for r in reqs} >= {"inpainter", "depth"}
    if preset == "scenescape-faithful":
        o = cfg.inpainter.options
        assert (o["scheduler"], o["steps"], o["guidance"], o["outpaint_border"]) == ("ddim", 50, 7.5, 44)
        assert (o["decoder_finetune_steps"], o["decoder_finetune_lr"], o["decoder_preservation_weight"]) == (
            100, 1e-4, 100.0)
        d = cfg.depth.options
        assert (d["model"], d["finetune_steps"], d["finetune_lr"]) == ("Intel/dpt-large", 300, 1e-7)


# ------------------------------------------------------------------------------------------
# scenescape generate
# ------------------------------------------------------------------------------------------

def _tiny_config(tmp_path: Path, depth_model: str, inpaint_model: str) -> Path:
    """configs/cpu-tiny.yaml with the depth and inpainter sections switched to the model backends.

    (Overrides merge into a preset's backend ``options``, so switching a backend whose preset section
    has options of another backend is done by editing the YAML, as a user would.)
    """
    import yaml

    data = yaml.safe_load((ROOT / "configs" / "cpu-tiny.yaml").read_text())
    data.update({
        "prompt": "a tiny test room", "width": 64, "height": 64, "first_frame": "inpainter",
        "text_to_image": {"name": "", "options": {}},
        "depth": {"name": "transformers", "options": {"model": depth_model}},
        "inpainter": {"name": "diffusers", "options": {"model": inpaint_model, "outpaint_border": 8}},
        "output": {"mesh_formats": ["ply"], "fps": 5.0},
    })
    if "first_depth" in data:
        data["first_depth"] = {"name": "", "options": {}}  # frame 0 depth from the transformers model too
    path = tmp_path / "tiny-models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_generate_missing_model_offline_one_message(tiny, tmp_path, offline):
    cfg = _tiny_config(tmp_path, tiny["depth"], MISSING)
    r = _runner().invoke(cli, ["generate", "--config", str(cfg), "--frames", "2", "--out", str(tmp_path / "run"),
                               "--quiet"])
    assert r.exit_code != 0
    err_lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and MISSING in err_lines[0] and "HF_HUB_OFFLINE" in err_lines[0]
    assert "Traceback" not in r.output
    assert not (tmp_path / "run" / "frames").exists()


def _generate_tiny(tiny, tmp_path: Path, out: str, seed: int) -> Path:
    cfg = _tiny_config(tmp_path, tiny["depth"], tiny["inpaint"])
    r = _runner().invoke(cli, [
        "generate", "a tiny test room", "--config", str(cfg), "--frames", "3", f"seed={seed}",
        "inpainter.options.steps=2", "--out", str(tmp_path / out), "--quiet",
    ])
    assert r.exit_code == 0, r.output
    return tmp_path / out


@pytest.mark.slow
def test_generate_end_to_end_with_tiny_models(tiny, tmp_path, offline):
    from scenescape.io import load_image

    run = _generate_tiny(tiny, tmp_path, "run", seed=4)
    frames = sorted((run / "frames").glob("*.png"))
    assert len(frames) == 3
    assert (run / "video.mp4").stat().st_size > 0 and (run / "mesh.ply").stat().st_size > 0
    assert (run / "cameras.json").is_file()
    depths = sorted((run / "depth").glob("*.npy"))
    assert len(depths) == 3
    for d in depths:
        z = np.load(d)
        assert np.isfinite(z).all() and (z > 0).all()
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["inpainter"]["options"]["model"] == tiny["inpaint"]
    assert saved["depth"]["name"] == "transformers"
    # the same seed gives the same frames; another seed gives other frames
    again = _generate_tiny(tiny, tmp_path, "again", seed=4)
    other = _generate_tiny(tiny, tmp_path, "other", seed=5)
    for f in frames:
        assert np.array_equal(load_image(f), load_image(again / "frames" / f.name))
    assert not np.array_equal(load_image(frames[0]), load_image(other / "frames" / frames[0].name))


def test_required_models_walks_any_config_shape(tiny):
    """Backend sections anywhere in a config (scene or object) are found; defaults fill the id."""
    import dataclasses

    from scenescape.backends import BackendConfig
    from scenescape.cli.models import required_models
    from scenescape.config import ConfigError

    @dataclasses.dataclass
    class Nested:
        guidance: BackendConfig = dataclasses.field(
            default_factory=lambda: BackendConfig("stable_diffusion", {"model": tiny["inpaint"]}))

    @dataclasses.dataclass
    class Cfg:
        depth: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig("transformers"))
        inpainter: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig("opencv"))
        sub: Nested = dataclasses.field(default_factory=Nested)

    reqs = {r.section: r for r in required_models(Cfg())}
    assert set(reqs) == {"depth", "sub.guidance"}  # opencv needs no model
    assert reqs["depth"].model_id == "depth-anything/Depth-Anything-V2-Small-hf"  # the class default
    assert reqs["depth"].kind == "transformers"
    assert (reqs["sub.guidance"].model_id, reqs["sub.guidance"].kind) == (tiny["inpaint"], "diffusers")
    with pytest.raises(ConfigError, match="stepz"):
        required_models(Cfg(depth=BackendConfig("transformers", {"stepz": 1})))


def test_models_download_refused_offline(offline):
    r = _runner().invoke(cli, ["models", "--download", "inpainter.name=diffusers", f"inpainter.options.model={MISSING}"])
    assert r.exit_code == 1
    assert "HF_HUB_OFFLINE is set, so it cannot be downloaded" in r.output and MISSING in r.output
