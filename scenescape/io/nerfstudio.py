"""nerfstudio's camera files: import of a camera path (``camera_path.json``) and of ``transforms.json``,
export of ``transforms.json`` (camera-to-world with OpenGL camera axes, as nerfstudio reads it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.rotations import camera_to_world
from scenescape.io.files import read_json_file

# nerfstudio's dataparser multiplies depth files by depth_unit_scale_factor, default 1e-3 (millimetres to metres:
# nerfstudio_dataparser.py NerfstudioDataParserConfig.depth_unit_scale_factor; data_utils.get_depth_image_from_path
# does np.load(f) * scale_factor for .npy). Depth written for nerfstudio is z-depth x 1 / DEPTH_UNIT_SCALE_FACTOR,
# so its defaults read it in scene units (z-depth, not ray length: its depth losses' is_euclidean_depth=False).
DEPTH_UNIT_SCALE_FACTOR = 1e-3

# OpenGL camera axes (x right, y up, z back) <-> OpenCV (x right, y down, z forward): flip y and z.
GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def _matrix16(value: Any, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where} must be 16 numbers (row-major 4x4): {e}") from e
    if m.size == 12:
        m = np.concatenate([m.reshape(-1), [0.0, 0.0, 0.0, 1.0]])
    if m.size != 16:
        raise InputError(f"{where} must be 16 numbers (row-major 4x4), got {m.size}")
    m = m.reshape(4, 4)
    if not np.isfinite(m).all():
        raise InputError(f"{where} contains NaN or infinite values")
    return m


def _opengl_c2w_to_w2c(c2w_gl: np.ndarray) -> np.ndarray:
    c2w_cv = c2w_gl @ GL_FLIP
    # Strip a uniform scale some exporters leave in the rotation block.
    r = c2w_cv[:3, :3]
    scale = np.cbrt(np.linalg.det(r)) if np.linalg.det(r) > 0 else 1.0
    r = r / scale
    w2c = np.eye(4)
    w2c[:3, :3] = r.T
    w2c[:3, 3] = -r.T @ c2w_cv[:3, 3]
    return w2c


def cameras_from_nerfstudio_path(data: Any, width: int | None = None, height: int | None = None) -> list[Camera]:
    """Cameras from a nerfstudio ``camera_path.json`` (dict, or a path to one).

    Each ``camera_path`` entry has ``camera_to_world`` (16 floats, row-major, OpenGL camera axes: x right,
    y up, z back; converted here to OpenCV, world coordinates unchanged) and ``fov`` (vertical, degrees).
    The image size is ``render_width`` x ``render_height`` (overridable); pixels are square and the
    principal point is the image centre, as nerfstudio renders them.
    """
    if isinstance(data, (str, Path)):
        data = read_json_file(data, "camera path file")
    if not isinstance(data, dict) or not isinstance(data.get("camera_path"), list) or not data["camera_path"]:
        raise InputError("a nerfstudio camera path needs a non-empty 'camera_path' list")
    ctype = str(data.get("camera_type", "perspective")).lower()
    if ctype != "perspective":
        raise InputError(f"nerfstudio camera_type '{ctype}' is not supported (only 'perspective')")
    h = height or data.get("render_height")
    w = width or data.get("render_width")
    if h is None:
        raise InputError("nerfstudio camera path: missing field 'render_height'")
    out = []
    for i, item in enumerate(data["camera_path"]):
        where = f"camera {i}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected a mapping with camera_to_world and fov")
        for f in ("camera_to_world", "fov"):
            if f not in item:
                raise InputError(f"{where}: missing field '{f}'")
        c2w = _matrix16(item["camera_to_world"], f"{where}: camera_to_world")
        try:
            fov = float(item["fov"])
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: field 'fov' must be a number (vertical degrees)") from e
        if not 0 < fov < 180:
            raise InputError(f"{where}: field 'fov' must be in (0, 180) degrees, got {fov}")
        ww = w
        if ww is None:
            aspect = item.get("aspect", data.get("aspect"))
            if aspect is None:
                raise InputError(f"{where}: no render_width and no 'aspect' to derive it")
            ww = round(float(h) * float(aspect))
        f = 0.5 * float(h) / math.tan(math.radians(fov) / 2)
        try:
            out.append(Camera(f, f, float(ww) / 2, float(h) / 2, int(ww), int(h), _opengl_c2w_to_w2c(c2w)))
        except ValueError as e:
            raise InputError(f"{where}: {e}") from e
    return out


def to_nerfstudio_transforms(cameras: Sequence[Camera], frame_paths: Sequence[str | Path],
                             depth_paths: Sequence[str | Path] | None = None,
                             mask_paths: Sequence[str | Path] | None = None,
                             ply_path: str | Path | None = None) -> dict[str, Any]:
    """A nerfstudio ``transforms.json`` dict for ``cameras`` and their image files.

    Per frame: ``fl_x, fl_y, cx, cy, w, h, file_path`` and ``transform_matrix`` (camera-to-world,
    OpenGL camera axes). Pixel centres at +0.5 are nerfstudio's convention too, so ``cx, cy`` are copied.
    """
    cams = list(cameras)
    paths = [str(p) for p in frame_paths]
    if len(paths) != len(cams):
        raise InputError(f"frame_paths has {len(paths)} entries for {len(cams)} cameras")
    for name, extra in (("depth_paths", depth_paths), ("mask_paths", mask_paths)):
        if extra is not None and len(extra) != len(cams):
            raise InputError(f"{name} has {len(extra)} entries for {len(cams)} cameras")
    frames = []
    for i, (c, p) in enumerate(zip(cams, paths)):
        c2w_gl = camera_to_world(c) @ GL_FLIP
        fr: dict[str, Any] = {
            "file_path": p, "fl_x": c.fx, "fl_y": c.fy, "cx": c.cx, "cy": c.cy, "w": c.width, "h": c.height,
            "transform_matrix": c2w_gl.tolist(),
        }
        if depth_paths is not None:
            fr["depth_file_path"] = str(depth_paths[i])
        if mask_paths is not None:
            fr["mask_path"] = str(mask_paths[i])
        frames.append(fr)
    out: dict[str, Any] = {"camera_model": "OPENCV", "frames": frames}
    if ply_path is not None:
        out["ply_file_path"] = str(ply_path)
    return out


def cameras_from_nerfstudio_transforms(data: dict[str, Any]) -> list[Camera]:
    """Inverse of :func:`to_nerfstudio_transforms` (per-frame or top-level intrinsics)."""
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError("nerfstudio transforms need a non-empty 'frames' list")
    out = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise InputError(f"camera {i}: expected a mapping")
        vals = {}
        for f in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            v = fr.get(f, data.get(f))
            if v is None:
                raise InputError(f"camera {i}: missing field '{f}'")
            vals[f] = v
        if "transform_matrix" not in fr:
            raise InputError(f"camera {i}: missing field 'transform_matrix'")
        c2w = _matrix16(fr["transform_matrix"], f"camera {i}: transform_matrix")
        try:
            out.append(Camera(vals["fl_x"], vals["fl_y"], vals["cx"], vals["cy"], vals["w"], vals["h"],
                              _opengl_c2w_to_w2c(c2w)))
        except ValueError as e:
            raise InputError(f"camera {i}: {e}") from e
    return out


def camera_path_to_tensor(cameras: Sequence[Camera]) -> torch.Tensor:
    """``(N, 4, 4)`` stacked world_to_camera matrices (convenience for plotting/analysis)."""
    return torch.stack([c.world_to_camera for c in cameras])


__all__ = ["GL_FLIP", "camera_path_to_tensor", "cameras_from_nerfstudio_path", "cameras_from_nerfstudio_transforms",
           "to_nerfstudio_transforms"]
