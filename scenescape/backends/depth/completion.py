"""Depth completion (registered as ``"completion"``): depth for the whole image from the known (rendered)
depth, an edge-aware harmonic fill of the disparity guided by the colour image, with a background bias
at depth edges (see the class docstring). Depth ``(H, W)`` z-depth, numpy float32 out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scenescape.backends.arrays import check_image as _check_image
from scenescape.backends.arrays import to_numpy as _np
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.depth_align import edge_weights, harmonic_fill


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
            raise InputError(f"depth completion sigma must be > 0, got {cfg.sigma}")
        if not 0 <= cfg.edge_ratio < 1:
            raise InputError(f"depth completion edge_ratio must be in [0, 1), got {cfg.edge_ratio}")
        self.config = cfg

    def estimate(self, image: Any, camera: Camera | None = None, known_depth: Any = None,
                 known_mask: Any = None) -> np.ndarray:
        """``(H, W)`` float32 z-depth: ``known_depth`` where ``known_mask``, the harmonic fill elsewhere."""
        img = _check_image(image)
        if known_depth is None or known_mask is None:
            raise InputError(
                "depth backend 'completion' fills depth from known depth and has none here (a first frame "
                "without depth): pass --init-depth, set first_depth.name=prior (a ground-plane + far-wall "
                "layout), or configure a depth model"
            )
        k = _np(known_depth, np.float64)
        m = _np(known_mask, bool)
        if k.shape != img.shape[:2] or m.shape != img.shape[:2]:
            raise InputError(f"known_depth {k.shape} and known_mask {m.shape} must match the image {img.shape[:2]}")
        m = m & np.isfinite(k) & (k > 0)
        if not m.any():
            raise InputError(
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
