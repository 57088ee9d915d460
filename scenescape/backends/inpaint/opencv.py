"""OpenCV inpainting (registered as ``"opencv"``): Telea, Navier-Stokes, or FSR with opencv-contrib.

Images ``(H, W, 3)`` float in [0, 1], masks ``(H, W)`` bool; numpy or torch in, numpy float32 out.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from scenescape.backends.arrays import check_image as _check_image
from scenescape.backends.arrays import to_numpy as _np
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


class OpenCVInpainter:
    """OpenCV inpainting (``cv2.inpaint`` Telea / Navier-Stokes, or ``cv2.xphoto`` FSR).

    Classical inpainting propagates the colours around the hole inwards; it cannot create an image
    from nothing, so an all-True mask (an empty canvas) is an error that says what to use instead.
    The prompt is ignored. Works on 8-bit colour internally; the pipeline's composite keeps the
    known pixels exactly.
    """

    @dataclasses.dataclass
    class Config:
        method: Literal["telea", "ns", "fsr"] = "telea"
        radius: float = 3.0
        """Neighbourhood radius in pixels (Telea / NS)."""
        fsr_quality: Literal["fast", "best"] = "fast"
        """FSR mode (only with ``method: fsr``)."""

    def __init__(self, config: Config | None = None, **kwargs: Any):
        cfg = config if config is not None else self.Config(**kwargs)
        if cfg.radius <= 0:
            raise InputError(f"inpainter radius must be > 0, got {cfg.radius}")
        self.config = cfg
        if cfg.method == "fsr":
            import cv2

            if not hasattr(cv2, "xphoto"):
                raise ImportError(
                    "inpainter method 'fsr' needs OpenCV's contrib modules (cv2.xphoto): "
                    "pip install opencv-contrib-python-headless (instead of opencv-python-headless), "
                    "or use method 'telea' or 'ns'"
                )

    def inpaint(self, image: Any, mask: Any, camera: Camera | None = None, prompt: str = "",
                seed: int | None = None, negative_prompt: str | None = None) -> np.ndarray:
        """Fill ``mask`` ``(H, W)`` True pixels of ``image`` ``(H, W, 3)``; returns float32 ``(H, W, 3)``."""
        import cv2

        img = _check_image(image)
        m = _np(mask, bool)
        if m.shape != img.shape[:2]:
            raise InputError(f"mask has shape {m.shape}, but the image is {img.shape[:2]} (H, W)")
        if not m.any():
            return img.copy()
        if m.all():
            raise InputError(
                "the OpenCV inpainter cannot create an image from an empty canvas (the mask covers every "
                "pixel); start from a photo (--image) or configure a text_to_image / diffusion inpainter"
            )
        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        m8 = m.astype(np.uint8) * 255
        cfg = self.config
        if cfg.method == "fsr":
            # xphoto: mask is 1 for KNOWN pixels; works on the colour image directly
            dst = np.zeros_like(u8)
            algo = cv2.xphoto.INPAINT_FSR_FAST if cfg.fsr_quality == "fast" else cv2.xphoto.INPAINT_FSR_BEST
            cv2.xphoto.inpaint(u8, (~m).astype(np.uint8) * 255, dst, algo)
            out = dst
        else:
            flag = cv2.INPAINT_TELEA if cfg.method == "telea" else cv2.INPAINT_NS
            out = cv2.inpaint(u8, m8, float(cfg.radius), flag)
        res = out.astype(np.float32) / 255.0
        res[~m] = img[~m]
        return res
