"""Validation of the arrays a scene run starts from (image, depth); errors name what is wrong."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError


def to_numpy(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """A numpy array of ``dtype`` from a numpy array or a torch tensor (any device)."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def validate_image(image: Any, where: str = "image") -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1] from an RGB(A)/grey array in [0, 1] or 0-255 (conversions warn)."""
    a = to_numpy(image)
    if a.ndim == 2:
        warnings.warn(f"{where} is greyscale; converting to RGB", stacklevel=3)
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"{where} must be an (H, W, 3) RGB image, got shape {a.shape}")
    if a.shape[2] == 4:
        warnings.warn(f"{where} has an alpha channel; dropping it", stacklevel=3)
        a = a[..., :3]
    if not np.isfinite(a).all():
        raise InputError(f"{where} contains NaN or infinite values")
    if a.max() > 1.0 + 1e-6:
        if a.max() <= 255.0:
            warnings.warn(f"{where} looks like 0-255 values; scaling to [0, 1]", stacklevel=3)
            a = a / 255.0
        else:
            raise InputError(f"{where} values must be in [0, 1] (float) or 0-255, max is {a.max()}")
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0), dtype=np.float32)


def validate_depth(depth: Any, shape: tuple[int, int], where: str = "init_depth") -> np.ndarray:
    """``(H, W)`` float32 z-depth of ``shape``, finite and > 0 everywhere, or an :class:`InputError`."""
    d = to_numpy(depth).squeeze()
    if d.shape != tuple(shape):
        raise InputError(f"{where} has shape {d.shape}, but the image is {tuple(shape)} (H, W)")
    if not np.isfinite(d).all():
        raise InputError(f"{where} contains NaN or infinite values")
    if (d <= 0).any():
        raise InputError(f"{where} contains zero or negative depths ({int((d <= 0).sum())} pixels)")
    return np.ascontiguousarray(d, dtype=np.float32)


__all__ = ["to_numpy", "validate_depth", "validate_image"]
