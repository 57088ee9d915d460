"""Classical backends: the offline default, no model weights needed.

* :class:`OpenCVInpainter` (registered as ``"opencv"``): OpenCV's Telea or Navier-Stokes inpainting,
  or FSR (``cv2.xphoto``) where ``opencv-contrib-python(-headless)`` is installed.
* :class:`DepthCompletion` (``"completion"``): depth for the whole image from the known (rendered)
  depth: an edge-aware harmonic fill of the disparity, guided by the colour image, with a
  background bias at depth edges (see the class docstring).
* :class:`GeometricPriorDepth` (``"prior"``): depth for a photo that has none and no depth model: a
  ground plane below the horizon and a far wall (documented in the class docstring).

Arrays: images ``(H, W, 3)`` float in [0, 1], masks ``(H, W)`` bool, depth ``(H, W)`` z-depth;
numpy or torch in, numpy float32 out.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from scenescape.geometry.camera import Camera
from scenescape.geometry.depth_align import edge_weights, harmonic_fill


def _np(x: Any, dtype: Any = np.float32) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    a = _np(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be a (H, W, 3) RGB array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


# ---------------------------------------------------------------------------------------------
# Inpainting
# ---------------------------------------------------------------------------------------------

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
            raise ValueError(f"inpainter radius must be > 0, got {cfg.radius}")
        self.config = cfg
        if cfg.method == "fsr":
            import cv2

            if not hasattr(cv2, "xphoto"):
                raise ImportError(
                    "inpainter method 'fsr' needs OpenCV's contrib modules (cv2.xphoto): "
                    "pip install opencv-contrib-python-headless (instead of opencv-python-headless), "
                    "or use method 'telea' or 'ns'"
                )

    def inpaint(self, image: Any, mask: Any, camera: Camera | None = None, prompt: str = "") -> np.ndarray:
        """Fill ``mask`` ``(H, W)`` True pixels of ``image`` ``(H, W, 3)``; returns float32 ``(H, W, 3)``."""
        import cv2

        img = _check_image(image)
        m = _np(mask, bool)
        if m.shape != img.shape[:2]:
            raise ValueError(f"mask has shape {m.shape}, but the image is {img.shape[:2]} (H, W)")
        if not m.any():
            return img.copy()
        if m.all():
            raise ValueError(
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


# ---------------------------------------------------------------------------------------------
# Depth completion
# ---------------------------------------------------------------------------------------------

class DepthCompletion:
    """Depth for the whole image from the known (rendered) depth: edge-aware harmonic fill.

    The unknown pixels' *disparity* (``1 / depth``) solves a weighted Laplace equation whose
    Dirichlet data is the known disparity. Disparity is affine in the pixel coordinates on any plane,
    and affine functions are harmonic, so a planar surface seen around a hole is continued exactly
    (with uniform weights). Weights between neighbouring pixels fall with their colour difference in
    the (inpainted) image, so depth does not bleed across image edges.

    Background bias (``background_bias``): a hole that opens in a new view is background that an
    occluder hid, so seam pixels (known pixels within 2 px of the hole) on the near side of a depth
    edge - nearer than ``1 - edge_ratio`` times the farthest seam depth within ``edge_window``
    pixels - are not used as boundary data; the hole is filled from its far side instead of being
    stretched between occluder and background.

    With no known pixel at all (a first frame without depth) this backend cannot work: it raises a
    ``ValueError`` that asks for ``--init-depth``, the ``prior`` backend or a depth model.
    """

    @dataclasses.dataclass
    class Config:
        sigma: float = 0.1
        """Colour difference (RGB in [0, 1]) at which the edge weight falls to exp(-1/2)."""
        background_bias: bool = True
        edge_ratio: float = 0.15
        edge_window: int = 15

    def __init__(self, config: Config | None = None, **kwargs: Any):
        cfg = config if config is not None else self.Config(**kwargs)
        if cfg.sigma <= 0:
            raise ValueError(f"depth completion sigma must be > 0, got {cfg.sigma}")
        if not 0 <= cfg.edge_ratio < 1:
            raise ValueError(f"depth completion edge_ratio must be in [0, 1), got {cfg.edge_ratio}")
        self.config = cfg

    def estimate(self, image: Any, camera: Camera | None = None, known_depth: Any = None,
                 known_mask: Any = None) -> np.ndarray:
        """``(H, W)`` float32 z-depth: ``known_depth`` where ``known_mask``, the harmonic fill elsewhere."""
        img = _check_image(image)
        if known_depth is None or known_mask is None:
            raise ValueError(
                "depth backend 'completion' fills depth from known depth and has none here (a first frame "
                "without depth): pass --init-depth, set first_depth.name=prior (a ground-plane + far-wall "
                "layout), or configure a depth model"
            )
        k = _np(known_depth, np.float64)
        m = _np(known_mask, bool)
        if k.shape != img.shape[:2] or m.shape != img.shape[:2]:
            raise ValueError(f"known_depth {k.shape} and known_mask {m.shape} must match the image {img.shape[:2]}")
        m = m & np.isfinite(k) & (k > 0)
        if not m.any():
            raise ValueError(
                "depth backend 'completion' got no valid known depth pixel: pass --init-depth, set "
                "first_depth.name=prior, or configure a depth model"
            )
        if m.all():
            return k.astype(np.float32)
        disp = np.zeros_like(k)
        disp[m] = 1.0 / k[m]
        fixed = m
        cfg = self.config
        if cfg.background_bias:
            fixed = m & ~self._near_side(k, m)
            if not fixed.any():
                fixed = m
        wts = edge_weights(img, sigma=cfg.sigma)
        # near-side seam pixels are neither boundary data nor unknowns: walls (no flux through them)
        filled = harmonic_fill(disp, fixed, region=~m, weights=wts)
        out = np.where(m, k, 1.0 / np.maximum(filled, 1e-12))
        lo, hi = float(k[m].min()), float(k[m].max())
        out = np.clip(out, lo * 0.5, hi * 2.0)
        return out.astype(np.float32)

    def _near_side(self, depth: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Known pixels next to the hole that lie on the near side of a depth edge."""
        from scipy import ndimage

        hole = ~known
        seam = ndimage.binary_dilation(hole, iterations=2) & known
        if not seam.any():
            return np.zeros_like(known)
        win = max(3, int(self.config.edge_window) | 1)
        d = np.where(seam, depth, 0.0)  # only seam depths: the far side across a thin hole is in reach
        far = ndimage.maximum_filter(d, size=win)
        return seam & (depth < (1.0 - self.config.edge_ratio) * far)


