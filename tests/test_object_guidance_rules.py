"""Guidance rules chosen by name (SDS, SJC, CSD, NFSD, VSD), the guidance-scale schedule, the exact
Gaussian-mixture score model, and VSD's LoRA: trained, checkpointed, resumed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from scenescape.backends import GUIDANCE, GUIDANCE_RULES, build_backend
from scenescape.backends.guidance import (
    GaussianMixtureScoreModel,
    ScoreDistillationConfig,
    ScoreDistillationGuidance,
)
from scenescape.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _gmm() -> GaussianMixtureScoreModel:
    g = torch.Generator().manual_seed(0)
    means = torch.rand(5, 3, 4, 4, generator=g) * 2 - 1
    return GaussianMixtureScoreModel(means, torch.tensor([0.1, 0.2, 0.15, 0.3, 0.25]), torch.tensor([1., 2, 1, 1, 3]),
                                     torch.tensor([True, True, False, False, True]))


def _guidance(model, **kw) -> ScoreDistillationGuidance:
    g = ScoreDistillationGuidance()
    g.cfg, g.model = ScoreDistillationConfig(**kw), model
    return g


def test_rules_are_registered_and_chosen_by_name():
    assert {"sds", "sjc", "csd", "nfsd", "vsd"} <= set(GUIDANCE_RULES.names())
    for mode in ("sds", "sjc", "csd", "nfsd", "vsd"):
        g = _guidance(_gmm(), mode=mode)
        assert type(g.rule).__name__ == mode.upper()
    with pytest.raises(ConfigError, match="unknown guidance mode 'vds'"):
        ScoreDistillationConfig(mode="vds")


def test_guidance_scale_schedule():
    c = ScoreDistillationConfig(guidance_scale=100.0, guidance_scale_end=7.5)
    assert c.scale(0, 11) == 100.0 and c.scale(10, 11) == pytest.approx(7.5) and c.scale(5, 11) == pytest.approx(53.75)
    cos = ScoreDistillationConfig(guidance_scale=100.0, guidance_scale_end=0.0, guidance_schedule="cosine")
    assert cos.scale(1, 11) == pytest.approx(100 * (1 - 0.5 * (1 - torch.cos(torch.tensor(torch.pi * 0.1)).item())))
    assert ScoreDistillationConfig(guidance_scale=7.5).scale(3, 10) == 7.5
    with pytest.raises(ValueError, match="guidance_scale_end"):
        ScoreDistillationConfig(guidance_scale_end=-1.0)


def test_gaussian_mixture_noise_prediction_is_the_exact_score():
    m = _gmm()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float32)
    t = torch.tensor([10, 300, 600, 950])
    for c in (torch.ones(4, 1), torch.zeros(4, 1)):
        xr = x.clone().requires_grad_(True)
        logp = torch.logsumexp(m.log_density(xr, t, c), dim=-1).sum()
        (score,) = torch.autograd.grad(logp, xr)
        ab = m.alphas_cumprod[t].view(-1, 1, 1, 1)
        assert torch.allclose(m.predict_noise(x, t, c), -(1 - ab).sqrt() * score, atol=1e-4)
    # the conditional mixture has only the conditional components
    ld = m.log_density(x, t, torch.ones(4, 1))
    assert torch.isinf(ld[:, 2:4]).all() and torch.isfinite(ld[:, [0, 1, 4]]).all()


def _replay(seed, b, lo, hi, shape, model):
    g = torch.Generator().manual_seed(seed)
    n_t = model.alphas_cumprod.shape[0]
    t = torch.randint(int(lo * n_t), int(hi * n_t) + 1, (b,), generator=g)
    noise = torch.randn(shape, generator=g)
    ab = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    return t, noise, ab


def test_csd_and_nfsd_formulas():
    m = _gmm()
    z = torch.rand(3, 3, 4, 4) * 2 - 1
    cond, uncond = m.conditioning(["a"] * 3, {})
    info = {"step": 0, "max_steps": 1, "generator": torch.Generator().manual_seed(3)}
    csd = _guidance(m, mode="csd", guidance_scale=5.0, t_min=0.5, t_max=0.5).rule.gradient(z, cond, uncond, info)
    t, noise, ab = _replay(3, 3, 0.5, 0.5, z.shape, m)
    x_t = ab.sqrt() * z + (1 - ab).sqrt() * noise
    expect = (1 - ab) * 5.0 * (m.predict_noise(x_t, t, cond) - m.predict_noise(x_t, t, uncond))
    assert torch.allclose(csd, expect, atol=1e-5)
    # NFSD below the split: w (eps_null + s (eps_c - eps_null)); the noise sample itself is not subtracted
    info["generator"] = torch.Generator().manual_seed(4)
    nfsd = _guidance(m, mode="nfsd", guidance_scale=7.5, t_min=0.1, t_max=0.1).rule.gradient(z, cond, uncond, info)
    t, noise, ab = _replay(4, 3, 0.1, 0.1, z.shape, m)
    x_t = ab.sqrt() * z + (1 - ab).sqrt() * noise
    e_n, e_c = m.predict_noise(x_t, t, uncond), m.predict_noise(x_t, t, cond)
    assert torch.allclose(nfsd, (1 - ab) * (e_n + 7.5 * (e_c - e_n)), atol=1e-5)


def test_vsd_starts_as_the_classifier_direction_and_trains_its_adapter():
    m = _gmm()
    g = _guidance(m, mode="vsd", guidance_scale=7.5, t_min=0.5, t_max=0.5, vsd_lora_steps=3, vsd_lr=1e-2)
    z = (torch.rand(4, 3, 4, 4) * 2 - 1).requires_grad_(True)
    info = {"step": 0, "max_steps": 10, "generator": torch.Generator().manual_seed(5)}
    g.step(torch.sigmoid(z), ["a"] * 4, info)  # builds the adapter (zero residual), then trains it
    rule = g.rule
    before = {k: v.clone() for k, v in rule.state_dict()["adapter"].items()}
    assert set(rule.state_dict()) == {"adapter", "optimizer"}
    # at initialisation eps_phi = eps_c: the VSD gradient is w (s - 1) (eps_c - eps_u)
    from scenescape.backends.guidance.vsd import VSD

    fresh = VSD(ScoreDistillationConfig(mode="vsd", guidance_scale=7.5, t_min=0.5, t_max=0.5), m)
    cond, uncond = m.conditioning(["a"] * 4, {})
    lat = z.detach()
    grad = fresh.gradient(lat, cond, uncond, {"generator": torch.Generator().manual_seed(6)})
    t, noise, ab = _replay(6, 4, 0.5, 0.5, lat.shape, m)
    x_t = ab.sqrt() * lat + (1 - ab).sqrt() * noise
    expect = (1 - ab) * 6.5 * (m.predict_noise(x_t, t, cond) - m.predict_noise(x_t, t, uncond))
    assert torch.allclose(grad, expect, atol=1e-4)
    for _ in range(3):
        g.step(torch.sigmoid(z), ["a"] * 4, info)
    after = rule.state_dict()["adapter"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert "vsd_lora_loss" in g.last_stats


def _typicality():
    spec = importlib.util.spec_from_file_location("typicality", ROOT / "benchmarks" / "typicality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_typicality_sds_at_high_guidance_is_over_saturated():
    """The benchmark's headline on a small budget: SDS at CFG 100 leaves the samples' saturation far behind."""
    ty = _typicality()
    model, mu = ty.build_mixture()
    samples = ((model.sample(16, torch.Generator().manual_seed(0)) + 1) / 2).clamp(0, 1)
    hi = ty.metrics(ty.distil("sds", 100.0, 1, 6, 150, 0.1, model), mu)
    assert hi["sat"] > ty.metrics(samples, mu)["sat"] + 0.3, hi


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from scenescape.testing.tiny import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.mark.slow
def test_vsd_lora_changes_is_checkpointed_and_resumes_to_the_same_state(tmp_path, tiny_sd):
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline

    ov = ["steps=3", "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12", "nerf.max_resolution=64",
          "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4", "shading.albedo_steps=100",
          "loss.orientation_start=0", "loss.orientation_end=0", "progress=false", "output.export=false",
          "output.val_every=0", "output.checkpoint_every=0",
          f"guidance.options={{model: '{tiny_sd}', resolution: 32, mode: vsd, guidance_scale: 7.5, vsd_lr: 0.01}}"]
    cfg = ObjectConfig.load(None, ov)
    full = ObjectPipeline(cfg)
    full.run("a mug", tmp_path / "full")
    ck = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    lora = {k: v for k, v in ck["guidance"]["rule"]["adapter"].items() if "lora_B" in k}
    assert lora and any(v.abs().sum() > 0 for v in lora.values())  # B starts at zero: the LoRA trained
    assert any(k.startswith("camera.") for k in ck["guidance"]["rule"]["adapter"])
    part = ObjectPipeline(ObjectConfig.load(None, ov))
    part.run("a mug", tmp_path / "part", stop_after=1)
    mid = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["guidance"]["rule"]["adapter"]
    resumed = ObjectPipeline(ObjectConfig.load(None, ov))
    resumed.run("a mug", tmp_path / "part", resume=True)
    ck2 = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    a, b = ck["guidance"]["rule"]["adapter"], ck2["guidance"]["rule"]["adapter"]
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.allclose(mid[k], a[k]) for k in a)  # steps 2-3 changed it after the resume
    assert ck["losses"] == pytest.approx(ck2["losses"], rel=1e-5)
    # the pretrained prediction is the UNet with the adapter off
    g = build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32})
    x, t = torch.randn(1, 4, 4, 4), torch.tensor([500])
    cond = g.model.embed("a mug")
    ref = g.model.predict_noise(x, t, cond)
    assert torch.allclose(resumed._guidance.model.predict_noise(x, t, cond), ref, atol=1e-5)
