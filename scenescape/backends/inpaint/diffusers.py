"""Stable Diffusion inpainting on diffusers (registered as inpainter ``"diffusers"``).

Any diffusers inpainting checkpoint works (SD-2 inpainting, SD-1.5 inpainting, SDXL inpainting),
named by hub id or local folder (see :mod:`scenescape.backends.models`). Options (the nested
:class:`DiffusersInpainter.Config`) cover the scheduler, steps, guidance, negative prompt,
SceneScape's outpainting border, precision, memory switches for small GPUs, and SceneScape's
VAE-decoder finetuning.

Seed contract (for the pipeline): every call is deterministic given its seed. The caller passes
``seed=`` to :meth:`DiffusersInpainter.inpaint` / :meth:`~DiffusersInpainter.generate` -- the scene
pipeline uses ``scenescape.backends.seed_for_frame(run_seed, frame, stream)`` -- or calls
:meth:`~DiffusersInpainter.set_seed` before :meth:`~DiffusersInpainter.inpaint`. With neither, the
n-th call of this object uses ``seed_for_frame(config.seed, n)``, so a fresh object reproduces the
same sequence. Noise is drawn by a CPU generator, so a seed gives the same noise on every device.

Weights load on the first call (:attr:`DiffusersInpainter.pipe`), not at construction, which only checks
that the model is present (a missing or incomplete one is a :class:`~scenescape.errors.ModelNotFoundError`
there); :meth:`~DiffusersInpainter.release` drops them again. A scene run so holds the inpainter from
frame 1 on, and the text-to-image model only for frame 0.

Known pixels come back exactly: the returned image equals the input wherever ``mask`` is False
(the decoded diffusion output is composited into the masked pixels only).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any, Literal

import numpy as np

from scenescape.backends.base import seed_for_frame
from scenescape.backends.finetune import FinetuneHistory, WeightSnapshot, finetune_decoder
from scenescape.backends.models import backend_config, load_pretrained, pick_device, pick_dtype, resolve_model
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera

log = logging.getLogger(__name__)

Scheduler = Literal["ddim", "dpm++", "euler"]
DType = Literal["auto", "fp16", "bf16", "fp32"]

# SceneScape's negative prompt is long; this shorter one covers the same failure modes.
DEFAULT_NEGATIVE = (
    "text, watermark, logo, signature, frame, border, collage, split screen, blurry, lowres, "
    "jpeg artifacts, deformed, distorted, out of focus"
)


def set_scheduler(pipe: Any, name: str) -> None:
    """Replace ``pipe.scheduler`` with ``name`` (ddim, dpm++, euler) built from its config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if name == "ddim":
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    elif name == "dpm++":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(
            pipe.scheduler.config, algorithm_type="dpmsolver++", solver_order=2
        )
    elif name == "euler":
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    else:
        raise InputError(f"scheduler must be one of ddim, dpm++, euler; got {name!r}")