class GeometricPriorDepth:
    """A depth prior for a photo with no depth and no depth model: a ground plane and a far wall.

    The camera is assumed to stand ``camera_height`` units above a horizontal ground plane and to
    look horizontally (the horizon is the image row through the principal point; the world's
    "down" is the camera's +y). A pixel below the horizon at row ``v`` sees the ground at z-depth
    ``camera_height * fy / (v - cy)``; every ray is also stopped by a fronto-parallel far wall at
    z-depth ``wall_distance``: ``depth = min(ground, wall)``. Pixels above the horizon see the wall
    (or, when ``ceiling_height`` > 0, a ceiling that far above the camera, the mirror of the ground).

    This is a crude but honest scene layout (SceneScape-like indoor walkthroughs: floor + far
    wall); it ignores the image content, so objects in the photo become flat paint on these
    surfaces. Prefer ``--init-depth`` or a depth model (``depth.name=transformers``) when available.
    """

    @dataclasses.dataclass
    class Config:
        camera_height: float = 1.5
        wall_distance: float = 8.0
        ceiling_height: float = 0.0
        """Distance of a ceiling above the camera; 0 means no ceiling."""

    def __init__(self, config: Config | None = None, **kwargs: Any):
        cfg = config if config is not None else self.Config(**kwargs)
        if cfg.camera_height <= 0 or cfg.wall_distance <= 0 or cfg.ceiling_height < 0:
            raise ValueError(
                "prior depth needs camera_height > 0, wall_distance > 0 and ceiling_height >= 0, got "
                f"{cfg.camera_height}, {cfg.wall_distance}, {cfg.ceiling_height}"
            )
        self.config = cfg

    def estimate(self, image: Any, camera: Camera, known_depth: Any = None, known_mask: Any = None) -> np.ndarray:
        """``(H, W)`` float32 z-depth of the ground-plane + far-wall layout (the image is not used)."""
        img = _check_image(image)
        if camera is None:
            raise ValueError("the prior depth backend needs the camera (its focal length and principal point)")
        h, w = img.shape[:2]
        if (camera.height, camera.width) != (h, w):
            raise ValueError(f"camera is {camera.height}x{camera.width} but the image is {h}x{w} (H, W)")
        cfg = self.config
        v = np.arange(h, dtype=np.float64) + 0.5 - camera.cy  # rows relative to the horizon
        col = np.full(h, cfg.wall_distance)
        below = v > 1e-9
        col[below] = np.minimum(cfg.wall_distance, cfg.camera_height * camera.fy / v[below])
        if cfg.ceiling_height > 0:
            above = v < -1e-9
            col[above] = np.minimum(cfg.wall_distance, cfg.ceiling_height * camera.fy / -v[above])
        depth = np.repeat(col[:, None], w, axis=1)
        if known_depth is not None and known_mask is not None:
            km = _np(known_mask, bool)
            kd = _np(known_depth, np.float64)
            ok = km & np.isfinite(kd) & (kd > 0)
            depth = np.where(ok, kd, depth)
        return depth.astype(np.float32)


__all__ = ["DepthCompletion", "GeometricPriorDepth", "OpenCVInpainter"]
