"""Geometric prior depth (registered as ``"prior"``) for a photo with no depth and no depth model:
a ground plane below the horizon and a far wall (see the class docstring).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scenescape.backends.arrays import check_image as _check_image
from scenescape.backends.arrays import to_numpy as _np
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


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
            raise InputError(
                "prior depth needs camera_height > 0, wall_distance > 0 and ceiling_height >= 0, got "
                f"{cfg.camera_height}, {cfg.wall_distance}, {cfg.ceiling_height}"
            )
        self.config = cfg

    def estimate(self, image: Any, camera: Camera, known_depth: Any = None, known_mask: Any = None) -> np.ndarray:
        """``(H, W)`` float32 z-depth of the ground-plane + far-wall layout (the image is not used)."""
        img = _check_image(image)
        if camera is None:
            raise InputError("the prior depth backend needs the camera (its focal length and principal point)")
        h, w = img.shape[:2]
        if (camera.height, camera.width) != (h, w):
            raise InputError(f"camera is {camera.height}x{camera.width} but the image is {h}x{w} (H, W)")
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


__all__ = ["GeometricPriorDepth"]
