"""Rotations and camera poses: axis-angle, quaternions, slerp, camera-to-world matrices, camera interpolation.

Conventions: OpenCV cameras and ``world_to_camera`` poses; ``camera_to_world`` is its inverse (float64 numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


def camera_to_world(cam: Camera) -> np.ndarray:
    """``(4, 4)`` float64 camera-to-world of ``cam``."""
    w2c = cam.world_to_camera.double().numpy()
    out = np.eye(4)
    out[:3, :3] = w2c[:3, :3].T
    out[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
    return out


def camera_from_c2w(template: Camera, rot_c2w: np.ndarray, centre: np.ndarray, **intr: Any) -> Camera:
    w2c = np.eye(4)
    w2c[:3, :3] = rot_c2w.T
    w2c[:3, 3] = -rot_c2w.T @ centre
    k = dict(fx=template.fx, fy=template.fy, cx=template.cx, cy=template.cy,
             width=template.width, height=template.height)
    k.update(intr)
    return Camera(k["fx"], k["fy"], k["cx"], k["cy"], k["width"], k["height"], w2c)


def axis_angle_matrix(axis: Sequence[float], angle: float) -> np.ndarray:
    """``(3, 3)`` rotation by ``angle`` radians about ``axis`` (right-handed, Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def matrix_to_quaternion(r: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation -> unit quaternion ``(w, x, y, z)``."""
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` -> ``(3, 3)`` rotation."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (shortest arc); ``t=0`` -> q0, ``t=1`` -> q1."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(1.0, dot))
    s = math.sin(theta)
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / s


def slerp_rotation(r0: np.ndarray, r1: np.ndarray, t: float) -> np.ndarray:
    """Slerp between two ``(3, 3)`` rotations; exact at both ends."""
    if t <= 0.0:
        return np.asarray(r0, dtype=np.float64)
    if t >= 1.0:
        return np.asarray(r1, dtype=np.float64)
    return quaternion_to_matrix(slerp(matrix_to_quaternion(r0), matrix_to_quaternion(r1), t))


def interpolate_cameras(a: Camera, b: Camera, t: float) -> Camera:
    """Camera between ``a`` (t=0) and ``b`` (t=1): centre lerp, rotation slerp, intrinsics lerp."""
    if (a.width, a.height) != (b.width, b.height):
        raise InputError(f"cannot interpolate cameras of different image sizes "
                         f"({a.width}x{a.height} and {b.width}x{b.height})")
    ca, cb = camera_to_world(a), camera_to_world(b)
    rot = slerp_rotation(ca[:3, :3], cb[:3, :3], t)
    centre = (1 - t) * ca[:3, 3] + t * cb[:3, 3]
    intr = {k: (1 - t) * getattr(a, k) + t * getattr(b, k) for k in ("fx", "fy", "cx", "cy")}
    return camera_from_c2w(a, rot, centre, **intr)


__all__ = ["axis_angle_matrix", "camera_from_c2w", "camera_to_world", "interpolate_cameras", "matrix_to_quaternion",
           "quaternion_to_matrix", "slerp", "slerp_rotation"]
