"""Text-to-image for the first frame on diffusers (registered as text_to_image ``"diffusers"``).

Any diffusers text-to-image checkpoint (SD-1.5, SD-2.1, SDXL ...) by hub id or local folder.
Alternatively configure no text-to-image backend and let the inpainter fill an empty canvas
(SceneScape's way; :meth:`DiffusersInpainter.generate`).

The weights load on the first :meth:`~DiffusersTextToImage.generate` and :meth:`~DiffusersTextToImage.release`
drops them: a scene run needs this model for frame 0 only, so it holds it only then (and never when it
resumes past frame 0).

``generate(prompt, width, height, seed)`` is deterministic for a seed (CPU generator, so the same
noise on every device). ``width`` and ``height`` must be multiples of 8.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scenescape.backends.inpaint.diffusers import (
    DEFAULT_NEGATIVE,
    DType,
    LazyPipeline,
    Scheduler,
    free_memory,
    placement,
)
from scenescape.backends.models import backend_config, resolve_model
from scenescape.errors import InputError


class DiffusersTextToImage(LazyPipeline):
    """A diffusers text-to-image pipeline; returns float32 ``(height, width, 3)`` images in [0, 1]."""

    MODEL_KIND = "diffusers"  # what ``scenescape models`` checks for

    @dataclasses.dataclass
    class Config:
        model: str = "stabilityai/stable-diffusion-2-1-base"
        """Hub id or local folder of a diffusers text-to-image pipeline."""
        scheduler: Scheduler = "ddim"
        steps: int = 30
        guidance: float = 7.5
        negative_prompt: str = DEFAULT_NEGATIVE
        dtype: DType = "auto"
        device: str = "auto"
        attention_slicing: bool = False
        vae_tiling: bool = False
        cpu_offload: bool = False

    def __init__(self, config: Config | None = None, device: Any = None, **kwargs: Any):
        cfg = backend_config(type(self), config, device, kwargs)
        if cfg.steps < 1:
            raise InputError(f"text_to_image steps must be >= 1, got {cfg.steps}")
        if cfg.guidance < 0:
            raise InputError(f"text_to_image guidance must be >= 0, got {cfg.guidance}")
        self.config = cfg
        # Weights load on first use (:attr:`pipe`); the scene pipeline calls :meth:`release` after frame 0.
        # A missing or incomplete model is an error here, before anything runs.
        resolve_model(cfg.model, "diffusers")
        self.device, self.dtype = placement(cfg.device, cfg.dtype, cfg.cpu_offload)
        self._pipe: Any = None

    def _load(self) -> None:
        from diffusers import AutoPipelineForText2Image

        self._pipe = self._load_with(AutoPipelineForText2Image.from_pretrained)

    def release(self) -> None:
        """Drop the weights (text encoder, UNet, VAE); a later :meth:`generate` loads them again."""
        self._pipe = None
        free_memory(self.device)

    def generate(self, prompt: str, width: int, height: int, seed: int,
                 negative_prompt: str | None = None) -> np.ndarray:
        """A ``(height, width, 3)`` float32 image in [0, 1] for ``prompt``; same seed, same image."""
        import torch

        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
        if width < 8 or height < 8 or width % 8 or height % 8:
            raise InputError(f"width and height must be multiples of 8 (>= 8) for diffusion, got {width}x{height}")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            out = self.pipe(
                prompt=prompt, height=int(height), width=int(width), num_inference_steps=self.config.steps,
                guidance_scale=self.config.guidance,
                negative_prompt=(self.config.negative_prompt if negative_prompt is None else negative_prompt) or None,
                generator=generator, output_type="np",
            ).images[0]
        out = np.asarray(out, np.float32)
        if not np.isfinite(out).all():
            raise InputError(f"the text-to-image model '{self.config.model}' produced NaN/inf pixels "
                             f"(dtype {self.dtype}); try dtype: fp32 or bf16")
        return out.clip(0.0, 1.0)