def _dtype_kwarg() -> str:
    """diffusers renamed ``torch_dtype`` to ``dtype``; use whichever this version takes."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"


def placement(device_name: str, dtype_name: str, cpu_offload: bool) -> tuple[Any, Any]:
    """``(device, dtype)`` a pipeline will be loaded with; bad combinations are errors now, before any load."""
    device = pick_device(device_name)
    dtype = pick_dtype(dtype_name, device)
    if cpu_offload and device.type != "cuda":
        raise InputError("cpu_offload needs a CUDA device (it moves submodels between CPU and GPU); "
                         f"the device here is {device}; set cpu_offload: false")
    return device, dtype


def load_pipeline(loader: Any, model: str, device_name: str, dtype_name: str, *, attention_slicing: bool,
                  vae_tiling: bool, cpu_offload: bool) -> tuple[Any, Any, Any]:
    """Load a pipeline in its dtype, place it and apply the memory switches.

    Returns ``(pipe, device, dtype)``. ``loader`` is a pipeline class's ``from_pretrained``.
    """
    device, dtype = placement(device_name, dtype_name, cpu_offload)
    pipe = load_pretrained(loader, model, "diffusers", **{_dtype_kwarg(): dtype})
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if attention_slicing:
        pipe.enable_attention_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe, device, dtype


def free_memory(device: Any) -> None:
    """Return what released weights held: a garbage-collector pass, and the CUDA cache on a GPU."""
    import gc

    gc.collect()
    if getattr(device, "type", None) == "cuda":
        import torch

        torch.cuda.empty_cache()


def to_float_image(image: Any, name: str = "image") -> np.ndarray:
    a = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    a = a.astype(np.float32, copy=False)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must be a (H, W, 3) RGB array in [0, 1], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return a


class LazyPipeline:
    """A backend whose diffusers pipeline loads on first use: :attr:`pipe` calls ``_load()`` (which sets
    ``_pipe``) when nothing is in memory; :attr:`loaded` says whether it is."""

    _pipe: Any = None

    def _load(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _load_with(self, loader: Any) -> Any:
        """``loader`` (an ``AutoPipeline*.from_pretrained``) on ``config.model`` with the config's placement,
        memory options and scheduler; sets ``device``/``dtype`` and returns the pipeline."""
        cfg = self.config  # type: ignore[attr-defined]
        pipe, self.device, self.dtype = load_pipeline(
            loader, cfg.model, cfg.device, cfg.dtype,
            attention_slicing=cfg.attention_slicing, vae_tiling=cfg.vae_tiling, cpu_offload=cfg.cpu_offload,
        )
        set_scheduler(pipe, cfg.scheduler)
        return pipe

    @property
    def loaded(self) -> bool:
        """Whether the diffusers pipeline is in memory."""
        return self._pipe is not None

    @property
    def pipe(self) -> Any:
        """The diffusers pipeline, loaded on first access."""
        if self._pipe is None:
            self._load()
        return self._pipe


class DiffusersInpainter(LazyPipeline):
    """Inpainting with a diffusers Stable Diffusion inpainting pipeline.

    ``inpaint(image, mask, camera, prompt, seed=None)``: ``image`` ``(H, W, 3)`` float in [0, 1],
    ``mask`` ``(H, W)`` bool (True = fill). ``H`` and ``W`` need not be multiples of 8: the canvas
    (image plus ``outpaint_border`` on each side) is rounded up to a multiple of 8 and the extra
    pixels are masked. Returns float32 ``(H, W, 3)``.

    ``generate(prompt, width, height, seed)`` inpaints an empty canvas (SceneScape's first frame),
    so this class also serves as a text-to-image backend.
    """

    MODEL_KIND = "diffusers"  # what ``scenescape models`` checks for

    @dataclasses.dataclass
    class Config:
        model: str = "stabilityai/stable-diffusion-2-inpainting"
        """Hub id or local folder of a diffusers inpainting pipeline."""
        scheduler: Scheduler = "ddim"
        steps: int = 30
        guidance: float = 7.5
        negative_prompt: str = DEFAULT_NEGATIVE
        outpaint_border: int = 0
        """Pixels of extra canvas on each side, always masked and cropped away (SceneScape: 44, 512 -> 600)."""
        dtype: DType = "auto"
        device: str = "auto"
        attention_slicing: bool = False
        vae_tiling: bool = False
        cpu_offload: bool = False
        seed: int = 0
        """Seed used only when the caller passes none (see the module docstring)."""
        decoder_finetune_steps: int = 0
        """SceneScape's VAE-decoder finetuning: Adam steps per frame (SceneScape: 100; 0 = off)."""
        decoder_finetune_lr: float = 1e-4
        decoder_preservation_weight: float = 100.0
        """Weight of the MSE to the known frame outside the mask."""
        decoder_reset_per_frame: bool = True
        """Restore the original decoder before each frame (SceneScape does)."""

    def __init__(self, config: Config | None = None, device: Any = None, **kwargs: Any):
        cfg = backend_config(type(self), config, device, kwargs)
        if cfg.steps < 1:
            raise InputError(f"inpainter steps must be >= 1, got {cfg.steps}")
        if cfg.guidance < 0:
            raise InputError(f"inpainter guidance must be >= 0, got {cfg.guidance}")
        if cfg.outpaint_border < 0:
            raise InputError(f"outpaint_border must be >= 0 pixels, got {cfg.outpaint_border}")
        if cfg.decoder_finetune_steps < 0 or cfg.decoder_finetune_lr <= 0 or cfg.decoder_preservation_weight < 0:
            raise InputError("decoder finetuning needs decoder_finetune_steps >= 0, decoder_finetune_lr > 0 "
                             "and decoder_preservation_weight >= 0")
        self.config = cfg
        # The weights load on first use (:attr:`pipe`), so a scene run holds them only from the frame
        # that needs them; a missing or incomplete model is still an error here, before anything runs.
        resolve_model(cfg.model, "diffusers")
        self.device, self.dtype = placement(cfg.device, cfg.dtype, cfg.cpu_offload)
        self._pipe: Any = None
        self._vae32: Any = None
        self._decoder_snapshot: WeightSnapshot | None = None
        self._next_seed: int | None = None
        self._calls = 0
        self.last_finetune: FinetuneHistory | None = None

    # -- weights -------------------------------------------------------------------------------
    def _load(self) -> None:
        cfg = self.config
        from diffusers import AutoPipelineForInpainting

        pipe = self._load_with(AutoPipelineForInpainting.from_pretrained)
        if cfg.decoder_finetune_steps > 0:
            import torch

            # Finetune a float32 copy of the VAE (Adam in fp16 is unstable); the pipeline's own VAE
            # keeps encoding in the pipeline's dtype.
            self._vae32 = copy.deepcopy(pipe.vae)
            try:  # with cpu_offload the copy would inherit accelerate's offload hooks: drop them
                from accelerate.hooks import remove_hook_from_module

                remove_hook_from_module(self._vae32, recurse=True)
            except ImportError:
                pass
            self._vae32.to(device=self.device, dtype=torch.float32)
            self._vae32.requires_grad_(False)
            self._decoder_snapshot = WeightSnapshot(self._vae32.decoder)
        self._pipe = pipe

    def release(self) -> None:
        """Drop the weights (and any finetuned decoder); the next call loads them again."""
        self._pipe = self._vae32 = self._decoder_snapshot = None
        free_memory(self.device)

    # -- seeds ---------------------------------------------------------------------------------
    def set_seed(self, seed: int) -> None:
        """Seed for the next :meth:`inpaint` call that is given no explicit seed."""
        self._next_seed = int(seed)

    def _take_seed(self, seed: int | None) -> int:
        if seed is None:
            seed = self._next_seed if self._next_seed is not None else seed_for_frame(self.config.seed, self._calls)
        self._next_seed = None
        self._calls += 1
        return int(seed)

    # -- public API ----------------------------------------------------------------------------
    def inpaint(self, image: Any, mask: Any, camera: Camera | None = None, prompt: str = "",
                seed: int | None = None, negative_prompt: str | None = None) -> np.ndarray:
        """Fill ``mask`` (True) pixels of ``image``; unmasked pixels are returned unchanged.

        ``seed``: noise seed of this call (see the module docstring). ``negative_prompt``: replaces
        the configured one for this call.
        """
        img = to_float_image(image)
        m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
        if m.shape != img.shape[:2]:
            raise InputError(f"mask must be (H, W) = {img.shape[:2]} like the image, got shape {m.shape}")
        m = m.astype(bool)
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
        s = self._take_seed(seed)
        if not m.any():
            return img.copy()
        neg = self.config.negative_prompt if negative_prompt is None else negative_prompt
        return self._run(np.clip(img, 0.0, 1.0), m, prompt, s, neg)

    def generate(self, prompt: str, width: int, height: int, seed: int,
                 negative_prompt: str | None = None) -> np.ndarray:
        """A ``(height, width, 3)`` image from an empty, fully masked canvas."""
        if width < 8 or height < 8:
            raise InputError(f"width and height must be >= 8 pixels, got {width}x{height}")
        blank = np.full((height, width, 3), 0.5, np.float32)
        return self.inpaint(blank, np.ones((height, width), bool), None, prompt, seed=seed,
                            negative_prompt=negative_prompt)

    # -- internals -----------------------------------------------------------------------------
    def _canvas(self, img: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        h, w = m.shape
        b = self.config.outpaint_border
        ch = -(-(h + 2 * b) // 8) * 8
        cw = -(-(w + 2 * b) // 8) * 8
        top, left = (ch - h) // 2, (cw - w) // 2
        canvas = np.pad(img, ((top, ch - h - top), (left, cw - w - left), (0, 0)), mode="edge")
        cmask = np.ones((ch, cw), bool)
        cmask[top:top + h, left:left + w] = m
        return canvas, cmask, (top, left)

    def _run(self, img: np.ndarray, m: np.ndarray, prompt: str, seed: int, negative_prompt: str) -> np.ndarray:
        import torch

        cfg = self.config
        pipe = self.pipe  # loads the weights on the first call (and the float32 VAE with finetuning)
        canvas, cmask, (top, left) = self._canvas(img, m)
        ch, cw = cmask.shape
        generator = torch.Generator(device="cpu").manual_seed(seed)
        kwargs = dict(
            prompt=prompt,
            image=canvas[None],
            mask_image=cmask[None, :, :, None].astype(np.float32),
            height=ch,
            width=cw,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance,
            negative_prompt=negative_prompt or None,
            generator=generator,
            strength=1.0,
        )
        with torch.no_grad():
            if self._vae32 is None:
                out = pipe(**kwargs, output_type="np").images[0]
            else:
                latents = pipe(**kwargs, output_type="latent").images
        if self._vae32 is not None:
            out = self._decode_with_finetune(latents, canvas, cmask)
        out = np.asarray(out, np.float32)[top:top + m.shape[0], left:left + m.shape[1]]
        if not np.isfinite(out).all():
            raise InputError(
                f"the inpainting model '{cfg.model}' produced NaN/inf pixels (dtype {self.dtype}); "
                "try dtype: fp32 or bf16"
            )
        return np.where(m[..., None], np.clip(out, 0.0, 1.0), img).astype(np.float32)

    def _decode_with_finetune(self, latents: Any, canvas: np.ndarray, cmask: np.ndarray) -> np.ndarray:
        import torch

        cfg = self.config
        vae = self._vae32
        if cfg.decoder_reset_per_frame:
            self._decoder_snapshot.restore()
        z = latents.detach().to(self.device, torch.float32) / vae.config.scaling_factor
        shift = getattr(vae.config, "shift_factor", None)
        if shift:
            z = z + shift

        def decode() -> torch.Tensor:
            return vae.decode(z, return_dict=False)[0]  # (1, 3, H, W) in [-1, 1]

        with torch.no_grad():
            diffusion_output = decode()
        known = torch.from_numpy(canvas).permute(2, 0, 1)[None].to(self.device) * 2.0 - 1.0
        mask = torch.from_numpy(cmask).to(self.device)
        vae.train()
        try:
            self.last_finetune = finetune_decoder(
                decode, vae.decoder.parameters(), diffusion_output, known, mask,
                steps=cfg.decoder_finetune_steps, lr=cfg.decoder_finetune_lr,
                preservation_weight=cfg.decoder_preservation_weight,
            )
        finally:
            vae.eval()
        out = self.last_finetune.final
        log.debug("decoder finetune: preservation MSE %.3g -> %.3g",
                  self.last_finetune.error_before, self.last_finetune.error_after)
        return ((out[0].permute(1, 2, 0).float().cpu().numpy() + 1.0) / 2.0).clip(0.0, 1.0)
