"""Unprojection and projection with pixel centres at +0.5 and z-depth."""

from __future__ import annotations

from typing import Any

import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


def as_tensor(x: Any, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """numpy / list / tensor -> tensor of ``dtype`` (keeps the tensor's device unless ``device`` is given)."""
    if torch.is_tensor(x):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    import numpy as np

    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def pixel_grid(height: int, width: int, device: Any = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W, 2)`` pixel-centre coordinates ``(u, v)``: ``u = j + 0.5``, ``v = i + 0.5``."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def _ray_axes(camera: Camera, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(W,)`` and ``y`` ``(H,)`` of the z = 1 rays: a ray's x depends on its column only, y on its row
    (the same float32 values as computed on the full pixel grid)."""
    x = (torch.arange(camera.width, device=device, dtype=torch.float32) + 0.5 - camera.cx) / camera.fx
    y = (torch.arange(camera.height, device=device, dtype=torch.float32) + 0.5 - camera.cy) / camera.fy
    return x, y


def camera_rays(camera: Camera, device: Any = None) -> torch.Tensor:
    """``(H, W, 3)`` camera-space ray directions with z = 1 (so ``point = ray * depth``)."""
    x, y = _ray_axes(camera, device)
    rays = torch.empty(camera.height, camera.width, 3, device=device)
    rays[..., 0] = x
    rays[..., 1] = y[:, None]
    rays[..., 2] = 1.0
    return rays


def transform_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a ``(4, 4)`` rigid transform to ``(..., 3)`` points."""
    m = matrix.to(points.device, points.dtype)
    return points @ m[:3, :3].T + m[:3, 3]


def unproject(depth: Any, camera: Camera, world: bool = True) -> torch.Tensor:
    """Lift a z-depth map to 3D points.

    Args:
        depth: ``(H, W)`` z-depth (numpy or torch); H, W must match the camera.
        camera: the camera that saw it.
        world: return world coordinates (default) or camera coordinates.

    Returns:
        ``(H, W, 3)`` float32 points on the depth map's device.
    """
    d = as_tensor(depth)
    if d.shape != (camera.height, camera.width):
        raise InputError(f"depth has shape {tuple(d.shape)}, but the camera is {camera.height}x{camera.width} (H, W)")
    x, y = _ray_axes(camera, d.device)  # point = ray * depth, written per coordinate (no (H, W, 3) ray grid)
    pts = torch.empty(*d.shape, 3, device=d.device)
    torch.mul(x, d, out=pts[..., 0])
    torch.mul(y[:, None], d, out=pts[..., 1])
    pts[..., 2] = d
    if world:
        pts = transform_points(pts, camera.camera_to_world)
    return pts


def world_to_camera_points(points: torch.Tensor, camera: Camera) -> torch.Tensor:
    """``(..., 3)`` world points -> ``(..., 3)`` camera-space points."""
    return transform_points(points, camera.world_to_camera)


def project(points: Any, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points into the image.

    Args:
        points: ``(..., 3)`` world coordinates.

    Returns:
        ``uv``: ``(..., 2)`` continuous pixel coordinates (pixel ``(i, j)`` centre = ``(j + .5, i + .5)``);
        ``z``: ``(...)`` z-depth in the camera (<= 0 means behind the camera; uv is then meaningless).
    """
    p = world_to_camera_points(as_tensor(points), camera)
    z = p[..., 2]
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = camera.fx * p[..., 0] / zs + camera.cx
    v = camera.fy * p[..., 1] / zs + camera.cy
    return torch.stack([u, v], dim=-1), z
