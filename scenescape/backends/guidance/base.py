"""Shared machinery of score distillation: protocols, options, schedules, CFG, gradient injection.

One code path serves every score model and every rule:

* a *score model* (:class:`ScoreModel`) knows its noise schedule (``alphas_cumprod``), how to map
  images to its latent space (``encode``), how to condition on prompts/views (``conditioning``) and
  how to predict noise (``predict_noise``). Score models: :mod:`.stable_diffusion` (diffusers) and
  :mod:`.analytic` (exact models whose optimum is known);
* a *rule* (registered by name in ``GUIDANCE_RULES``; the option ``mode`` picks it) turns a batch of
  latents into the distillation gradient: :mod:`.sds`, :mod:`.sjc`, :mod:`.csd`, :mod:`.nfsd`,
  :mod:`.vsd`. A rule may hold trainable state (VSD's LoRA) that it updates after each step and
  that is saved in the run's checkpoint (``state_dict`` / ``load_state_dict``);
* :func:`inject_gradient` turns the gradient into a loss whose gradient w.r.t. the latents it is.

Conventions (stated once, used by every rule):

* classifier-free guidance ``eps = eps_u + s (eps_c - eps_u)`` (``s`` = the guidance scale, default
  100; ``s = 1`` is the plain conditional prediction). ``eps_u`` is the prediction for the negative
  prompt (empty by default).
* guidance-scale schedule: ``s`` goes from ``guidance_scale`` to ``guidance_scale_end`` (when set)
  over the run, ``linear`` or ``cosine`` in the step fraction (:meth:`ScoreDistillationConfig.scale`).
* timesteps ``t ~ U[t_min, t_max] * T`` (``T`` = training timesteps, default range [0.02, 0.98],
  linearly annealed to ``[t_min_end, t_max_end]`` over the run when those are set);
  ``x_t = sqrt(ab) z + sqrt(1 - ab) eps``; ``w(t) = 1 - alpha_bar_t`` by default.
* the loss is ``0.5 * ||z - stopgrad(z - grad)||^2`` summed over latent elements and averaged over
  the batch, so ``d loss / d z = grad / B``.

``Guidance.step`` takes images ``(B, H, W, 3)`` or ``(B, 3, H, W)`` in ``[0, 1]`` (requiring grad),
one prompt per image, and ``step_info`` (``step``, ``max_steps``, ``generator``; ``cameras`` -- the
analytic model's targets and VSD's camera condition -- and ``background``) and returns the scalar loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.backends.base import GUIDANCE_RULES
from scenescape.errors import ConfigError, InputError


@runtime_checkable
class Guidance(Protocol):
    def step(self, images: torch.Tensor, prompts: list[str], step_info: dict[str, Any]) -> torch.Tensor:
        """Scalar loss whose gradient w.r.t. ``images`` is the score-distillation gradient."""
        ...


SJC_LATENT_ENERGY = 4.0
"""Per-pixel latent energy (sum over channels of their variance) of the space SJC's weights are stated
in: Stable Diffusion's 4 unit-variance latent channels, which SJC renders directly. A score model may
declare ``latent_energy`` (default: this value); losses tuned against SJC's score, such as its emptiness
loss, are scaled by ``latent_energy / SJC_LATENT_ENERGY``: the score's pull on a pixel's opacity,
``sum_c (D_c - y_c) (colour_c - background_c) / sigma``, is a product of two latent differences."""


def latent_energy(guidance: Any) -> float:
    """The ``latent_energy`` a guidance's score model declares (``SJC_LATENT_ENERGY`` when it declares none)."""
    model = getattr(guidance, "model", None)
    e = getattr(model, "latent_energy", getattr(guidance, "latent_energy", SJC_LATENT_ENERGY))
    e = float(e)
    if not e > 0:
        raise InputError(f"score model latent_energy must be > 0, got {e}")
    return e


