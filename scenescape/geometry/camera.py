"""Pinhole cameras in the OpenCV convention.

Conventions (used everywhere in scenescape):

* camera axes: x right, y down, z forward (OpenCV);
* ``world_to_camera``: ``(4, 4)`` rigid transform, ``X_cam = R @ X_world + t``;
* intrinsics in pixels; pixel ``(row i, col j)`` has its centre at ``u = j + 0.5, v = i + 0.5``,
  so a camera whose principal point is the image centre has ``cx = width / 2``;
* depth is z-depth (the ``z`` of the point in camera coordinates), not ray length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError


def _as_pose(world_to_camera: Any) -> torch.Tensor:
    if world_to_camera is None:
        return torch.eye(4, dtype=torch.float32)
    t = torch.as_tensor(np.asarray(world_to_camera.detach().cpu() if torch.is_tensor(world_to_camera)
                                   else world_to_camera, dtype=np.float64))
    if t.shape != (4, 4):
        raise InputError(f"world_to_camera must be a (4, 4) matrix, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError("world_to_camera contains NaN or infinite values")
    r = t[:3, :3]
    det = torch.linalg.det(r).item()
    if not math.isfinite(det) or abs(det) < 1e-6:
        raise InputError(
            f"world_to_camera is not invertible (det of its rotation = {det:.3g}); "
            "it must be a rigid transform [R t; 0 0 0 1] with R a rotation"
        )
    if not torch.allclose(t[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=t.dtype), atol=1e-6):
        raise InputError(f"world_to_camera's last row must be [0, 0, 0, 1], got {t[3].tolist()}")
    # Re-orthonormalise tiny drift (JSON round trips, interpolation) so poses stay rigid.
    u, _, vh = torch.linalg.svd(r)
    rot = u @ vh
    if torch.linalg.det(rot) < 0:
        raise InputError("world_to_camera's rotation has a reflection (det < 0); use a right-handed rotation")
    if (rot - r).abs().max() > 1e-3:
        raise InputError("world_to_camera's upper-left 3x3 block is not a rotation matrix")
    t = t.clone()
    t[:3, :3] = rot
    return t.to(torch.float32)


@dataclass
class Camera:
    """A pinhole camera: intrinsics in pixels plus an OpenCV ``world_to_camera`` pose.

    Args:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels (pixel centres at +0.5; centre of the image = W/2, H/2).
        width, height: image size in pixels.
        world_to_camera: ``(4, 4)`` array or tensor (default identity).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    world_to_camera: torch.Tensor = field(default_factory=lambda: torch.eye(4))

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise InputError(f"Camera.{name} must be finite, got {v}")
            setattr(self, name, v)
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(f"Camera focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        w, h = int(self.width), int(self.height)
        if w != self.width or h != self.height or w <= 0 or h <= 0:
            raise InputError(f"Camera width and height must be positive integers, got {self.width}x{self.height}")
        self.width, self.height = w, h
        self.world_to_camera = _as_pose(self.world_to_camera)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int, world_to_camera: Any = None,
                 axis: str = "horizontal") -> Camera:
        """Camera with square pixels and centred principal point from a field of view in degrees.

        ``axis`` says which side the field of view spans: ``"horizontal"`` (width) or ``"vertical"``.
        """
        if not 0 < fov_deg < 180:
            raise InputError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        span = width if axis == "horizontal" else height
        f = 0.5 * span / math.tan(math.radians(fov_deg) / 2)
        return cls(f, f, width / 2, height / 2, width, height, world_to_camera)

    @staticmethod
    def look_at_pose(eye: Any, target: Any, up: Any = (0.0, -1.0, 0.0)) -> torch.Tensor:
        """``(4, 4)`` world_to_camera for a camera at ``eye`` looking at ``target``.

        ``up`` is the world direction that should appear up in the image (default -y, the OpenCV
        world convention where y points down).
        """
        eye_t = torch.as_tensor(eye, dtype=torch.float64).reshape(3)
        z = torch.as_tensor(target, dtype=torch.float64).reshape(3) - eye_t
        if z.norm() < 1e-12:
            raise InputError("look_at: eye and target coincide")
        z = z / z.norm()
        upv = torch.as_tensor(up, dtype=torch.float64).reshape(3)
        x = torch.linalg.cross(-upv, z)  # image x = right = down x forward
        if x.norm() < 1e-9:
            raise InputError("look_at: the view direction is parallel to 'up'; choose another up vector")
        x = x / x.norm()
        y = torch.linalg.cross(z, x)
        r = torch.stack([x, y, z])  # rows: camera axes in world coordinates
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = r
        pose[:3, 3] = -r @ eye_t
        return pose.float()

    @classmethod
    def look_at(cls, eye: Any, target: Any, up: Any = (0.0, -1.0, 0.0), *, fov_deg: float = 60.0,
                width: int = 512, height: int = 512) -> Camera:
        return cls.from_fov(fov_deg, width, height, cls.look_at_pose(eye, target, up))

    # ------------------------------------------------------------------ properties
    @property
    def K(self) -> torch.Tensor:  # noqa: N802 - standard name
        """``(3, 3)`` intrinsic matrix (float32)."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def camera_to_world(self) -> torch.Tensor:
        """``(4, 4)`` inverse of ``world_to_camera``."""
        w2c = self.world_to_camera.double()
        inv = torch.eye(4, dtype=torch.float64)
        r = w2c[:3, :3]
        inv[:3, :3] = r.T
        inv[:3, 3] = -r.T @ w2c[:3, 3]
        return inv.float()

    @property
    def center(self) -> torch.Tensor:
        """``(3,)`` camera centre in world coordinates."""
        return self.camera_to_world[:3, 3]

    @property
    def rotation(self) -> torch.Tensor:
        """``(3, 3)`` world-to-camera rotation."""
        return self.world_to_camera[:3, :3]

    @property
    def translation(self) -> torch.Tensor:
        return self.world_to_camera[:3, 3]

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in degrees."""
        return math.degrees(2 * math.atan(self.width / (2 * self.fx)))

    @property
    def fov_y(self) -> float:
        return math.degrees(2 * math.atan(self.height / (2 * self.fy)))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.height, self.width)

    # ------------------------------------------------------------------ copies
    def with_pose(self, world_to_camera: Any) -> Camera:
        return Camera(self.fx, self.fy, self.cx, self.cy, self.width, self.height, world_to_camera)

    def scaled(self, factor: float) -> Camera:
        """Same view at ``factor`` x the resolution (supersampling); the pixel-centre convention is kept.

        A pixel edge at ``u`` maps to ``factor * u``, so ``cx' = factor * cx`` and ``fx' = factor * fx``.
        """
        w, h = round(self.width * factor), round(self.height * factor)
        if abs(w - self.width * factor) > 1e-6 or abs(h - self.height * factor) > 1e-6:
            raise InputError(f"scaled({factor}) does not give an integer image size from {self.width}x{self.height}")
        return Camera(self.fx * factor, self.fy * factor, self.cx * factor, self.cy * factor, w, h,
                      self.world_to_camera.clone())

    def cropped(self, left: int, top: int, width: int, height: int) -> Camera:
        """Camera of a sub-window (or, with negative ``left``/``top``, of a padded canvas)."""
        return Camera(self.fx, self.fy, self.cx - left, self.cy - top, width, height, self.world_to_camera.clone())

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
            "width": self.width, "height": self.height,
            "world_to_camera": self.world_to_camera.double().tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Camera:
        """Inverse of :meth:`to_dict`; errors name the missing or bad field."""
        if not isinstance(d, dict):
            raise InputError(f"a camera must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("fx", "fy", "cx", "cy", "width", "height", "world_to_camera") if k not in d]
        if missing:
            raise InputError(f"camera is missing field(s) {missing}")
        unknown = sorted(set(d) - {"fx", "fy", "cx", "cy", "width", "height", "world_to_camera"})
        if unknown:
            raise InputError(f"camera has unknown field(s) {unknown}")
        try:
            pose = np.asarray(d["world_to_camera"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"camera world_to_camera is not a 4x4 numeric matrix: {e}") from e
        return cls(d["fx"], d["fy"], d["cx"], d["cy"], d["width"], d["height"], pose)

    def to(self, device: Any) -> Camera:
        """Cameras hold small CPU tensors; this returns ``self`` for API symmetry with tensors."""
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            (self.fx, self.fy, self.cx, self.cy, self.width, self.height)
            == (other.fx, other.fy, other.cx, other.cy, other.width, other.height)
            and torch.allclose(self.world_to_camera, other.world_to_camera, atol=1e-6)
        )

    def __repr__(self) -> str:
        c = self.center.tolist()
        return (f"Camera(fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, cy={self.cy:.2f}, "
                f"{self.width}x{self.height}, centre=({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}))")


def cameras_to_json(cameras: list[Camera]) -> dict[str, Any]:
    """Serialise a camera list (``{"cameras": [...]}``; per-frame intrinsics and pose)."""
    return {"convention": "opencv", "cameras": [c.to_dict() for c in cameras]}


def cameras_from_json(data: Any) -> list[Camera]:
    """Parse ``{"cameras": [...]}`` or a bare list; errors name the camera index."""
    items = data.get("cameras") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise InputError("camera file must hold a non-empty list of cameras (or {'cameras': [...]})")
    out = []
    for i, d in enumerate(items):
        try:
            out.append(Camera.from_dict(d))
        except ValueError as e:
            raise InputError(f"camera {i}: {e}") from e
    return out
