"""Model backends with tiny random-weight models saved to a folder and loaded by that folder's path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenescape.backends import DEPTH, INPAINTERS, TEXT_TO_IMAGE, build_backend
from scenescape.config import ConfigError
from scenescape.testing import make_tiny_depth, make_tiny_sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "inpaint": make_tiny_sd(root / "sd-inpaint", inpainting=True),
        "t2i": make_tiny_sd(root / "sd"),
        "dpt": make_tiny_depth(root / "dpt", kind="dpt"),
        "depth_anything": make_tiny_depth(root / "da", kind="depth_anything"),
    }


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    # smooth-ish image so the models see structure
    base = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    return np.kron(base, np.ones((8, 8, 1), np.float32))[:h, :w].copy()


def _hole(h, w):
    m = np.zeros((h, w), bool)
    m[h // 4: h // 2, w // 3: w - 4] = True
    m[:, :3] = True
    return m


# ------------------------------------------------------------------------------------------
# inpainting
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_sd_folder_is_a_real_pipeline_folder(tiny, tmp_path):
    from pathlib import Path

    p = Path(tiny["inpaint"])
    assert (p / "model_index.json").is_file()
    assert list(p.glob("unet/*.safetensors")) and not list(p.rglob("*.bin"))
    assert (p / "tokenizer" / "vocab.json").is_file() and (p / "tokenizer" / "merges.txt").is_file()
    import json

    unet_cfg = json.loads((p / "unet" / "config.json").read_text())
    assert unet_cfg["in_channels"] == 9 and unet_cfg["sample_size"] == 64
    assert json.loads((Path(tiny["t2i"]) / "unet" / "config.json").read_text())["in_channels"] == 4
    vae_cfg = json.loads((p / "vae" / "config.json").read_text())
    assert len(vae_cfg["block_out_channels"]) == 4  # downscale 8 like real SD
    # a second request is a copy of the cached build, not a rebuild
    again = make_tiny_sd(tmp_path / "copy", inpainting=True)
    assert (Path(again) / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        p / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()


@pytest.mark.slow
def test_inpainter_keeps_unmasked_pixels_exactly_with_border(tiny):
    inp = build_backend(INPAINTERS, "diffusers", {"model": tiny["inpaint"], "steps": 2, "outpaint_border": 4})
    h, w = 44, 60  # not multiples of 8: the canvas is padded and cropped back
    img, m = _image(h, w), _hole(h, w)
    out = inp.inpaint(img, m, None, "a room", seed=1)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    assert np.array_equal(out[~m], img[~m])
    assert np.abs(out[m] - img[m]).mean() > 1e-3  # the hole was actually filled by the model
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.slow
def test_inpainter_seed_contract(tiny):
    cfg = {"model": tiny["inpaint"], "steps": 2, "scheduler": "dpm++", "seed": 5}
    a = build_backend(INPAINTERS, "diffusers", cfg)
    img, m = _image(32, 32), _hole(32, 32)
    o1 = a.inpaint(img, m, None, "p", seed=7)
    o2 = a.inpaint(img, m, None, "p", seed=7)
    o3 = a.inpaint(img, m, None, "p", seed=8)
    assert np.array_equal(o1, o2)
    assert not np.array_equal(o1, o3)
    a.set_seed(7)
    assert np.array_equal(a.inpaint(img, m, None, "p"), o1)
    # without seeds, a fresh object reproduces the same sequence of calls
    b1 = build_backend(INPAINTERS, "diffusers", cfg)
    b2 = build_backend(INPAINTERS, "diffusers", cfg)
    seq1 = [b1.inpaint(img, m, None, "p") for _ in range(2)]
    seq2 = [b2.inpaint(img, m, None, "p") for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(seq1, seq2))
    assert not np.array_equal(seq1[0], seq1[1])


def test_inpainter_generate_and_bad_input(tiny):
    inp = build_backend(INPAINTERS, "diffusers", {"model": tiny["inpaint"], "steps": 2, "scheduler": "euler"})
    g = inp.generate("a beach", 48, 40, seed=3)
    assert g.shape == (40, 48, 3) and np.isfinite(g).all()
    assert np.array_equal(g, inp.generate("a beach", 48, 40, seed=3))
    with pytest.raises(ValueError, match="mask"):
        inp.inpaint(_image(32, 32), np.zeros((16, 16), bool), None, "p", seed=0)
    with pytest.raises(ConfigError, match="scheduler"):
        build_backend(INPAINTERS, "diffusers", {"model": tiny["inpaint"], "scheduler": "pndm"})


@pytest.mark.slow
def test_decoder_finetuning_lowers_preservation_error_and_resets(tiny):
    inp = build_backend(INPAINTERS, "diffusers", {
        "model": tiny["inpaint"], "steps": 2, "decoder_finetune_steps": 6, "decoder_finetune_lr": 1e-3,
        "decoder_preservation_weight": 100.0, "decoder_reset_per_frame": True,
    })
    img, m = _image(32, 32), _hole(32, 32)
    out = inp.inpaint(img, m, None, "p", seed=2)
    h1 = inp.last_finetune
    assert len(h1.losses) == 6
    assert h1.error_after < 0.8 * h1.error_before
    assert np.array_equal(out[~m], img[~m])
    before_weights = {k: v.clone() for k, v in inp._vae32.decoder.state_dict().items()}
    inp.inpaint(img, m, None, "p", seed=2)
    # reset per frame: the second frame starts from the original decoder again
    assert inp.last_finetune.error_before == pytest.approx(h1.error_before, rel=1e-5)
    assert any(not torch.equal(v, inp._decoder_snapshot.state[k]) for k, v in before_weights.items())


# ------------------------------------------------------------------------------------------
# text to image
# ------------------------------------------------------------------------------------------

def test_text_to_image_deterministic(tiny):
    t2i = build_backend(TEXT_TO_IMAGE, "diffusers", {"model": tiny["t2i"], "steps": 2})
    a = t2i.generate("a castle", 64, 48, seed=11)
    b = t2i.generate("a castle", 64, 48, seed=11)
    c = t2i.generate("a castle", 64, 48, seed=12)
    assert a.shape == (48, 64, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="multiples of 8"):
        t2i.generate("a castle", 60, 48, seed=1)


# ------------------------------------------------------------------------------------------
# depth
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dpt", "depth_anything"])
def test_transformers_depth_positive_finite(tiny, kind):
    de = build_backend(DEPTH, "transformers", {"model": tiny[kind]})
    assert de.output == "disparity"  # auto-detected from the model config
    img = _image(40, 56)
    z = de.estimate(img, None)
    assert z.shape == (40, 56) and z.dtype == np.float32
    assert np.isfinite(z).all() and (z > 0).all()
    assert np.median(z) == pytest.approx(1.0, rel=1e-3)  # reference_depth
    kd = np.full((40, 56), 3.0, np.float32) + np.linspace(0, 1, 56, dtype=np.float32)[None]
    km = np.zeros((40, 56), bool)
    km[:, :30] = True
    z2 = de.estimate(img, None, kd, km)
    assert np.isfinite(z2).all() and (z2 > 0).all()
    assert np.allclose(z2[km], kd[km])  # known pixels keep the known depth (seam blend)


def _raw(de, img):
    with torch.no_grad():
        return de.raw(de._pixel_values(img), img.shape[:2]).numpy().astype(np.float64)


@pytest.mark.parametrize("space", ["disparity", "depth"])
def test_depth_alignment_recovers_scale_and_shift(tiny, space):
    de = build_backend(DEPTH, "transformers", {"model": tiny["dpt"], "output": space, "seam": False})
    img = _image(48, 48, seed=3)
    raw0 = _raw(de, img)
    assert raw0.std() > 0
    # the known depth follows an affine map of the model's own output (in ``space``) exactly:
    # on the normalised output, scale 0.3 shift 2 (disparity) / scale 0.5 shift 4 (depth)
    scale, shift = (0.3, 2.0) if space == "disparity" else (0.5, 4.0)
    a = scale / raw0.std()
    b = shift - a * raw0.mean()
    truth = 1.0 / (a * raw0 + b) if space == "disparity" else a * raw0 + b
    km = np.zeros((48, 48), bool)
    km[:, :24] = True
    z = de.estimate(img, None, np.where(km, truth, 0.0), km)
    assert np.allclose(z[~km], truth[~km], rtol=1e-3)


def test_depth_never_returns_nonpositive_for_broken_output(tiny, monkeypatch):
    de = build_backend(DEPTH, "transformers", {"model": tiny["dpt"]})
    img = _image(32, 32)

    def broken(pixel_values, size):
        r = torch.linspace(-1.0, 1.0, size[0] * size[1]).reshape(size)
        r[0, 0] = float("nan")
        return r

    monkeypatch.setattr(de, "raw", broken)
    z = de.estimate(img, None)
    assert np.isfinite(z).all() and (z > 0).all()
    kd = np.full((32, 32), 2.0, np.float32)
    km = np.zeros((32, 32), bool)
    km[:, :16] = True
    z2 = de.estimate(img, None, kd, km)
    assert np.isfinite(z2).all() and (z2 > 0).all()
    monkeypatch.setattr(de, "raw", lambda pv, size: torch.zeros(size))
    with pytest.raises(ValueError, match="no positive disparity"):
        de.estimate(img, None)


@pytest.mark.slow
def test_depth_finetuning_lowers_l1_reset_and_keep(tiny):
    img = _image(40, 40, seed=4)
    yy, xx = np.mgrid[0:40, 0:40]
    kd = (1.5 + 0.04 * xx + 0.5 * (yy > 20)).astype(np.float32)  # a depth the model does not predict
    km = np.ones((40, 40), bool)
    km[10:30, 10:30] = False
    opts = {"model": tiny["dpt"], "finetune_steps": 4, "finetune_lr": 1e-3}
    de = build_backend(DEPTH, "transformers", {**opts, "finetune_reset_per_frame": True})
    de.estimate(img, None, kd, km)
    h1 = de.last_finetune
    assert len(h1.losses) == 4 and h1.error_after < h1.error_before
    de.estimate(img, None, kd, km)
    assert de.last_finetune.error_before == pytest.approx(h1.error_before, rel=1e-4)  # reset
    keep = build_backend(DEPTH, "transformers", {**opts, "finetune_reset_per_frame": False})
    keep.estimate(img, None, kd, km)
    first = keep.last_finetune
    keep.estimate(img, None, kd, km)
    assert keep.last_finetune.error_before < first.error_before  # the finetuned weights carried over


def test_detect_output_from_config():
    from types import SimpleNamespace as NS

    from scenescape.backends.depth.transformers import detect_output

    assert detect_output(NS(model_type="dpt"), "Intel/dpt-large") == "disparity"
    assert detect_output(NS(model_type="depth_anything", depth_estimation_type="relative"), "x") == "disparity"
    assert detect_output(NS(model_type="depth_anything", depth_estimation_type="metric"), "x") == "depth"
    assert detect_output(NS(model_type="zoedepth"), "Intel/zoedepth-nyu") == "depth"
    assert detect_output(NS(model_type="foo"), "someone/metric-depth") == "depth"
    with pytest.raises(ConfigError, match="depth.options.output"):
        detect_output(NS(model_type="foo"), "someone/mystery")


@pytest.mark.slow
def test_tiny_sd_runs_at_512(tiny):
    # sample_size 64 and a downscale-8 VAE: the real SD working size works with the tiny models
    t2i = build_backend(TEXT_TO_IMAGE, "diffusers", {"model": tiny["t2i"], "steps": 1, "guidance": 0.0})
    img = t2i.generate("a wide hall", 512, 512, seed=0)
    assert img.shape == (512, 512, 3) and np.isfinite(img).all()
