"""The inputs a scene run starts from: image, depth and camera files read and validated; errors name what
is wrong."""

from __future__ import annotations

import warnings
from pathlib import Path
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


def load_start_inputs(cfg: Any, image: str | Path | None, depth: str | Path | None) -> tuple[Any, Any]:
    """The start image ``(H, W, 3)`` and z-depth ``(H, W)`` of a scene run from files, at the config's
    ``width`` x ``height`` (``generate --image --init-depth`` and ``scenescape batch`` jobs both read them
    here). EXIF orientation is applied and every PIL mode is read with its range kept. A photo of another
    aspect is centre-cropped, then resized, with a warning (never stretched); its depth is cropped and
    resized with it (nearest). ``(None, None)`` without an image."""
    from scenescape.io import load_depth, load_image

    if depth and not image:
        raise InputError("--init-depth needs --image (the photo the depth belongs to)")
    if not image:
        return None, None
    p = Path(image)
    if not p.is_file():
        raise InputError(f"image '{p}' does not exist (check the --image path)")
    raw = load_image(p)  # EXIF orientation applied; any mode -> RGB with its range kept
    h0, w0 = raw.shape[:2]
    img = load_image(p, size=(cfg.width, cfg.height)) if (w0, h0) != (cfg.width, cfg.height) else raw
    dep = None
    if depth:
        dep = load_depth(depth, shape=(h0, w0))
        if (w0, h0) != (cfg.width, cfg.height):
            from scenescape.io import fit_to_size

            warnings.warn(f"depth '{depth}' cropped and resized from {w0}x{h0} to {cfg.width}x{cfg.height} "
                          "with the image", stacklevel=2)
            dep = fit_to_size(dep, (cfg.width, cfg.height), nearest=True).astype(np.float32)
    return img, dep


def load_start_camera(path: str | Path) -> Any:
    """The start :class:`~scenescape.geometry.camera.Camera` from a JSON file: one camera
    (``Camera.to_dict``) or a ``cameras.json`` (its first camera)."""
    from scenescape.geometry.camera import Camera
    from scenescape.io import read_json_file
    from scenescape.io.world import cameras_from_file_json

    p = Path(path)
    data = read_json_file(p, "camera file")
    try:
        if isinstance(data, dict) and "fx" in data:
            return Camera.from_dict(data)
        return cameras_from_file_json(data)[0]  # a run's cameras.json: back from its Z-up world
    except InputError as e:
        raise InputError(f"camera file '{p}': {e}") from e
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise InputError(f"camera file '{p}' is malformed ({what}); it must hold a camera as written by "
                         "Camera.to_dict (fx, fy, cx, cy, width, height, world_to_camera) or a cameras.json") from e


__all__ = ["load_start_camera", "load_start_inputs", "to_numpy", "validate_depth", "validate_image"]
