"""Score-distillation guidance: SDS (DreamFusion) and SJC (Score Jacobian Chaining).

The guidance turns rendered images into a loss whose gradient w.r.t. the images is the
score-distillation gradient. One code path serves every score model:

* a *score model* (:class:`ScoreModel`) knows its noise schedule (``alphas_cumprod``), how to
  map images to its latent space (``encode``), how to condition on prompts/views
  (``conditioning``) and how to predict noise (``predict_noise``);
* :func:`sds_gradient` / :func:`sjc_gradient` compute the gradient in latent space with
  classifier-free guidance, and :func:`inject_gradient` turns it into a loss;
* :class:`StableDiffusionGuidance` plugs in a diffusers Stable Diffusion (UNet + VAE + CLIP text
  encoder, by hub id or local folder); :class:`AnalyticGuidance` plugs in an analytic score model
  whose optimum is known (it denoises towards the rendering of a known object), used by tests and
  benchmarks to check that the SDS/SJC code converges to the right answer.

Conventions (stated once, used by both modes):

* classifier-free guidance ``eps = eps_u + s (eps_c - eps_u)`` (``s = guidance_scale``, default 100;
  ``s = 1`` is the plain conditional prediction). ``eps_u`` is the prediction for the negative
  prompt (empty by default).
* SDS: ``t ~ U[t_min, t_max] * T`` (``T`` = training timesteps, default range [0.02, 0.98],
  linearly annealed to ``[t_min_end, t_max_end]`` over the run when those are set),
  ``x_t = sqrt(ab) z + sqrt(1 - ab) eps``, ``grad = w(t) (eps_hat - eps)`` with
  ``w(t) = 1 - alpha_bar_t``; ``nan_to_num``; optional element-wise clip to ``[-grad_clip, grad_clip]``.
* SJC: ``sigma`` from the model's ladder ``sqrt((1 - ab) / ab)`` restricted to
  ``[sjc_sigma_min, sjc_sigma_max]`` (about 0.1..12); ``z = y + sigma n``; the denoiser is
  ``D = z - sigma eps_hat(z / sqrt(1 + sigma^2), t(sigma))``; the perturb-and-average score
  ``(D - y) / sigma`` (variance-reduced form; ``(D - z) / sigma`` otherwise) is averaged over
  ``sjc_samples`` noise draws; the loss gradient is its negative.
* The loss is ``0.5 * ||z - stopgrad(z - grad)||^2`` summed over latent elements and averaged over the
  batch, so ``d loss / d z = grad / B``.

``Guidance.step`` takes images ``(B, H, W, 3)`` or ``(B, 3, H, W)`` in ``[0, 1]`` (requiring grad),
one prompt per image, and ``step_info`` (``step``, ``max_steps``, ``generator``; the analytic model
also reads ``cameras`` and ``background``) and returns the scalar loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.errors import InputError


@runtime_checkable
class Guidance(Protocol):
    def step(self, images: torch.Tensor, prompts: list[str], step_info: dict[str, Any]) -> torch.Tensor:
        """Scalar loss whose gradient w.r.t. ``images`` is the score-distillation gradient."""
        ...


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
    """Options shared by every score model."""

    mode: Literal["sds", "sjc"] = "sds"
    guidance_scale: float = 100.0
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

    def __post_init__(self) -> None:
        for name in ("t_min", "t_max", "t_min_end", "t_max_end"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise InputError(f"guidance {name} must be in [0, 1] (a fraction of the schedule), got {v}")
        if self.t_min > self.t_max:
            raise InputError(f"guidance t_min ({self.t_min}) must be <= t_max ({self.t_max})")
        if self.guidance_scale < 0:
            raise InputError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise InputError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if not 0 < self.sjc_sigma_min < self.sjc_sigma_max:
            raise InputError(f"need 0 < sjc_sigma_min < sjc_sigma_max, got {self.sjc_sigma_min}, {self.sjc_sigma_max}")
        if self.sjc_samples < 1:
            raise InputError(f"sjc_samples must be >= 1, got {self.sjc_samples}")

    def t_range(self, step: int, max_steps: int) -> tuple[float, float]:
        """The (annealed) fraction range of the schedule at ``step``."""
        p = min(max(step / max(max_steps, 1), 0.0), 1.0)
        lo = self.t_min if self.t_min_end is None else self.t_min + p * (self.t_min_end - self.t_min)
        hi = self.t_max if self.t_max_end is None else self.t_max + p * (self.t_max_end - self.t_max)
        return min(lo, hi), max(lo, hi)


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
                                 ) -> torch.Tensor:
    """Stable Diffusion's "scaled_linear" schedule: ``(steps,)`` cumulative products of ``1 - beta``."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def _cfg_noise(model: ScoreModel, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
               scale: float) -> torch.Tensor:
    """Classifier-free guided noise ``eps_u + scale (eps_c - eps_u)`` (one batched model call)."""
    if scale == 1.0:
        return model.predict_noise(x_t, t, cond).float()
    eps = model.predict_noise(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([uncond, cond])).float()
    eps_u, eps_c = eps.chunk(2)
    return eps_u + scale * (eps_c - eps_u)


