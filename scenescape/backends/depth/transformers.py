"""Monocular depth on transformers (registered as depth ``"transformers"``).

Any ``AutoModelForDepthEstimation`` checkpoint by hub id or local folder, with its
``AutoImageProcessor``: Depth Anything V2 (default ``depth-anything/Depth-Anything-V2-Small-hf``,
Apache-2.0; the Base/Large checkpoints are CC-BY-NC-4.0), DPT-Large (``Intel/dpt-large``, SceneScape's
MiDaS model), metric models (Depth Anything V2 Metric, ZoeDepth, GLPN, Depth Pro).

What the model outputs (``output`` option):

* ``"disparity"``: relative inverse depth, unknown scale and shift (MiDaS/DPT, Depth Anything
  relative). Converted to z-depth as ``1 / (scale * d + shift)``.
* ``"depth"``: metric z-depth (Depth Anything ``depth_estimation_type: metric``, ZoeDepth, GLPN,
  Depth Pro). Aligned as ``scale * d + shift``.
* ``"auto"`` (default) decides from the model config: ``depth_anything`` -> its
  ``depth_estimation_type``; ``dpt`` -> disparity; ``zoedepth``/``glpn``/``depth_pro`` -> depth; any
  other model whose id contains "metric" -> depth; otherwise a ConfigError asks you to set it.

Per call (``estimate(image, camera, known_depth=None, known_mask=None)``):

1. Optional test-time finetuning (SceneScape): ``finetune_steps`` Adam steps at ``finetune_lr`` on
   the L1 between the predicted z-depth (the raw output mapped by a differentiable least-squares
   scale and shift) and ``known_depth`` on ``known_mask``. ``finetune_reset_per_frame`` restores
   the original weights before each frame (SceneScape reloads the model every frame); otherwise the
   finetuned weights carry over to the next frame.
2. Predict, resize to ``(H, W)``.
3. With at least 16 known pixels and ``align`` on: :func:`scenescape.geometry.depth_align.align_depth`
   (robust scale and shift, in disparity or depth space) then, with ``seam`` on,
   :func:`~scenescape.geometry.depth_align.blend_to_known` (known pixels keep the known depth, new
   pixels meet it at the seam). Without known depth (the first frame) disparity is normalised so
   the median depth is ``reference_depth``; metric depth is kept as is.
4. Clamp and validate: non-positive or non-finite model outputs never reach the result; the
   returned depth is finite and within ``[min_depth, max_depth]`` (automatic bounds by default).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import numpy as np

from scenescape.backends.finetune import FinetuneHistory, WeightSnapshot, finetune_depth
from scenescape.backends.models import backend_config, load_pretrained, pick_device, pick_dtype
from scenescape.config import ConfigError
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera

log = logging.getLogger(__name__)

_MIN_KNOWN = 16
_METRIC_TYPES = ("zoedepth", "glpn", "depth_pro")


def detect_output(config: Any, model_id: str) -> str:
    """``"disparity"`` or ``"depth"`` for a transformers depth model config (see module docstring)."""
    mt = getattr(config, "model_type", "") or ""
    if mt in ("depth_anything", "prompt_depth_anything"):
        return "depth" if getattr(config, "depth_estimation_type", "relative") == "metric" else "disparity"
    if mt in _METRIC_TYPES:
        return "depth"
    if mt == "dpt":
        return "disparity"
    if "metric" in str(model_id).lower():
        return "depth"
    raise ConfigError(
        f"cannot tell whether depth model '{model_id}' (model_type '{mt}') outputs relative disparity or "
        "metric depth; set depth.options.output to 'disparity' or 'depth'"
    )


def _ls_affine(x: Any, y: Any) -> tuple[Any, Any]:
    """Differentiable least-squares ``y ~ s * x + t`` over 1-D tensors."""
    mx, my = x.mean(), y.mean()
    vx = ((x - mx) ** 2).mean().clamp_min(1e-12)
    s = ((x - mx) * (y - my)).mean() / vx
    return s, my - s * mx


class TransformersDepth:
    """Depth from a transformers depth-estimation model; ``estimate`` returns float32 ``(H, W)`` z-depth."""

    MODEL_KIND = "transformers"  # what ``scenescape models`` checks for

    @dataclasses.dataclass
    class Config:
        model: str = "depth-anything/Depth-Anything-V2-Small-hf"
        """Hub id or local folder (``Intel/dpt-large`` for SceneScape parity)."""
        output: Literal["auto", "disparity", "depth"] = "auto"
        """What the model predicts; ``auto`` reads the model config (module docstring)."""
        align: bool = True
        """Fit scale and shift to the known (rendered) depth when it is given."""
        seam: bool = True
        """Blend into the known depth at the seam (known pixels keep the known depth exactly)."""
        reference_depth: float = 1.0
        """First frame (no known depth), disparity models: median z-depth after normalisation."""
        max_depth_ratio: float = 100.0
        """First frame, disparity models: farthest depth = this x the nearest (disparity clipped)."""
        min_depth: float = 0.0
        """Clamp of the result; 0 = automatic (from the known depth or the prediction)."""
        max_depth: float = 0.0
        """Clamp of the result; 0 = automatic."""
        dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
        """``auto``: fp16 on a GPU, fp32 on the CPU, and always fp32 when finetuning."""
        device: str = "auto"
        finetune_steps: int = 0
        """SceneScape's depth finetuning: Adam steps per frame (SceneScape: 300; 0 = off)."""
        finetune_lr: float = 1e-7
        finetune_reset_per_frame: bool = True
        """Restore the original weights before each frame (SceneScape) or keep finetuning across frames."""

    def __init__(self, config: Config | None = None, device: Any = None, **kwargs: Any):
        cfg = backend_config(type(self), config, device, kwargs)
        if cfg.reference_depth <= 0 or cfg.max_depth_ratio <= 1:
            raise InputError("depth reference_depth must be > 0 and max_depth_ratio > 1, got "
                             f"{cfg.reference_depth} and {cfg.max_depth_ratio}")
        if cfg.min_depth < 0 or cfg.max_depth < 0 or (cfg.max_depth and cfg.max_depth <= cfg.min_depth):
            raise InputError(f"depth min_depth/max_depth must be >= 0 (0 = automatic) with max_depth > min_depth, "
                             f"got {cfg.min_depth}, {cfg.max_depth}")
        if cfg.finetune_steps < 0 or cfg.finetune_lr <= 0:
            raise InputError(f"depth finetune_steps must be >= 0 and finetune_lr > 0, got {cfg.finetune_steps}, "
                             f"{cfg.finetune_lr}")
        self.config = cfg
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.device = pick_device(cfg.device)
        self.dtype = torch.float32 if cfg.finetune_steps > 0 and cfg.dtype == "auto" else pick_dtype(cfg.dtype,
                                                                                                    self.device)
        self.model = load_pretrained(
            AutoModelForDepthEstimation.from_pretrained, cfg.model, "transformers", trust_remote_code=False,
        ).to(self.device, self.dtype)
        self.model.eval()
        self.model.requires_grad_(False)
        self.processor = load_pretrained(AutoImageProcessor.from_pretrained, cfg.model, "transformers",
                                         weights=False, trust_remote_code=False)
        self.output = cfg.output if cfg.output != "auto" else detect_output(self.model.config, cfg.model)
        self._snapshot = WeightSnapshot(self.model) if cfg.finetune_steps > 0 else None
        self.last_finetune: FinetuneHistory | None = None

    # -- model -----------------------------------------------------------------------------------
    def _pixel_values(self, img: np.ndarray) -> Any:
        u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        pv = self.processor(images=u8, return_tensors="pt")["pixel_values"]
        return pv.to(self.device, self.dtype)

    def raw(self, pixel_values: Any, size: tuple[int, int]) -> Any:
        """Model output resized to ``size`` ``(H, W)``: a float32 ``(H, W)`` tensor (disparity or depth)."""
        import torch.nn.functional as F

        pred = self.model(pixel_values=pixel_values).predicted_depth  # (1, h, w)
        pred = pred.reshape(1, 1, *pred.shape[-2:]).float()
        return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)[0, 0]

    # -- public API --------------------------------------------------------------------------------
    def estimate(self, image: Any, camera: Camera | None = None, known_depth: Any = None,
                 known_mask: Any = None) -> np.ndarray:
        """Z-depth ``(H, W)`` float32, finite and > 0, for ``image`` ``(H, W, 3)`` in [0, 1]."""
        import torch

        from scenescape.backends.inpaint.diffusers import to_float_image

        img = to_float_image(image)
        h, w = img.shape[:2]
        kd, km = self._known(known_depth, known_mask, (h, w))
        pv = self._pixel_values(img)
        have_known = km is not None and int(km.sum()) >= _MIN_KNOWN
        if self.config.finetune_steps > 0 and have_known:
            self._finetune(pv, (h, w), kd, km)
        with torch.no_grad():
            raw = self.raw(pv, (h, w)).cpu().numpy().astype(np.float64)
        finite = np.isfinite(raw)
        if not finite.any():
            raise InputError(f"depth model '{self.config.model}' produced no finite value for this image")
        if not finite.all():  # treat as "no information": farthest disparity / median depth
            raw = np.where(finite, raw, 0.0 if self.output == "disparity" else np.median(raw[finite]))
        if have_known and self.config.align:
            depth = self._align(raw, kd, km)
        else:
            depth = self._normalise(raw)
        return self._clamp(depth, kd if have_known else None, km if have_known else None)

    # -- internals ---------------------------------------------------------------------------------
    @staticmethod
    def _known(known_depth: Any, known_mask: Any, size: tuple[int, int]) -> tuple[Any, Any]:
        if known_depth is None:
            return None, None
        kd = known_depth.detach().cpu().numpy() if hasattr(known_depth, "detach") else np.asarray(known_depth)
        kd = kd.astype(np.float64)
        if kd.shape != size:
            raise InputError(f"known_depth must be (H, W) = {size} like the image, got shape {kd.shape}")
        if known_mask is None:
            km = np.isfinite(kd) & (kd > 0)
        else:
            km = known_mask.detach().cpu().numpy() if hasattr(known_mask, "detach") else np.asarray(known_mask)
            if km.shape != size:
                raise InputError(f"known_mask must be (H, W) = {size} like the image, got shape {km.shape}")
            km = km.astype(bool) & np.isfinite(kd) & (kd > 0)
        return kd, km

    def _to_depth_diff(self, raw: Any, kd_t: Any, km_t: Any) -> Any:
        """Differentiable z-depth from the raw output, aligned by least squares on the known pixels."""
        if self.output == "disparity":
            s, t = _ls_affine(raw[km_t], 1.0 / kd_t[km_t])
            disp = s * raw + t
            floor = 1.0 / (10.0 * kd_t[km_t].max())
            return 1.0 / disp.clamp_min(floor)
        s, t = _ls_affine(raw[km_t], kd_t[km_t])
        return (s * raw + t).clamp_min(0.1 * kd_t[km_t].min())

    def _finetune(self, pv: Any, size: tuple[int, int], kd: np.ndarray, km: np.ndarray) -> None:
        import torch

        cfg = self.config
        if cfg.finetune_reset_per_frame:
            self._snapshot.restore()
        kd_t = torch.as_tensor(kd, dtype=torch.float32, device=self.device)
        km_t = torch.as_tensor(km, device=self.device)

        def predict() -> Any:
            return self._to_depth_diff(self.raw(pv, size), kd_t, km_t)

        params = [p for p in self.model.parameters() if p.is_floating_point()]
        self.last_finetune = finetune_depth(predict, params, kd_t, km_t, cfg.finetune_steps, cfg.finetune_lr)
        log.debug("depth finetune: L1 %.4g -> %.4g", self.last_finetune.error_before, self.last_finetune.error_after)

    def _align(self, raw: np.ndarray, kd: np.ndarray, km: np.ndarray) -> np.ndarray:
        from scenescape.geometry.depth_align import align_depth, blend_to_known

        cfg = self.config
        aligned, scale, shift = align_depth(
            raw, np.where(km, kd, 0.0), km, space=self.output,
            min_depth=cfg.min_depth or None, max_depth=cfg.max_depth or None,
        )
        if cfg.seam:
            aligned = blend_to_known(aligned, np.where(km, kd, 0.0), km, ~km)
        return aligned.cpu().numpy().astype(np.float64)

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        cfg = self.config
        if self.output == "depth":
            pos = raw[raw > 0]
            if pos.size == 0:
                raise InputError(f"depth model '{cfg.model}' predicted no positive depth for this image")
            return np.where(raw > 0, raw, pos.min())
        pos = raw[raw > 0]
        if pos.size == 0:
            raise InputError(f"depth model '{cfg.model}' predicted no positive disparity for this image; "
                             "it is not a working depth model")
        top = float(np.quantile(pos, 0.99))
        disp = np.clip(raw / top, 1.0 / cfg.max_depth_ratio, None)
        depth = 1.0 / disp
        return depth * (cfg.reference_depth / float(np.median(depth)))

    def _clamp(self, depth: np.ndarray, kd: Any, km: Any) -> np.ndarray:
        cfg = self.config
        if kd is not None:
            lo_auto, hi_auto = 0.5 * float(kd[km].min()), 10.0 * float(kd[km].max())
        else:
            pos = depth[np.isfinite(depth) & (depth > 0)]
            lo_auto = float(pos.min()) if pos.size else 1e-3
            hi_auto = float(pos.max()) if pos.size else 1.0
            if self.output == "disparity":
                hi_auto = max(hi_auto, lo_auto * cfg.max_depth_ratio)
        lo = cfg.min_depth or lo_auto
        hi = cfg.max_depth or max(hi_auto, lo * 1.0001)
        depth = np.nan_to_num(depth, nan=hi, posinf=hi, neginf=lo)
        out = np.clip(depth, lo, hi).astype(np.float32)
        if not (np.isfinite(out).all() and (out > 0).all()):  # pragma: no cover - guarded by the clamp
            raise InputError("depth estimate is not finite and positive")
        return out