@runtime_checkable
class ScoreModel(Protocol):
    alphas_cumprod: torch.Tensor  # (T,) float32

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in [0, 1] (differentiable) -> latents ``(B, c, h, w)``."""
        ...

    def conditioning(self, prompts: list[str], step_info: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cond, uncond)`` batched like the images (concatenated along the batch for CFG)."""
        ...

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Noise prediction ``(B, c, h, w)`` for noisy latents ``x_t`` at integer timesteps ``t (B,)``."""
        ...


@dataclasses.dataclass
class ScoreDistillationConfig:
    """Options shared by every score model; ``mode`` names the rule (``sds``, ``sjc``, ``csd``,
    ``nfsd``, ``vsd`` or ``package.module:Class``). Options of one rule carry its prefix."""

    mode: str = "sds"
    guidance_scale: float = 100.0
    guidance_scale_end: float | None = None
    """Guidance scale at the last step (None = constant ``guidance_scale``)."""
    guidance_schedule: Literal["linear", "cosine"] = "linear"
    t_min: float = 0.02
    t_max: float = 0.98
    t_min_end: float | None = None
    t_max_end: float | None = None
    weighting: Literal["1-alpha_bar", "uniform", "sds_sqrt"] = "1-alpha_bar"
    grad_clip: float | None = None
    sjc_sigma_min: float = 0.1
    sjc_sigma_max: float = 12.0
    sjc_samples: int = 1
    sjc_variance_reduced: bool = True
    nfsd_t_split: float = 0.2
    """NFSD: below this fraction of the schedule the domain term is the unconditional prediction alone."""
    nfsd_negative_scale: float = 1.0
    """NFSD: weight of the negative-prompt direction above ``nfsd_t_split``."""
    vsd_lora_rank: int = 4
    vsd_lr: float = 1e-3
    """VSD: Adam learning rate of the LoRA (and camera embedding), its own optimiser."""
    vsd_lora_steps: int = 1
    """VSD: LoRA training steps per distillation step."""
    vsd_camera_condition: bool = True
    """VSD: condition the LoRA on the camera (world_to_camera flattened), as ProlificDreamer."""
    vsd_camera_dropout: float = 0.1
    """VSD: probability of dropping the camera condition while training the LoRA."""
    vsd_guidance_scale_lora: float = 1.0
    """VSD: CFG scale of the LoRA's own prediction (1 = conditional only)."""
    vsd_t_min: float = 0.0
    vsd_t_max: float = 1.0
    """VSD: timestep range (fractions) of the LoRA's denoising loss."""
    vsd_hidden: int = 256
    """VSD: width of the residual network used when the score model has no UNet to adapt."""

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "t_min_end", "t_max_end", "nfsd_t_split", "vsd_t_min", "vsd_t_max",
                     "vsd_camera_dropout"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise InputError(f"guidance {name} must be in [0, 1] (a fraction of the schedule), got {v}")
        if self.t_min > self.t_max:
            raise InputError(f"guidance t_min ({self.t_min}) must be <= t_max ({self.t_max})")
        if self.vsd_t_min > self.vsd_t_max:
            raise InputError(f"guidance vsd_t_min ({self.vsd_t_min}) must be <= vsd_t_max ({self.vsd_t_max})")
        for name in ("guidance_scale", "guidance_scale_end", "vsd_guidance_scale_lora"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise InputError(f"{name} must be >= 0, got {v}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise InputError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if not 0 < self.sjc_sigma_min < self.sjc_sigma_max:
            raise InputError(f"need 0 < sjc_sigma_min < sjc_sigma_max, got {self.sjc_sigma_min}, {self.sjc_sigma_max}")
        if self.sjc_samples < 1:
            raise InputError(f"sjc_samples must be >= 1, got {self.sjc_samples}")
        if self.vsd_lora_rank < 1 or self.vsd_lora_steps < 1 or self.vsd_hidden < 1:
            raise InputError("vsd_lora_rank, vsd_lora_steps and vsd_hidden must be >= 1")
        if self.vsd_lr <= 0:
            raise InputError(f"vsd_lr must be > 0, got {self.vsd_lr}")
        if ":" not in self.mode and self.mode not in GUIDANCE_RULES.names():
            raise ConfigError(f"unknown guidance mode '{self.mode}'; available: {', '.join(GUIDANCE_RULES.names())} "
                              "(or 'package.module:Class')")

    def t_range(self, step: int, max_steps: int) -> tuple[float, float]:
        """The (annealed) fraction range of the schedule at ``step``."""
        p = min(max(step / max(max_steps, 1), 0.0), 1.0)
        lo = self.t_min if self.t_min_end is None else self.t_min + p * (self.t_min_end - self.t_min)
        hi = self.t_max if self.t_max_end is None else self.t_max + p * (self.t_max_end - self.t_max)
        return min(lo, hi), max(lo, hi)

    def scale(self, step: int, max_steps: int) -> float:
        """Guidance scale at ``step`` of ``max_steps`` (the schedule every rule uses)."""
        if self.guidance_scale_end is None:
            return float(self.guidance_scale)
        p = min(max(step / max(max_steps - 1, 1), 0.0), 1.0)
        if self.guidance_schedule == "cosine":
            p = 0.5 * (1 - math.cos(math.pi * p))
        return float(self.guidance_scale + p * (self.guidance_scale_end - self.guidance_scale))


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
                                 ) -> torch.Tensor:
    """Stable Diffusion's "scaled_linear" schedule: ``(steps,)`` cumulative products of ``1 - beta``."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def cfg_noise(model: ScoreModel, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
              scale: float) -> torch.Tensor:
    """Classifier-free guided noise ``eps_u + scale (eps_c - eps_u)`` (one batched model call)."""
    if scale == 1.0:
        return model.predict_noise(x_t, t, cond).float()
    eps_u, eps_c = both_noises(model, x_t, t, cond, uncond)
    return eps_u + scale * (eps_c - eps_u)


def both_noises(model: ScoreModel, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eps_u, eps_c)`` from one batched model call."""
    eps = model.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, cond])).float()
    eps_u, eps_c = eps.chunk(2)
    return eps_u, eps_c


