"""Score Jacobian Chaining: the perturb-and-average score of the denoiser on the model's sigma ladder.

``sigma`` from ``sqrt((1 - ab) / ab)`` restricted to ``[sjc_sigma_min, sjc_sigma_max]`` (about
0.1..12); ``z = y + sigma n``; the denoiser is ``D = z - sigma eps_hat(z / sqrt(1 + sigma^2), t(sigma))``;
the score ``(D - y) / sigma`` (variance-reduced form; ``(D - z) / sigma`` otherwise) is averaged over
``sjc_samples`` noise draws; the loss gradient is its negative.
"""

from __future__ import annotations

from typing import Any

import torch

from scenescape.backends.guidance.base import (
    Rule,
    ScoreDistillationConfig,
    ScoreModel,
    cfg_noise,
    finish_gradient,
    step_args,
)
from scenescape.errors import InputError


def sjc_sigma_ladder(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``(T,)`` noise levels ``sigma_t = sqrt((1 - ab_t) / ab_t)`` of a DDPM schedule (increasing)."""
    ab = alphas_cumprod.double()
    return ((1 - ab) / ab).sqrt().float()


@torch.no_grad()
def sjc_gradient(model: ScoreModel, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 cfg: ScoreDistillationConfig, step: int = 0, max_steps: int = 1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SJC loss gradient ``-(1/K) sum_k (D(y + sigma n_k) - y) / sigma`` w.r.t. ``latents`` ``y``."""
    sig_all = sjc_sigma_ladder(model.alphas_cumprod)
    allowed = torch.nonzero((sig_all >= cfg.sjc_sigma_min) & (sig_all <= cfg.sjc_sigma_max)).flatten()
    if allowed.numel() == 0:
        raise InputError(f"no timestep has sigma in [{cfg.sjc_sigma_min}, {cfg.sjc_sigma_max}] "
                         f"(the model's ladder spans {sig_all.min():.3g}..{sig_all.max():.3g})")
    y = latents.detach().float()
    b = y.shape[0]
    scale = cfg.scale(step, max_steps)
    total = torch.zeros_like(y)
    for _ in range(cfg.sjc_samples):
        pick = torch.randint(0, allowed.numel(), (b,), generator=generator)
        t = allowed[pick].to(y.device)
        sigma = sig_all.to(y.device)[t].view(b, *([1] * (y.ndim - 1)))
        n = torch.randn(y.shape, generator=generator, dtype=torch.float32).to(y.device)
        z = y + sigma * n
        x_t = z / torch.sqrt(1 + sigma * sigma)
        eps_hat = cfg_noise(model, x_t, t, cond, uncond, scale)
        d = z - sigma * eps_hat
        score = (d - y) / sigma if cfg.sjc_variance_reduced else (d - z) / sigma
        total += score
    return finish_gradient(-total / cfg.sjc_samples, cfg)


class SJC(Rule):
    """``mode: sjc``."""

    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        step, total, g = step_args(step_info)
        return sjc_gradient(self.model, latents, cond, uncond, self.cfg, step, total, g)


__all__ = ["SJC", "sjc_gradient", "sjc_sigma_ladder"]
