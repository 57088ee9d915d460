"""Text-to-image for the first frame on diffusers (registered as text_to_image ``"diffusers"``).

Any diffusers text-to-image checkpoint (SD-1.5, SD-2.1, SDXL ...) by hub id or local folder.
Alternatively configure no text-to-image backend and let the inpainter fill an empty canvas
(SceneScape's way; :meth:`DiffusersInpainter.generate`).

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
    Scheduler,
    load_pipeline,
    set_scheduler,
)
from scenescape.backends.models import backend_config
from scenescape.errors import InputError


class DiffusersTextToImage:
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
        from diffusers import AutoPipelineForText2Image

        self.pipe, self.device, self.dtype = load_pipeline(
            AutoPipelineForText2Image.from_pretrained, cfg.model, cfg.device, cfg.dtype,
            attention_slicing=cfg.attention_slicing, vae_tiling=cfg.vae_tiling, cpu_offload=cfg.cpu_offload,
        )
        set_scheduler(self.pipe, cfg.scheduler)

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
