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
    noised_at_step,
    step_args,
    weight,
)


@torch.no_grad()
def sds_gradient(model: ScoreModel, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 cfg: ScoreDistillationConfig, step: int = 0, max_steps: int = 1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SDS gradient ``w(t) (eps_hat(x_t) - eps)`` w.r.t. ``latents (B, c, h, w)``."""
    t, x_t, noise, ab = noised_at_step(model, latents, cfg, step, max_steps, generator)
    eps_hat = cfg_noise(model, x_t, t, cond, uncond, cfg.scale(step, max_steps))
    return finish_gradient(weight(ab, cfg) * (eps_hat - noise), cfg)


class SDS(Rule):
    """``mode: sds``."""

    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        step, total, g = step_args(step_info)
        return sds_gradient(self.model, latents, cond, uncond, self.cfg, step, total, g)


__all__ = ["SDS", "sds_gradient"]
