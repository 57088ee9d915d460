"""Noise-Free Score Distillation (Katzir et al. 2023): SDS without the noise residual.

``grad = w(t) (delta_D + s delta_C)`` with the condition direction ``delta_C = eps_c - eps_null``
and the domain direction ``delta_D = eps_null`` for ``t < nfsd_t_split T`` (small noise: the
prediction is the remaining "off-manifold" part of the image) and
``nfsd_negative_scale (eps_null - eps_neg)`` above it (away from the negative prompt). ``eps_null``
is the empty prompt's prediction (the model's ``null_conditioning`` when it has one, otherwise the
unconditional branch) and ``eps_neg`` the negative prompt's (the unconditional branch).
"""

from __future__ import annotations

from typing import Any

import torch

from scenescape.backends.guidance.base import (
    Rule,
    finish_gradient,
    noised_at_step,
    step_args,
    weight,
)


class NFSD(Rule):
    """``mode: nfsd``."""

    @torch.no_grad()
    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        step, total, g = step_args(step_info)
        t, x_t, _noise, ab = noised_at_step(self.model, latents, self.cfg, step, total, g)
        null_fn = getattr(self.model, "null_conditioning", None)
        null = null_fn(uncond) if null_fn is not None else uncond
        eps = self.model.predict_noise(torch.cat([x_t] * 3), torch.cat([t] * 3),
                                       torch.cat([null, uncond, cond])).float()
        eps_null, eps_neg, eps_c = eps.chunk(3)
        small = (t < int(self.cfg.nfsd_t_split * self.model.alphas_cumprod.shape[0])).view(-1, *([1] * (x_t.ndim - 1)))
        delta_d = torch.where(small, eps_null, self.cfg.nfsd_negative_scale * (eps_null - eps_neg))
        delta_c = eps_c - eps_null
        return finish_gradient(weight(ab, self.cfg) * (delta_d + self.cfg.scale(step, total) * delta_c), self.cfg)


__all__ = ["NFSD"]