def _finish(grad: torch.Tensor, cfg: ScoreDistillationConfig) -> torch.Tensor:
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if cfg.grad_clip is not None:
        grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
    return grad


@torch.no_grad()
def sds_gradient(model: ScoreModel, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 cfg: ScoreDistillationConfig, step: int = 0, max_steps: int = 1,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SDS gradient ``w(t) (eps_hat(x_t) - eps)`` w.r.t. ``latents (B, c, h, w)`` (see module doc)."""
    ab_all = model.alphas_cumprod.to(latents.device)
    n_t = ab_all.shape[0]
    b = latents.shape[0]
    lo, hi = cfg.t_range(step, max_steps)
    t_lo = min(int(lo * n_t), n_t - 1)
    t_hi = max(t_lo, min(int(hi * n_t), n_t - 1))
    t = torch.randint(t_lo, t_hi + 1, (b,), generator=generator).to(latents.device)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    ab = ab_all[t].view(b, 1, 1, 1)
    z = latents.detach().float()
    x_t = ab.sqrt() * z + (1 - ab).sqrt() * noise
    eps_hat = _cfg_noise(model, x_t, t, cond, uncond, cfg.guidance_scale)
    if cfg.weighting == "1-alpha_bar":
        w = 1 - ab
    elif cfg.weighting == "sds_sqrt":
        w = ab.sqrt() * (1 - ab)
    else:
        w = torch.ones_like(ab)
    return _finish(w * (eps_hat - noise), cfg)


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
    total = torch.zeros_like(y)
    for _ in range(cfg.sjc_samples):
        pick = torch.randint(0, allowed.numel(), (b,), generator=generator)
        t = allowed[pick].to(y.device)
        sigma = sig_all.to(y.device)[t].view(b, 1, 1, 1)
        n = torch.randn(y.shape, generator=generator, dtype=torch.float32).to(y.device)
        z = y + sigma * n
        x_t = z / torch.sqrt(1 + sigma * sigma)
        eps_hat = _cfg_noise(model, x_t, t, cond, uncond, cfg.guidance_scale)
        d = z - sigma * eps_hat
        score = (d - y) / sigma if cfg.sjc_variance_reduced else (d - z) / sigma
        total += score
    return _finish(-total / cfg.sjc_samples, cfg)


def inject_gradient(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``0.5 * ||z - stopgrad(z - grad)||^2 / B``: its gradient w.r.t. ``latents`` is ``grad / B``."""
    target = (latents - grad.to(latents.dtype)).detach()
    return 0.5 * F.mse_loss(latents.float(), target.float(), reduction="sum") / latents.shape[0]


def _as_bchw(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise InputError(f"guidance expects a batch of images (B, H, W, C) or (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[-1] in (3, 4) and images.shape[1] not in (3, 4):
        return images.permute(0, 3, 1, 2)
    if images.shape[1] in (3, 4):
        return images
    raise InputError(f"guidance expects 3 (RGB) or 4 (latent) channels, got shape {tuple(images.shape)}")


class ScoreDistillationGuidance:
    """SDS or SJC with a swappable :class:`ScoreModel` (``self.model``)."""

    cfg: ScoreDistillationConfig
    model: ScoreModel

    def step(self, images: torch.Tensor, prompts: list[str], step_info: dict[str, Any]) -> torch.Tensor:
        x = _as_bchw(images)
        if len(prompts) != x.shape[0]:
            raise InputError(f"guidance got {x.shape[0]} images but {len(prompts)} prompts")
        latents = self.model.encode(x)
        cond, uncond = self.model.conditioning(prompts, step_info)
        fn = sds_gradient if self.cfg.mode == "sds" else sjc_gradient
        grad = fn(self.model, latents, cond, uncond, self.cfg, step=int(step_info.get("step", 0)),
                  max_steps=int(step_info.get("max_steps", 1)), generator=step_info.get("generator"))
        return inject_gradient(latents, grad)


# ---------------------------------------------------------------------------------------------- analytic


class AnalyticScoreModel:
    """Ideal denoiser of a point mass at a known target image (per camera).

    ``encode`` maps ``[0, 1]`` images to ``[-1, 1]`` (pixel space is the latent space); the condition
    is the target in that space, so for noisy ``x_t`` the prediction is
    ``(x_t - sqrt(ab) target) / sqrt(1 - ab)`` -- exactly the noise when ``z == target``. The
    prediction does not depend on the text, so ``eps_u == eps_c`` and CFG leaves it unchanged.
    """

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
            tgt = _as_bchw(torch.as_tensor(self.target(step_info)).float())
        tgt = self.encode(tgt)
        return tgt, tgt

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1)
        return (x_t - ab.sqrt() * cond.to(x_t)) / (1 - ab).sqrt()


class AnalyticGuidance(ScoreDistillationGuidance):
    """SDS/SJC with :class:`AnalyticScoreModel`: the optimum of the distillation is the known target.

    Built with ``target``, a callable ``step_info -> (B, H, W, 3)`` images in [0, 1] (the object
    pipeline passes a renderer of a known synthetic object for the cameras in ``step_info``).
    """

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


# ---------------------------------------------------------------------------------------------- diffusers


class StableDiffusionScoreModel:
    """A diffusers Stable Diffusion as a :class:`ScoreModel` (UNet eps-prediction, VAE, CLIP text)."""

    def __init__(self, model_id: str, device: Any = "auto", dtype: str = "auto", resolution: int | None = None,
                 latent_input: bool = False, negative_prompt: str = ""):
        try:
            from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as e:  # pragma: no cover - extras not installed
            raise ImportError("StableDiffusionGuidance needs the model extras: pip install 'scenescape[models]'") from e
        from scenescape.backends.models import load_pretrained, pick_device, pick_dtype

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        kw = {"torch_dtype": self.dtype}
        self.unet = load_pretrained(UNet2DConditionModel.from_pretrained, model_id, "diffusers", subfolder="unet", **kw)
        self.vae = load_pretrained(AutoencoderKL.from_pretrained, model_id, "diffusers", subfolder="vae", **kw)
        self.text_encoder = load_pretrained(CLIPTextModel.from_pretrained, model_id, "diffusers",
                                            subfolder="text_encoder", **kw)
        self.tokenizer = load_pretrained(CLIPTokenizer.from_pretrained, model_id, "diffusers", subfolder="tokenizer",
                                         use_safetensors=None)
        sched = load_pretrained(DDPMScheduler.from_pretrained, model_id, "diffusers", subfolder="scheduler",
                                use_safetensors=None)
        pred = getattr(sched.config, "prediction_type", "epsilon")
        if pred != "epsilon":
            raise InputError(f"model '{model_id}' predicts '{pred}'; score distillation here needs an "
                             "epsilon-prediction model (e.g. stable-diffusion-2-1-base, not the v-prediction 768 model)")
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(self.device).eval().requires_grad_(False)
        self.alphas_cumprod = sched.alphas_cumprod.float().to(self.device)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.resolution = int(resolution or self.unet.config.sample_size * self.vae_scale)
        self.latent_input = latent_input
        self.negative_prompt = negative_prompt
        self._emb_cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def embed(self, text: str) -> torch.Tensor:
        """``(1, L, D)`` CLIP text embedding of ``text`` (cached)."""
        if text not in self._emb_cache:
            tok = self.tokenizer([text], padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")
            self._emb_cache[text] = self.text_encoder(tok.input_ids.to(self.device))[0]
        return self._emb_cache[text]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        lat = self.resolution // self.vae_scale
        if images.shape[1] == 4 or self.latent_input:
            if images.shape[1] != 4:
                raise InputError("latent_input=True needs 4-channel renders (B, 4, H, W)")
            return F.interpolate(images.float(), (lat, lat), mode="bilinear", align_corners=False)
        x = F.interpolate(images.float(), (self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x * 2 - 1).to(self.device, self.dtype)
        dist = self.vae.encode(x).latent_dist
        return dist.mean.float() * self.scaling_factor

    def conditioning(self, prompts: list[str], step_info: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        cond = torch.cat([self.embed(p) for p in prompts])
        uncond = self.embed(self.negative_prompt).expand_as(cond)
        return cond, uncond

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t.to(self.dtype), t.to(self.device), encoder_hidden_states=cond.to(self.dtype)).sample


class StableDiffusionGuidance(ScoreDistillationGuidance):
    """SDS/SJC with a diffusers Stable Diffusion (hub id or a local folder saved with ``save_pretrained``).

    Renders are resized to the model resolution (``resolution``, default UNet sample size x 8) and
    encoded with the VAE (latent mean x scaling factor; gradients flow through the encoder), or, with
    4-channel renders, used directly as latents at the latent resolution.
    """

    @dataclasses.dataclass
    class Config(ScoreDistillationConfig):
        model: str = "stabilityai/stable-diffusion-2-1-base"
        negative_prompt: str = ""
        resolution: int | None = None
        latent_input: bool = False
        device: str = "auto"
        dtype: str = "auto"

    def __init__(self, cfg: Config | None = None, **_: Any):
        self.cfg = cfg or self.Config()
        self.model = StableDiffusionScoreModel(self.cfg.model, self.cfg.device, self.cfg.dtype, self.cfg.resolution,
                                               self.cfg.latent_input, self.cfg.negative_prompt)


__all__ = [
    "AnalyticGuidance", "AnalyticScoreModel", "Guidance", "ScoreDistillationConfig", "ScoreDistillationGuidance",
    "ScoreModel", "StableDiffusionGuidance", "StableDiffusionScoreModel", "inject_gradient",
    "scaled_linear_alphas_cumprod", "sds_gradient", "sjc_gradient", "sjc_sigma_ladder",
]
