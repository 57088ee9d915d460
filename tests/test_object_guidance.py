"""Score-distillation guidance: the SDS/SJC formulas, CFG convention, gradient injection, tiny SD."""

from __future__ import annotations

import pytest
import torch

from scenescape.backends import GUIDANCE, build_backend
from scenescape.backends.guidance import (
    AnalyticScoreModel,
    ScoreDistillationConfig,
    inject_gradient,
    scaled_linear_alphas_cumprod,
    sds_gradient,
    sjc_gradient,
    sjc_sigma_ladder,
)


def _analytic(target: torch.Tensor) -> AnalyticScoreModel:
    return AnalyticScoreModel(lambda info: target)


def test_inject_gradient_puts_the_gradient_on_the_latents():
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    g = torch.randn(2, 4, 8, 8)
    loss = inject_gradient(z, g)
    loss.backward()
    assert torch.allclose(z.grad, g / 2, atol=1e-6)
    assert loss.item() == pytest.approx(0.5 * (g ** 2).sum().item() / 2, rel=1e-5)


def test_sds_with_the_analytic_model_is_the_exact_weighted_residual():
    """eps_hat - eps = sqrt(ab / (1 - ab)) (z - target), so grad = (1 - ab) * that, whatever the noise."""
    target = torch.rand(1, 3, 8, 8) * 2 - 1
    z = torch.rand(1, 3, 8, 8) * 2 - 1
    model = _analytic(target)
    cfg = ScoreDistillationConfig(t_min=0.5, t_max=0.5, guidance_scale=100.0)
    g = sds_gradient(model, z, target, target, cfg, generator=torch.Generator().manual_seed(0))
    ab = model.alphas_cumprod[500]
    expected = (1 - ab) * (ab / (1 - ab)).sqrt() * (z - target)
    assert torch.allclose(g, expected, atol=1e-4)
    clipped = sds_gradient(model, z, target, target, ScoreDistillationConfig(t_min=0.5, t_max=0.5, grad_clip=0.01))
    assert clipped.abs().max() <= 0.01 + 1e-7


def test_sjc_with_the_analytic_model_points_at_the_target():
    target = torch.rand(1, 3, 8, 8) * 2 - 1
    y = torch.rand(1, 3, 8, 8) * 2 - 1
    model = _analytic(target)
    ladder = sjc_sigma_ladder(model.alphas_cumprod)
    assert ladder[0] < 0.1 and ladder[-1] > 12  # the extremes exist and are excluded by the default range
    cfg = ScoreDistillationConfig(mode="sjc", sjc_sigma_min=1.0, sjc_sigma_max=1.0 + 1e-3, guidance_scale=1.0)
    sig = ladder[(ladder >= 1.0) & (ladder <= 1.0 + 1e-3)]
    if sig.numel() == 0:  # widen to the nearest ladder value
        i = int(torch.argmin((ladder - 1.0).abs()))
        cfg = ScoreDistillationConfig(mode="sjc", sjc_sigma_min=float(ladder[i]) - 1e-6,
                                      sjc_sigma_max=float(ladder[i]) + 1e-6, guidance_scale=1.0)
        sig = ladder[i:i + 1]
    g = sjc_gradient(model, y, target, target, cfg, generator=torch.Generator().manual_seed(1))
    # the ideal denoiser returns the target: D = target, so the loss gradient is (y - target) / sigma
    assert torch.allclose(g, (y - target) / sig[0], atol=1e-3)
    cfg_nvr = ScoreDistillationConfig(mode="sjc", sjc_sigma_min=cfg.sjc_sigma_min, sjc_sigma_max=cfg.sjc_sigma_max,
                                      sjc_variance_reduced=False, sjc_samples=3)
    g2 = sjc_gradient(model, y, target, target, cfg_nvr, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(g2, g, atol=1e-2)  # (D - z) / sigma keeps the noise term


class _LinearCond:
    """eps = x_t + cond: checks the CFG combination eps_u + s (eps_c - eps_u)."""

    alphas_cumprod = scaled_linear_alphas_cumprod()

    def predict_noise(self, x_t, t, cond):
        return x_t * 0 + cond


def test_cfg_convention_is_eps_u_plus_s_times_difference():
    m = _LinearCond()
    z = torch.zeros(1, 1, 2, 2)
    cond, uncond = torch.full_like(z, 2.0), torch.full_like(z, 1.0)
    cfg = ScoreDistillationConfig(t_min=0.5, t_max=0.5, guidance_scale=7.0, weighting="uniform")
    g = sds_gradient(m, z, cond, uncond, cfg, generator=torch.Generator().manual_seed(0))
    # replay the draws (t, then the noise): eps_hat = 1 + 7 * (2 - 1) = 8 everywhere; grad = eps_hat - noise
    gen = torch.Generator().manual_seed(0)
    assert torch.randint(500, 501, (1,), generator=gen).item() == 500
    noise = torch.randn(z.shape, generator=gen)
    assert torch.allclose(g, 8.0 - noise, atol=1e-5)


def test_t_range_schedule_and_validation():
    cfg = ScoreDistillationConfig(t_min=0.02, t_max=0.98, t_max_end=0.5)
    assert cfg.t_range(0, 100) == (0.02, 0.98)
    assert cfg.t_range(100, 100) == pytest.approx((0.02, 0.5))
    with pytest.raises(ValueError, match="t_min"):
        ScoreDistillationConfig(t_min=0.9, t_max=0.1)
    with pytest.raises(ValueError, match="t_max"):
        ScoreDistillationConfig(t_max=1.5)


def test_tiny_stable_diffusion_guidance_sds_and_sjc(tmp_path):
    from scenescape.testing.tiny import make_tiny_sd

    folder = make_tiny_sd(tmp_path / "sd")
    g = build_backend(GUIDANCE, "stable_diffusion", {"model": folder, "resolution": 64, "negative_prompt": "blurry"})
    assert g.model.resolution == 64 and g.model.alphas_cumprod.shape == (1000,)
    for mode in ("sds", "sjc"):
        g.cfg.mode = mode
        img = torch.rand(2, 16, 16, 3, requires_grad=True)
        loss = g.step(img, ["a mug, front view", "a mug, back view"],
                      {"step": 0, "max_steps": 10, "generator": torch.Generator().manual_seed(0)})
        loss.backward()
        assert torch.isfinite(loss) and img.grad is not None
        assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0  # through the VAE encoder
    e_front, e_back = g.model.embed("a mug, front view"), g.model.embed("a mug, back view")
    assert e_front.shape[0] == 1 and not torch.allclose(e_front, e_back)
    assert "blurry" in g.model._emb_cache  # the negative prompt is the unconditional branch
    with pytest.raises(ValueError, match="prompts"):
        g.step(torch.rand(1, 16, 16, 3), ["a", "b"], {})


def test_missing_model_is_a_clear_error(tmp_path):
    from scenescape.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="does-not-exist"):
        build_backend(GUIDANCE, "stable_diffusion", {"model": str(tmp_path / "does-not-exist")})
    with pytest.raises(ValueError, match="target"):
        build_backend(GUIDANCE, "analytic", {})
