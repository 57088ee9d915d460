"""The layout prior (``depth.name: prior``) against a box room with known geometry, ray cast here.

The room is an independent ground truth: its image is rendered by intersecting camera rays with its six
axis-aligned planes in this file (flat colours per surface, some shading), and the prior sees only the
image and the camera.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scenescape.backends.depth.prior import GeometricPriorDepth
from scenescape.geometry.camera import Camera

# world: x right, y down (floor at y = +H), z forward; the camera at the origin
H, CEIL, LEFT, RIGHT, FAR = 1.5, 1.2, 1.3, 1.7, 9.0
COLOURS = {"floor": (0.55, 0.42, 0.30), "ceiling": (0.92, 0.92, 0.90), "left": (0.70, 0.78, 0.62),
           "right": (0.45, 0.55, 0.72), "far": (0.85, 0.70, 0.55)}


def box_room(size: int = 192, pitch: float = 0.10, yaw: float = 0.08) -> tuple[np.ndarray, np.ndarray, Camera, float]:
    """``(image, z-depth, camera, true horizon row)`` of the box, seen pitched down by ``pitch`` rad."""
    f = 0.9 * size
    target = (math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch))
    cam = Camera(f, f, size / 2, size / 2, size, size, Camera.look_at_pose((0, 0, 0), target))
    c2w = np.linalg.inv(cam.world_to_camera.double().numpy())
    j, i = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    rays_c = np.stack([(j - cam.cx) / cam.fx, (i - cam.cy) / cam.fy, np.ones_like(j)], -1)  # z = 1: t is z-depth
    rays_w = rays_c @ c2w[:3, :3].T
    best = np.full((size, size), np.inf)
    label = np.zeros((size, size), int)
    planes = [("floor", 1, H), ("ceiling", 1, -CEIL), ("left", 0, -LEFT), ("right", 0, RIGHT), ("far", 2, FAR)]
    for k, (_, axis, value) in enumerate(planes):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = value / rays_w[..., axis]
        hit = np.isfinite(t) & (t > 0) & (t < best)
        best[hit] = t[hit]
        label[hit] = k
    image = np.zeros((size, size, 3), np.float32)
    for k, (name, _, _) in enumerate(planes):
        image[label == k] = COLOURS[name]
    shade = 1.0 / (1.0 + 0.04 * best)[..., None]  # darker with distance, still flat per surface
    horizon = cam.cy - cam.fy * math.tan(pitch)  # rows grow downwards: looking down raises the horizon
    return (image * shade).astype(np.float32), best.astype(np.float32), cam, horizon


def _abs_rel(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / true))


@pytest.mark.parametrize("pitch,yaw", [(0.10, 0.08), (-0.06, -0.12), (0.0, 0.0)])
def test_prior_fits_horizon_and_walls_of_a_box_room(pitch, yaw):
    image, depth, cam, horizon = box_room(pitch=pitch, yaw=yaw)
    fitted = GeometricPriorDepth(camera_height=H, wall_distance=FAR)
    est = fitted.estimate(image, cam)
    lay = fitted.layout
    assert lay.vanishing_point is not None
    assert abs(lay.horizon - horizon) < 2.0                        # the camera's pitch, from the lines
    assert lay.left == pytest.approx(LEFT, rel=0.1) and lay.right == pytest.approx(RIGHT, rel=0.1)
    assert lay.ceiling == pytest.approx(CEIL, rel=0.1)
    flat = GeometricPriorDepth(camera_height=H, wall_distance=FAR, estimate=False).estimate(image, cam)
    err, err_flat = _abs_rel(est, depth), _abs_rel(flat, depth)
    assert err < 0.05, err                                          # a box is recovered from its lines
    if pitch or yaw:
        assert err < 0.5 * err_flat, (err, err_flat)


def test_prior_without_lines_is_the_level_layout():
    rng = np.random.default_rng(0)
    image = rng.random((96, 96, 3)).astype(np.float32)  # noise: no straight converging lines
    cam = Camera(90, 90, 48, 48, 96, 96)
    p = GeometricPriorDepth(camera_height=1.5, wall_distance=8.0)
    d = p.estimate(image, cam)
    assert p.layout.vanishing_point is None and p.layout.horizon == 48.0
    level = GeometricPriorDepth(camera_height=1.5, wall_distance=8.0, estimate=False).estimate(image, cam)
    assert np.array_equal(d, level)
    assert d[0, 0] == pytest.approx(8.0) and d[-1, 0] == pytest.approx(1.5 * 90 / 47.5, rel=1e-5)
    with pytest.raises(ValueError, match="max_pitch_deg"):
        GeometricPriorDepth(max_pitch_deg=95)