def finish_gradient(grad: torch.Tensor, cfg: ScoreDistillationConfig) -> torch.Tensor:
    """``nan_to_num`` and the optional element-wise clip."""
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if cfg.grad_clip is not None:
        grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
    return grad


def sample_timesteps(model: ScoreModel, b: int, lo: float, hi: float, generator: torch.Generator | None,
                     device: Any) -> torch.Tensor:
    """``(b,)`` integer timesteps uniform in ``[lo, hi]`` (fractions of the model's schedule)."""
    n_t = model.alphas_cumprod.shape[0]
    t_lo = min(int(lo * n_t), n_t - 1)
    t_hi = max(t_lo, min(int(hi * n_t), n_t - 1))
    return torch.randint(t_lo, t_hi + 1, (b,), generator=generator).to(device)


def noisy(model: ScoreModel, z: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, noise, alpha_bar (B, 1, 1, 1))`` for clean latents ``z`` at timesteps ``t``."""
    noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device)
    ab = model.alphas_cumprod.to(z.device)[t].view(-1, *([1] * (z.ndim - 1)))
    return ab.sqrt() * z + (1 - ab).sqrt() * noise, noise, ab


def noised_at_step(model: ScoreModel, latents: torch.Tensor, cfg: ScoreDistillationConfig, step: int,
                   max_steps: int, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t, x_t, noise, alpha_bar)``: timesteps from the config's range at this step, and the detached
    latents noised to them (the first draws of every rule's gradient, in this order)."""
    lo, hi = cfg.t_range(step, max_steps)
    t = sample_timesteps(model, latents.shape[0], lo, hi, generator, latents.device)
    x_t, noise, ab = noisy(model, latents.detach().float(), t, generator)
    return t, x_t, noise, ab


