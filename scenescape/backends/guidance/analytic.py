"""Score models that are exact, so the optimum of a distillation is known.

* :class:`AnalyticScoreModel` -- the ideal denoiser of a point mass at a known target image per
  camera (the object pipeline renders a known synthetic object); :class:`AnalyticGuidance` plugs it
  into any rule (``guidance.name: analytic``).
* :class:`GaussianMixtureScoreModel` -- the exact noisy score of a Gaussian mixture over small
  images, with a conditional ("the prompt") and an unconditional mixture, so classifier-free
  guidance behaves as it does with a real model: it pushes away from what the unconditional
  distribution has and the conditional one lacks. Used by ``benchmarks/typicality.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.backends.guidance.base import (
    ScoreDistillationConfig,
    ScoreDistillationGuidance,
    as_bchw,
    scaled_linear_alphas_cumprod,
)
from scenescape.errors import InputError


class AnalyticScoreModel:
    """Ideal denoiser of a point mass at a known target image (per camera).

    ``encode`` maps ``[0, 1]`` images to ``[-1, 1]`` (pixel space is the latent space); the condition
    is the target in that space, so for noisy ``x_t`` the prediction is
    ``(x_t - sqrt(ab) target) / sqrt(1 - ab)`` -- exactly the noise when ``z == target``. The
    prediction does not depend on the text, so ``eps_u == eps_c`` and CFG leaves it unchanged.
    """

    latent_energy = 1.0
    """Sum over channels of the per-pixel variance of its latents: 3 channels of colours uniform in
    [-1, 1] (variance 1/3 each), a quarter of Stable Diffusion's 4 unit-variance latent channels."""

    def __init__(self, target: Callable[[dict[str, Any]], torch.Tensor], resolution: int | None = None):
        self.target = target
        self.resolution = resolution
        self.alphas_cumprod = scaled_linear_alphas_cumprod()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution and x.shape[-1] != self.resolution:
            x = F.interpolate(x, (self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self._resize(images.float()) * 2 - 1

    def conditioning(self, prompts: list[str], step_info: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            tgt = as_bchw(torch.as_tensor(self.target(step_info)).float())
        tgt = self.encode(tgt)
        return tgt, tgt

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * cond.to(x_t)) / (1 - ab).sqrt()


class AnalyticGuidance(ScoreDistillationGuidance):
    """Any rule with :class:`AnalyticScoreModel`: the optimum of the distillation is the known target.

    Built with ``target``, a callable ``step_info -> (B, H, W, 3)`` images in [0, 1] (the object
    pipeline passes a renderer of a known synthetic object for the cameras in ``step_info``).
    """

    wants_known_target = True
    """Declares that the object pipeline should pass ``target`` (its renderer of the known object,
    ``config.analytic_shape``); any guidance class may declare it."""

    @dataclasses.dataclass
    class Config(ScoreDistillationConfig):
        resolution: int | None = None
        """Resize renders to this size before scoring (None = the render size)."""

    def __init__(self, cfg: Config | None = None, target: Callable[[dict[str, Any]], torch.Tensor] | None = None,
                 **_: Any):
        self.cfg = cfg or self.Config()
        if target is None:
            raise InputError("AnalyticGuidance needs target=callable(step_info) -> (B, H, W, 3) images "
                             "(the object pipeline supplies a renderer of its known synthetic object)")
        self.model = AnalyticScoreModel(target, self.cfg.resolution)


class GaussianMixtureScoreModel:
    """Exact noise prediction of isotropic Gaussian mixtures over images ``(C, H, W)`` in ``[-1, 1]``.

    Args:
        means: ``(K, C, H, W)`` component means (latent space = ``2 * image - 1``).
        stds: ``(K,)`` component standard deviations.
        weights: ``(K,)`` mixture weights of the *unconditional* distribution.
        conditional: ``(K,)`` bool, the components of the conditional ("prompted") distribution; its
            weights are ``weights`` restricted to them and renormalised.

    For noisy ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) n`` each component becomes
    ``N(sqrt(ab) mu_k, (ab s_k^2 + 1 - ab) I)``; the prediction is
    ``eps = -sqrt(1 - ab) grad log p_t(x_t) = sqrt(1 - ab) sum_k r_k (x_t - sqrt(ab) mu_k) / v_k``
    with the posterior responsibilities ``r_k``. Conditioning tensors are ``(B, 1)``: 1 for the
    conditional mixture, 0 for the unconditional one (``conditioning`` returns them).
    """

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor, conditional: torch.Tensor):
        self.means = means.float()
        self.stds = stds.float()
        w = weights.float()
        if not (w > 0).all() or self.stds.min() <= 0:
            raise InputError("GaussianMixtureScoreModel needs positive weights and standard deviations")
        self.log_w_uncond = (w / w.sum()).log()
        c = conditional.bool()
        if not c.any():
            raise InputError("GaussianMixtureScoreModel needs at least one conditional component")
        wc = torch.where(c, w, torch.zeros_like(w))
        self.log_w_cond = torch.where(c, (wc / wc.sum()).clamp_min(1e-30).log(), torch.full_like(w, -math.inf))
        self.alphas_cumprod = scaled_linear_alphas_cumprod()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * 2 - 1

    def conditioning(self, prompts: list[str], step_info: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(prompts)
        return torch.ones(b, 1), torch.zeros(b, 1)

    def null_conditioning(self, uncond: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(uncond)

    def log_density(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` log of ``w_k N(x_t; sqrt(ab) mu_k, v_k I)``."""
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, 1)
        d = x_t[0].numel()
        v = ab * self.stds[None] ** 2 + (1 - ab)  # (B, K)
        diff = x_t.reshape(x_t.shape[0], 1, -1) - ab.sqrt()[:, :, None] * self.means.reshape(1, self.means.shape[0], -1)
        sq = (diff ** 2).sum(-1)
        logw = torch.where(cond.reshape(-1, 1) > 0.5, self.log_w_cond[None], self.log_w_uncond[None])
        return logw - 0.5 * sq / v - 0.5 * d * torch.log(2 * math.pi * v)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, 1)
        v = ab * self.stds[None] ** 2 + (1 - ab)
        r = torch.softmax(self.log_density(x_t, t, cond), dim=-1)  # (B, K)
        flat = x_t.reshape(x_t.shape[0], -1)
        mu = self.means.reshape(self.means.shape[0], -1)
        # sum_k r_k (x - sqrt(ab) mu_k) / v_k
        num = (r / v).sum(-1, keepdim=True) * flat - ab.sqrt() * ((r / v) @ mu)
        return ((1 - ab).sqrt() * num).view_as(x_t)

    def sample(self, n: int, generator: torch.Generator | None = None, conditional: bool = True) -> torch.Tensor:
        """``(n, C, H, W)`` exact samples in latent space (``[-1, 1]`` scale, unclipped)."""
        logw = self.log_w_cond if conditional else self.log_w_uncond
        k = torch.multinomial(logw.exp(), n, replacement=True, generator=generator)
        noise = torch.randn((n, *self.means.shape[1:]), generator=generator)
        return self.means[k] + self.stds[k].view(-1, 1, 1, 1) * noise


__all__ = ["AnalyticGuidance", "AnalyticScoreModel", "GaussianMixtureScoreModel"]
