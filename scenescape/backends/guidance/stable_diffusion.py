"""A diffusers Stable Diffusion as a score model (UNet eps-prediction, VAE, CLIP text encoder).

Besides noise prediction it offers what the rules and the image-to-object pipeline need:

* :meth:`StableDiffusionScoreModel.make_vsd_adapter` -- VSD's LoRA (``peft``) on the UNet's
  attention projections plus a camera embedding added to the UNet's timestep embedding; the
  pretrained prediction is the UNet with the adapter disabled;
* :meth:`StableDiffusionScoreModel.load_textual_inversion` -- a learned token embedding loaded with
  diffusers' own textual-inversion loader (``learned_embeds.safetensors``, ``{token: (n, D)}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from scenescape.backends.guidance.base import ScoreDistillationConfig, ScoreDistillationGuidance
from scenescape.errors import InputError

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class StableDiffusionScoreModel:
    """A diffusers Stable Diffusion as a :class:`ScoreModel` (UNet eps-prediction, VAE, CLIP text)."""

    latent_energy = 4.0
    """Sum over latent channels of their variance per pixel: 4 channels made unit-variance by the VAE's
    ``scaling_factor`` (0.18215 for SD 1.x/2.x). SJC's emptiness weight is stated for this scale
    (see :data:`scenescape.backends.guidance.base.SJC_LATENT_ENERGY`)."""

    def __init__(self, model_id: str, device: Any = "auto", dtype: str = "auto", resolution: int | None = None,
                 latent_input: bool = False, negative_prompt: str = ""):
        try:
            from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as e:  # pragma: no cover - extras not installed
            raise ImportError("StableDiffusionGuidance needs the model extras: pip install 'scenescape[models]'") from e
        from scenescape.backends.models import load_pretrained, pick_device, pick_dtype

        self.model_id = model_id
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
        self._setup(sched.alphas_cumprod, resolution, latent_input, negative_prompt)

    @classmethod
    def from_modules(cls, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, alphas_cumprod: torch.Tensor,
                     device: Any = "cpu", dtype: torch.dtype = torch.float32, resolution: int | None = None,
                     latent_input: bool = False, negative_prompt: str = "",
                     model_id: str = "<modules>") -> StableDiffusionScoreModel:
        """A score model from modules already built (benchmarks with real-size random weights, tests)."""
        self = cls.__new__(cls)
        self.model_id, self.device, self.dtype = model_id, torch.device(device), dtype
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self._setup(alphas_cumprod, resolution, latent_input, negative_prompt)
        return self

    def _setup(self, alphas_cumprod: torch.Tensor, resolution: int | None, latent_input: bool,
               negative_prompt: str) -> None:
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(self.device).eval().requires_grad_(False)
        self.alphas_cumprod = alphas_cumprod.float().to(self.device)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.scaling_factor = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        self.resolution = int(resolution or self.unet.config.sample_size * self.vae_scale)
        self.latent_input = latent_input
        self.negative_prompt = negative_prompt
        self._emb_cache: dict[str, torch.Tensor] = {}
        self._adapter_on = False
        self.learned_tokens: list[str] = []

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def embed(self, text: str) -> torch.Tensor:
        """``(1, L, D)`` CLIP text embedding of ``text`` (cached)."""
        if text not in self._emb_cache:
            self._emb_cache[text] = self.embed_with_grad(text)
        return self._emb_cache[text]

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        return tok.input_ids.to(self.device)

    def embed_with_grad(self, text: str | list[str]) -> torch.Tensor:
        """``(B, L, D)`` CLIP text embeddings, differentiable w.r.t. the token embedding table (uncached)."""
        texts = [text] if isinstance(text, str) else list(text)
        return self.text_encoder(self.tokenize(texts))[0]

    def load_textual_inversion(self, path: str | Path, token: str) -> None:
        """Load a learned embedding (diffusers' ``load_textual_inversion``) for ``token``."""
        from diffusers.loaders import TextualInversionLoaderMixin

        p = Path(path)
        if not p.is_file():
            raise InputError(f"learned embedding '{p}' does not exist")

        class _Loader(TextualInversionLoaderMixin):
            hf_device_map = None
            components: dict[str, Any] = {}

        if token in self.tokenizer.get_vocab():
            raise InputError(f"token {token!r} is already in the tokenizer; pick another placeholder token")
        _Loader().load_textual_inversion(str(p), token=token, tokenizer=self.tokenizer, text_encoder=self.text_encoder)
        self.text_encoder.requires_grad_(False)
        self.learned_tokens.append(token)
        self._emb_cache.clear()

    def null_conditioning(self, uncond: torch.Tensor) -> torch.Tensor:
        return self.embed("").expand_as(uncond)

    # ------------------------------------------------------------------ images
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
        """The pretrained UNet's prediction (any VSD adapter is disabled)."""
        with self._adapter(False):
            return self.unet(x_t.to(self.dtype), t.to(self.device), encoder_hidden_states=cond.to(self.dtype)).sample

    # ------------------------------------------------------------------ VSD
    @contextlib.contextmanager
    def _adapter(self, on: bool) -> Iterator[None]:
        if not hasattr(self, "_vsd"):
            yield
            return
        prev = self._adapter_on
        self._vsd.switch(on)
        self._adapter_on = on
        try:
            yield
        finally:
            self._vsd.switch(prev)
            self._adapter_on = prev

    def make_vsd_adapter(self, cfg: ScoreDistillationConfig) -> _SDLoRAAdapter:
        if hasattr(self, "_vsd"):
            return self._vsd
        self._vsd = _SDLoRAAdapter(self, cfg)
        return self._vsd


class _SDLoRAAdapter(nn.Module):
    """LoRA (peft) on the UNet attention + a camera embedding added to the timestep embedding."""

    def __init__(self, model: StableDiffusionScoreModel, cfg: ScoreDistillationConfig):
        super().__init__()
        try:
            from peft import LoraConfig
        except ImportError as e:  # pragma: no cover - extra not installed
            raise ImportError("VSD needs peft: pip install 'scenescape[models]' (or pip install peft)") from e
        from scenescape.backends.guidance.vsd import CAMERA_DIM

        self._model = [model]  # not a submodule: its weights are not the adapter's state
        unet = model.unet
        unet.add_adapter(LoraConfig(r=cfg.vsd_lora_rank, lora_alpha=cfg.vsd_lora_rank, init_lora_weights=True,
                                    target_modules=LORA_TARGETS), adapter_name="vsd")
        from peft.tuners.tuners_utils import BaseTunerLayer

        # Switched on and off by the layers' own flag: peft's enable/disable_adapters would also flip
        # requires_grad, which the LoRA's optimiser needs to stay on.
        self._layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
        self.switch(False)
        self.lora = {n: p for n, p in unet.named_parameters() if "lora_" in n}
        for p in self.lora.values():  # trained in float32 whatever the UNet's dtype
            p.data = p.data.float()
            p.requires_grad_(True)
        temb = unet.time_embedding.linear_2.out_features
        self.use_camera = cfg.vsd_camera_condition
        self.camera_mlp = nn.Sequential(nn.Linear(CAMERA_DIM, temb), nn.SiLU(), nn.Linear(temb, temb)).to(model.device)
        nn.init.zeros_(self.camera_mlp[-1].weight)
        nn.init.zeros_(self.camera_mlp[-1].bias)
        self._camera: torch.Tensor | None = None
        unet.time_embedding.register_forward_hook(self._add_camera)

    def switch(self, on: bool) -> None:
        for layer in self._layers:
            layer._disable_adapters = not on

    def _add_camera(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        if self._camera is None or not self._model[0]._adapter_on:
            return out
        return out + self.camera_mlp(self._camera.float()).to(out.dtype)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.lora.values()) + (list(self.camera_mlp.parameters()) if self.use_camera else [])

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        m = self._model[0]
        self._camera = camera.to(m.device) if self.use_camera else None
        try:
            with m._adapter(True):
                return m.unet(x_t.to(m.dtype), t.to(m.device), encoder_hidden_states=cond.to(m.dtype)).sample
        finally:
            self._camera = None

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        out = {f"lora.{n}": p.detach().clone() for n, p in self.lora.items()}
        out.update({f"camera.{n}": p.detach().clone() for n, p in self.camera_mlp.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:  # type: ignore[override]
        with torch.no_grad():
            for n, p in self.lora.items():
                p.copy_(state[f"lora.{n}"])
        self.camera_mlp.load_state_dict({k[len("camera."):]: v for k, v in state.items() if k.startswith("camera.")})


class StableDiffusionGuidance(ScoreDistillationGuidance):
    """Any rule with a diffusers Stable Diffusion (hub id or a local folder saved with ``save_pretrained``).

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

    def __init__(self, cfg: Config | None = None, model: StableDiffusionScoreModel | None = None, **_: Any):
        """``model``: an already built score model (else loaded from ``cfg.model``)."""
        self.cfg = cfg or self.Config()
        self.model = model or StableDiffusionScoreModel(self.cfg.model, self.cfg.device, self.cfg.dtype,
                                                        self.cfg.resolution, self.cfg.latent_input,
                                                        self.cfg.negative_prompt)


__all__ = ["LORA_TARGETS", "StableDiffusionGuidance", "StableDiffusionScoreModel"]
