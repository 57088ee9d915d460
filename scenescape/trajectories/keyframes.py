"""Keyframe interpolation (slerp rotations; linear or Catmull-Rom positions; intrinsics linear) and the
``keyframes`` preset."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.rotations import camera_from_c2w, camera_to_world, slerp_rotation
from scenescape.trajectories.presets import check_frames, register_preset


def _catmull_rom(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, t: float) -> np.ndarray:
    t2, t3 = t * t, t * t * t
    return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)


def interpolate_keyframes(keyframes: Sequence[Camera], n: int, position: str = "catmull_rom") -> list[Camera]:
    """``n`` cameras through ``keyframes`` (first and last exact), uniform in keyframe index.

    Rotations are slerped between consecutive keyframes; positions are linear or uniform Catmull-Rom
    (``position``: ``"linear"`` | ``"catmull_rom"``); intrinsics are interpolated linearly. All keyframes must
    share one image size.
    """
    n = check_frames(n)
    keys = list(keyframes)
    if not keys:
        raise InputError("keyframes: need at least one keyframe camera")
    if position not in ("linear", "catmull_rom"):
        raise InputError(f"keyframes: interpolation must be 'linear' or 'catmull_rom', got {position!r}")
    for i, k in enumerate(keys):
        if not isinstance(k, Camera):
            raise InputError(f"keyframe {i}: expected a Camera, got {type(k).__name__}")
        if (k.width, k.height) != (keys[0].width, keys[0].height):
            raise InputError(f"keyframe {i}: image size {k.width}x{k.height} differs from keyframe 0's "
                             f"{keys[0].width}x{keys[0].height}; all keyframes must share one size")
    if len(keys) == 1 or n == 1:
        return [keys[0]] * n if len(keys) == 1 else [keys[0]]
    c2ws = [camera_to_world(k) for k in keys]
    pos = [c[:3, 3] for c in c2ws]
    m = len(keys)
    # Mirrored end points: natural ends for Catmull-Rom.
    ext = [2 * pos[0] - pos[1], *pos, 2 * pos[-1] - pos[-2]]
    out = []
    for i in range(n):
        s = i * (m - 1) / (n - 1)
        j = min(int(math.floor(s)), m - 2)
        t = s - j
        if i == n - 1:
            j, t = m - 2, 1.0
        if position == "linear":
            p = (1 - t) * pos[j] + t * pos[j + 1]
        else:
            p = _catmull_rom(ext[j], ext[j + 1], ext[j + 2], ext[j + 3], t)
        rot = slerp_rotation(c2ws[j][:3, :3], c2ws[j + 1][:3, :3], t)
        a, b = keys[j], keys[j + 1]
        intr = {f: (1 - t) * getattr(a, f) + t * getattr(b, f) for f in ("fx", "fy", "cx", "cy")}
        out.append(camera_from_c2w(a, rot, p, **intr))
    return out


@register_preset("keyframes")
def keyframes(start: Camera, n: int, *, keyframes: Sequence[Any] = (), interpolation: str = "catmull_rom",
              scene_scale: float = 1.0) -> list[Camera]:
    """Interpolate from ``start`` through ``keyframes`` (Camera objects, camera dicts, or
    ``{"eye": [x, y, z], "target": [x, y, z], "up": [..]}`` with ``start``'s intrinsics). ``start`` is
    prepended unless the first keyframe equals it. ``scene_scale`` is ignored (positions are absolute)."""
    n = check_frames(n)
    cams = [_parse_keyframe(k, start, i) for i, k in enumerate(keyframes)]
    if not cams:
        raise InputError("preset 'keyframes' needs a non-empty 'keyframes' list")
    if not cams[0] == start:
        cams = [start, *cams]
    return interpolate_keyframes(cams, n, interpolation)


def _parse_keyframe(k: Any, start: Camera, i: int) -> Camera:
    if isinstance(k, Camera):
        return k
    if isinstance(k, dict) and "eye" in k:
        unknown = sorted(set(k) - {"eye", "target", "up"})
        if unknown or "target" not in k:
            raise InputError(f"keyframe {i}: an eye/target keyframe takes fields eye, target, up "
                             f"(got {sorted(k)})")
        try:
            pose = Camera.look_at_pose(k["eye"], k["target"], k.get("up", (0.0, -1.0, 0.0)))
        except (TypeError, RuntimeError) as e:
            raise InputError(f"keyframe {i}: eye/target/up must be 3 numbers each: {e}") from e
        except ValueError as e:
            raise InputError(f"keyframe {i}: {e}") from e
        return start.with_pose(pose)
    try:
        return Camera.from_dict(k)
    except ValueError as e:
        raise InputError(f"keyframe {i}: {e}") from e


__all__ = ["interpolate_keyframes", "keyframes"]
