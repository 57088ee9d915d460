"""Classifier Score Distillation (Yu et al. 2023): only the classifier direction of CFG.

``grad = -w(t) s (eps_c(x_t) - eps_u(x_t))`` ... with the sign of SDS: SDS's guided residual is
``eps_u - eps + s (eps_c - eps_u)``; CSD keeps the ``s (eps_c - eps_u)`` term and drops the
generative residual ``eps_u - eps`` (the noise term that makes SDS noisy). ``s`` is the scheduled
guidance scale (so the useful range is ~1-40 rather than SDS's 100).
"""

from __future__ import annotations

from typing import Any

import torch

from scenescape.backends.guidance.base import (
    Rule,
    both_noises,
    finish_gradient,
    noised_at_step,
    step_args,
    weight,
)


class CSD(Rule):
    """``mode: csd``: ``grad = w(t) s (eps_c - eps_u)``."""

    @torch.no_grad()
    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        step, total, g = step_args(step_info)
        t, x_t, _noise, ab = noised_at_step(self.model, latents, self.cfg, step, total, g)
        eps_u, eps_c = both_noises(self.model, x_t, t, cond, uncond)
        return finish_gradient(weight(ab, self.cfg) * self.cfg.scale(step, total) * (eps_c - eps_u), self.cfg)


__all__ = ["CSD"]