def weight(ab: torch.Tensor, cfg: ScoreDistillationConfig) -> torch.Tensor:
    if cfg.weighting == "1-alpha_bar":
        return 1 - ab
    if cfg.weighting == "sds_sqrt":
        return ab.sqrt() * (1 - ab)
    return torch.ones_like(ab)


def inject_gradient(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 * ||z - stopgrad(z - grad)||^2 / B``: its gradient w.r.t. ``latents`` is ``grad / B``."""
    target = (latents - grad.to(latents.dtype)).detach()
    return 0.5 * F.mse_loss(latents.float(), target.float(), reduction="sum") / latents.shape[0]


def as_bchw(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise InputError(f"guidance expects a batch of images (B, H, W, C) or (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[-1] in (3, 4) and images.shape[1] not in (3, 4):
        return images.permute(0, 3, 1, 2)
    if images.shape[1] in (3, 4):
        return images
    raise InputError(f"guidance expects 3 (RGB) or 4 (latent) channels, got shape {tuple(images.shape)}")


class Rule:
    """A distillation rule: ``gradient`` in latent space, then an optional ``update`` of its own state.

    Subclasses are registered by name in ``GUIDANCE_RULES`` and built as ``Rule(cfg, model)``.
    """

    def __init__(self, cfg: ScoreDistillationConfig, model: ScoreModel):
        self.cfg = cfg
        self.model = model

    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
               step_info: dict[str, Any]) -> dict[str, float]:
        """Train the rule's own state on the (detached) latents of this step; default: nothing."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise InputError(f"guidance rule '{self.cfg.mode}' has no state, but the checkpoint holds {sorted(state)}")


def step_args(step_info: dict[str, Any]) -> tuple[int, int, torch.Generator | None]:
    return int(step_info.get("step", 0)), int(step_info.get("max_steps", 1)), step_info.get("generator")


class ScoreDistillationGuidance:
    """A rule (``cfg.mode``) with a swappable :class:`ScoreModel` (``self.model``).

    ``state_dict()`` / ``load_state_dict()`` hold the rule's trainable state (VSD's LoRA and its
    optimiser); the object pipeline saves them in ``checkpoint.pt``.
    """

    cfg: ScoreDistillationConfig
    model: ScoreModel
    _rule: Rule | None = None
    _rule_mode: str | None = None
    last_stats: dict[str, float] = {}

    @property
    def rule(self) -> Rule:
        if self._rule is None or self._rule_mode != self.cfg.mode:
            self._rule = GUIDANCE_RULES.get(self.cfg.mode)(self.cfg, self.model)
            self._rule_mode = self.cfg.mode
        return self._rule

    def step(self, images: torch.Tensor, prompts: list[str], step_info: dict[str, Any]) -> torch.Tensor:
        x = as_bchw(images)
        if len(prompts) != x.shape[0]:
            raise InputError(f"guidance got {x.shape[0]} images but {len(prompts)} prompts")
        latents = self.model.encode(x)
        cond, uncond = self.model.conditioning(prompts, step_info)
        rule = self.rule
        grad = rule.gradient(latents, cond, uncond, step_info)
        self.last_stats = rule.update(latents.detach(), cond.detach(), uncond.detach(), step_info)
        return inject_gradient(latents, grad)

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.cfg.mode, "rule": self.rule.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode", self.cfg.mode) != self.cfg.mode:
            raise InputError(f"checkpoint's guidance mode is {state.get('mode')!r}, the config's {self.cfg.mode!r}")
        self.rule.load_state_dict(state.get("rule", {}))


__all__ = [
    "SJC_LATENT_ENERGY", "Guidance", "Rule", "ScoreDistillationConfig", "ScoreDistillationGuidance", "ScoreModel",
    "as_bchw", "both_noises", "cfg_noise", "finish_gradient", "inject_gradient", "latent_energy", "noisy", "sample_timesteps",
    "scaled_linear_alphas_cumprod", "step_args", "weight",
]
