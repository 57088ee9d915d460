"""The world frame of every file a run writes, and the colour encodings of the file formats.

Inside the library a scene lives in the OpenCV world of its first camera (x right, y down, z forward) and an
object in its own frame (up ``-y``, front ``+z``, see :func:`scenescape.fields.volume.orbit_pose`). Files are
written in **one world frame**, right-handed and **Z up** (Blender's, MeshLab's and nerfstudio's convention):

* scene: ``world = (x, z, -y)`` of the first camera's OpenCV frame - the first camera looks along ``+Y``,
  ``+Z`` is its up;
* object: ``world = (-x, -z, -y)`` of the object frame - up is ``+Z``, the front faces ``-Y`` (Blender's
  front view).

Formats whose readers assume **Y up** (glTF, and OBJ as Blender imports it) hold ``(X, Z, -Y)`` of that world
(:data:`GLTF_FROM_WORLD`), which is exactly what Blender's glTF importer undoes; so a run's ``mesh.ply`` and
``mesh.glb`` coincide when both are imported into Blender, the GLB is y-up as glTF requires, and an object's
front faces glTF's ``+Z``. Cameras in files are OpenCV cameras in the same world (``cameras.json``) or their
OpenGL-axes camera-to-world (``transforms.json``, glTF camera nodes).

Colours: images and ``SceneMesh.colors`` are sRGB-encoded in ``[0, 1]``; glTF ``COLOR_0`` is linear by the
spec, so it is converted here (:func:`srgb_to_linear` / :func:`linear_to_srgb`, IEC 61966-2-1); PLY/OBJ keep
sRGB bytes, which is what their readers display.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scenescape.errors import InputError

WORLD_FROM_SCENE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""``(3, 3)`` rotation: Z-up file world from the first camera's OpenCV world (``(x, z, -y)``)."""
WORLD_FROM_OBJECT = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])
"""``(3, 3)`` rotation: Z-up file world from the object frame (up ``-y`` -> ``+Z``, front ``+z`` -> ``-Y``)."""
GLTF_FROM_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""``(3, 3)`` rotation: glTF's y-up axes ``(X, Z, -Y)`` from the Z-up world (the inverse of Blender's import)."""
OPENGL_FROM_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0])
"""Camera axes: OpenGL (x right, y up, z back) from OpenCV (x right, y down, z forward); its own inverse."""

FRAMES = {"scene": WORLD_FROM_SCENE, "object": WORLD_FROM_OBJECT, "world": np.eye(3)}


def frame_rotation(frame: Any) -> np.ndarray:
    """``(3, 3)`` float64 rotation from library coordinates to the Z-up file world.

    ``frame``: ``"scene"`` (OpenCV world of the first camera), ``"object"`` (object frame), ``"world"``
    (already in the file world) or a ``(3, 3)`` rotation.
    """
    if isinstance(frame, str):
        if frame not in FRAMES:
            raise InputError(f"frame must be one of {sorted(FRAMES)} or a 3x3 rotation, got {frame!r}")
        return FRAMES[frame].copy()
    r = np.asarray(frame, dtype=np.float64)
    if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise InputError("frame must be a (3, 3) rotation matrix (orthonormal, det +1)")
    return r


def points_to_world(points: Any, frame: Any = "scene") -> np.ndarray:
    """``(N, 3)`` library coordinates -> ``(N, 3)`` float64 file-world coordinates."""
    return np.asarray(points, dtype=np.float64) @ frame_rotation(frame).T


def points_from_world(points: Any, frame: Any = "scene") -> np.ndarray:
    """Inverse of :func:`points_to_world`."""
    return np.asarray(points, dtype=np.float64) @ frame_rotation(frame)


def w2c_to_world(world_to_camera: Any, frame: Any = "scene") -> np.ndarray:
    """``(4, 4)`` OpenCV ``world_to_camera`` of library coordinates -> the same camera in the file world."""
    m = np.eye(4)
    m[:3, :3] = frame_rotation(frame).T  # library from world
    return np.asarray(world_to_camera, dtype=np.float64) @ m


def w2c_from_world(world_to_camera: Any, frame: Any = "scene") -> np.ndarray:
    """Inverse of :func:`w2c_to_world`."""
    m = np.eye(4)
    m[:3, :3] = frame_rotation(frame)
    return np.asarray(world_to_camera, dtype=np.float64) @ m


def c2w_opengl(world_to_camera: Any) -> np.ndarray:
    """``(4, 4)`` camera-to-world with OpenGL camera axes (nerfstudio, glTF) of an OpenCV ``world_to_camera``."""
    w2c = np.asarray(world_to_camera, dtype=np.float64)
    c2w = np.eye(4)
    c2w[:3, :3] = w2c[:3, :3].T @ OPENGL_FROM_OPENCV_CAMERA
    c2w[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
    return c2w


def srgb_to_linear(c: Any) -> np.ndarray:
    """sRGB-encoded values in ``[0, 1]`` -> linear (IEC 61966-2-1), float64, same shape."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: Any) -> np.ndarray:
    """Linear values in ``[0, 1]`` -> sRGB-encoded (inverse of :func:`srgb_to_linear`), float64."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


WORLD_TAG = "z_up"
"""``cameras.json``'s ``"world"`` value: poses map the Z-up file world (not the library frame) to the camera."""


def cameras_to_file_json(cameras: Any, frame: Any = "scene") -> dict[str, Any]:
    """``cameras.json`` content: ``{"convention": "opencv", "world": "z_up", "frame": ..., "cameras": [...]}``;
    each camera has its intrinsics (pixels, centres at +0.5) and ``world_to_camera`` (OpenCV camera axes) of
    the Z-up file world."""
    from scenescape.geometry.camera import cameras_to_json

    cams = [camera_in_world(c, frame) for c in cameras]
    out = cameras_to_json(cams)
    out["world"] = WORLD_TAG
    out["frame"] = frame if isinstance(frame, str) else "custom"
    return out


def cameras_from_file_json(data: Any, frame: Any = "scene") -> list[Any]:
    """Library cameras of a camera file: files tagged ``"world": "z_up"`` (written by
    :func:`cameras_to_file_json`) are converted back to ``frame``; untagged files are used as they are."""
    from scenescape.geometry.camera import cameras_from_json

    cams = cameras_from_json(data)
    if isinstance(data, dict) and data.get("world") == WORLD_TAG:
        cams = [camera_in_world(c, frame, inverse=True) for c in cams]
    return cams


def camera_in_world(cam: Any, frame: Any = "scene", inverse: bool = False) -> Any:
    """The same camera (intrinsics kept) with its pose in the Z-up file world (or back, ``inverse=True``)."""
    import torch

    from scenescape.geometry.camera import Camera

    w2c = cam.world_to_camera.double().cpu().numpy()
    m = w2c_from_world(w2c, frame) if inverse else w2c_to_world(w2c, frame)
    return Camera(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, torch.from_numpy(m).float())


__all__ = [
    "WORLD_TAG", "camera_in_world", "cameras_from_file_json", "cameras_to_file_json",
    "FRAMES", "GLTF_FROM_WORLD", "OPENGL_FROM_OPENCV_CAMERA", "WORLD_FROM_OBJECT", "WORLD_FROM_SCENE",
    "c2w_opengl", "frame_rotation", "linear_to_srgb", "points_from_world", "points_to_world", "srgb_to_linear",
    "w2c_from_world", "w2c_to_world",
]
