"""Score Distillation Sampling (DreamFusion): ``grad = w(t) (eps_hat(x_t) - eps)``.

``eps_hat`` is the classifier-free guided prediction at the scheduled guidance scale; see
:mod:`.base` for the timestep range, weighting and CFG conventions.
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
    noisy,
    sample_timesteps,
    step_args,
    weight,
)


@torch.no_grad()
def sds_gradient(model: ScoreModel, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 cfg: ScoreDistillationConfig, step: int = 0, max_steps: int = 1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SDS gradient ``w(t) (eps_hat(x_t) - eps)`` w.r.t. ``latents (B, c, h, w)``."""
    lo, hi = cfg.t_range(step, max_steps)
    t = sample_timesteps(model, latents.shape[0], lo, hi, generator, latents.device)
    x_t, noise, ab = noisy(model, latents.detach().float(), t, generator)
    eps_hat = cfg_noise(model, x_t, t, cond, uncond, cfg.scale(step, max_steps))
    return finish_gradient(weight(ab, cfg) * (eps_hat - noise), cfg)


class SDS(Rule):
    """``mode: sds``."""

    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        step, total, g = step_args(step_info)
        return sds_gradient(self.model, latents, cond, uncond, self.cfg, step, total, g)


__all__ = ["SDS", "sds_gradient"]
