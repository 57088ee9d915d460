"""Array helpers shared by the backends: numpy or torch in, numpy float32 out."""

from __future__ import annotations

from typing import Any

import numpy as np

from scenescape.errors import InputError


def to_numpy(x: Any, dtype: Any = np.float32) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_image(image: Any, name: str = "image") -> np.ndarray:
    a = to_numpy(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must be a (H, W, 3) RGB array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return a
