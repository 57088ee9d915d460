"""Geometric layout prior depth (registered as ``"prior"``) for a photo with no depth and no depth model.

A classical single-image layout guess: line segments (OpenCV's LSD) vote for the dominant vanishing
point; its row is the horizon (the camera's pitch) and its column the direction of the room or corridor;
straight lines through it below the horizon bound the floor sideways (side walls). The depth is then
that of a box: a floor ``camera_height`` below the camera, side walls where found, a far wall
``wall_distance`` ahead along the vanishing direction, and optionally a ceiling. See the class docstring
for the limits.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from scenescape.backends.arrays import check_image as _check_image
from scenescape.backends.arrays import to_numpy as _np
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


@dataclasses.dataclass
class Layout:
    """The box a :class:`GeometricPriorDepth` estimate used (camera axes: x right, y down, z forward).

    ``horizon``: image row of the horizon (pixels, centres at +0.5); ``vanishing_point``: ``(u, v)`` of
    the dominant vanishing point or None (then the horizon is the principal point's row and the far wall
    faces the camera); ``support``: summed length in pixels of the segments through it; ``left`` /
    ``right``: distances of the side walls from the camera (None: no side wall found); ``ceiling``: its
    height above the camera (None: none).
    """

    horizon: float
    vanishing_point: tuple[float, float] | None
    support: float
    left: float | None
    right: float | None
    ceiling: float | None = None


def _segments(image: np.ndarray, min_length: float) -> np.ndarray:
    """``(N, 4)`` float64 line segments ``u0, v0, u1, v1`` (pixel coordinates, centres at +0.5)."""
    import cv2

    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
    lines = cv2.createLineSegmentDetector().detect(grey)[0]
    if lines is None:
        return np.zeros((0, 4))
    seg = lines.reshape(-1, 4).astype(np.float64) + 0.5
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    return seg[length >= min_length]


def _inlier_cos(seg: np.ndarray, vp: np.ndarray) -> np.ndarray:
    """|cos| of the angle between each segment and the line from its midpoint to ``vp``."""
    mid = 0.5 * (seg[:, :2] + seg[:, 2:])
    d = seg[:, 2:] - seg[:, :2]
    t = vp[None, :] - mid
    num = np.abs(d[:, 0] * t[:, 1] - d[:, 1] * t[:, 0])
    den = np.hypot(d[:, 0], d[:, 1]) * np.hypot(t[:, 0], t[:, 1]) + 1e-12
    return num / den  # |sin| of the angle; small = the segment points at vp


def vanishing_point(seg: np.ndarray, width: int, height: int, max_angle_deg: float = 1.5, trials: int = 600,
                    seed: int = 0, v_range: tuple[float, float] | None = None) -> tuple[np.ndarray | None, np.ndarray,
                                                                                         float]:
    """The vanishing point most segments point at (RANSAC over pairs, length-weighted votes).

    Near-horizontal and near-vertical segments are left out (they converge far outside the image in a
    level photo and do not fix the horizon). Returns ``(vp (2,) or None, inlier mask (N,), support px)``;
    a candidate must lie within 1.5 image widths of the image centre horizontally and, vertically, inside
    ``v_range`` (default: within one image height of the centre).
    """
    n = seg.shape[0]
    none = (None, np.zeros(n, bool), 0.0)
    if n < 4:
        return none
    d = seg[:, 2:] - seg[:, :2]
    ang = np.degrees(np.arctan2(np.abs(d[:, 1]), np.abs(d[:, 0])))  # 0 = horizontal, 90 = vertical
    oblique = (ang > 8) & (ang < 70)
    idx = np.flatnonzero(oblique)
    if idx.size < 3:
        return none
    length = np.hypot(d[:, 0], d[:, 1])
    # homogeneous lines of the oblique segments
    p0 = np.c_[seg[idx, :2], np.ones(idx.size)]
    p1 = np.c_[seg[idx, 2:], np.ones(idx.size)]
    lines = np.cross(p0, p1)
    rng = np.random.default_rng(seed)
    w = length[idx] / length[idx].sum()
    a = rng.choice(idx.size, size=trials, p=w)
    b = rng.choice(idx.size, size=trials, p=w)
    pts = np.cross(lines[a], lines[b])
    ok = (a != b) & (np.abs(pts[:, 2]) > 1e-9)
    pts = pts[ok, :2] / pts[ok, 2:3]
    lo, hi = v_range if v_range is not None else (-0.5 * height, 1.5 * height)
    near = (np.abs(pts[:, 0] - width / 2) <= 1.5 * width) & (pts[:, 1] >= lo) & (pts[:, 1] <= hi)
    pts = pts[near]
    if pts.shape[0] == 0:
        return none
    sin_max = math.sin(math.radians(max_angle_deg))
    best, best_score = None, 0.0
    sub = seg[idx]
    for vp in pts:
        score = float(length[idx][_inlier_cos(sub, vp) < sin_max].sum())
        if score > best_score:
            best, best_score = vp, score
    if best is None:
        return none
    # refine: least squares intersection of the inlier lines (weighted by length), then re-score
    for _ in range(2):
        inl = _inlier_cos(sub, best) < sin_max
        if inl.sum() < 3:
            break
        ln = lines[inl] / np.linalg.norm(lines[inl, :2], axis=1, keepdims=True)
        wts = length[idx][inl]
        A = ln[:, :2] * wts[:, None]
        rhs = -ln[:, 2] * wts
        sol, *_ = np.linalg.lstsq(A, rhs, rcond=None)
        best = sol
    inliers = np.zeros(n, bool)
    inliers[idx] = _inlier_cos(sub, best) < sin_max
    return best, inliers, float(length[inliers].sum())


class GeometricPriorDepth:
    """A layout prior for a photo with no depth and no depth model: a box fitted to the image's lines.

    Model. The camera stands ``camera_height`` above a horizontal floor with no roll. With
    ``estimate: true`` (default), line segments (LSD) vote for a vanishing point (RANSAC, length-weighted);
    when its support is at least ``min_support`` x the image width in pixels of segments, its row is the
    horizon (fixing the camera's pitch) and its column the horizontal direction of the far wall's normal;
    otherwise the horizon is the principal point's row and the wall faces the camera (the plain
    floor-plus-wall layout). Segments through the vanishing point below the horizon lie on the floor
    (tile lines, skirting, floor-wall junctions): the outermost on each side of the vanishing point sets a
    vertical side wall there when ``side_walls: true``; lines through it above the horizon that meet those
    walls give the ceiling's height (unless ``ceiling_height`` > 0 fixes it). Depth = nearest of floor,
    side walls, ceiling and a far wall at ``wall_distance`` along the vanishing direction.
    Units are those of ``camera_height``: the scale of the scene is a guess either way.

    Limits (what a classical single-image layout cannot know). Objects are not modelled: furniture,
    people and anything standing on the floor become paint on the floor or the walls, so a walkthrough
    shows them flattened. The floor height and the far wall's distance are not measured (only their
    ratio to the horizon matters for the floor's shape). Outdoor scenes, photos looking up or down steeply,
    rolled cameras, curved or cluttered rooms, and images without straight converging lines fall back to
    the level floor-plus-wall layout. Side walls come from the outermost floor lines, which a rug or a
    tiled floor can place too close. Prefer ``--init-depth`` or a depth model (``depth.name: transformers``).
    """

    @dataclasses.dataclass
    class Config:
        camera_height: float = 1.5
        wall_distance: float = 8.0
        ceiling_height: float = 0.0
        """Distance of a ceiling above the camera; 0 = from the lines (with ``side_walls``) or none."""
        estimate: bool = True
        """Fit the horizon, vanishing direction and side walls to the image's line segments."""
        side_walls: bool = True
        """Add side walls at the outermost floor lines through the vanishing point (with ``estimate``)."""
        min_support: float = 0.5
        """Summed segment length (x image width) a vanishing point needs to be used."""
        max_pitch_deg: float = 20.0
        """A horizon implying a steeper camera pitch than this is ignored (level layout)."""

    def __init__(self, config: Config | None = None, **kwargs: Any):
        cfg = config if config is not None else self.Config(**kwargs)
        if cfg.camera_height <= 0 or cfg.wall_distance <= 0 or cfg.ceiling_height < 0:
            raise InputError(
                "prior depth needs camera_height > 0, wall_distance > 0 and ceiling_height >= 0, got "
                f"{cfg.camera_height}, {cfg.wall_distance}, {cfg.ceiling_height}"
            )
        if cfg.min_support < 0 or not 0 < cfg.max_pitch_deg < 90:
            raise InputError(f"prior depth needs min_support >= 0 and 0 < max_pitch_deg < 90, got "
                             f"{cfg.min_support}, {cfg.max_pitch_deg}")
        self.config = cfg
        self.layout: Layout | None = None
        """The layout of the last :meth:`estimate` call."""

    # ------------------------------------------------------------------ layout
    def fit_layout(self, image: np.ndarray, camera: Camera) -> Layout:
        """The box for ``image`` ``(H, W, 3)`` seen by ``camera`` (see the class docstring)."""
        cfg = self.config
        h, w = image.shape[:2]
        level = Layout(float(camera.cy), None, 0.0, None, None)
        if not cfg.estimate:
            return level
        seg = _segments(image, min_length=max(10.0, 0.06 * max(h, w)))
        band = camera.fy * math.tan(math.radians(cfg.max_pitch_deg))
        vp, inl, support = vanishing_point(seg, w, h, v_range=(camera.cy - band, camera.cy + band))
        if vp is None or support < cfg.min_support * w:
            return level
        layout = Layout(float(vp[1]), (float(vp[0]), float(vp[1])), support, None, None)
        if cfg.side_walls:
            layout.left, layout.right = self._side_walls(seg[inl], layout, camera)
            if cfg.ceiling_height == 0:
                layout.ceiling = self._ceiling(seg[inl], layout, camera)
        return layout

    def _ceiling(self, seg: np.ndarray, layout: Layout, camera: Camera) -> float | None:
        """Height above the camera of the wall-ceiling junctions (lines through the vanishing point above
        the horizon, met on the side walls found): the median over their endpoints, or None."""
        down, _, right = self._frame(layout, camera)
        pts = np.concatenate([seg[:, :2], seg[:, 2:]])
        pts = pts[pts[:, 1] < layout.horizon - 2.0]
        if pts.shape[0] < 2:
            return None
        rays = np.c_[(pts[:, 0] - camera.cx) / camera.fx, (pts[:, 1] - camera.cy) / camera.fy, np.ones(len(pts))]
        side = rays @ right
        heights = []
        for dist, sign in ((layout.left, -1.0), (layout.right, 1.0)):
            if dist is None:
                continue
            sel = side * sign > 1e-6
            t = dist / (side[sel] * sign)
            heights.append(-(rays[sel] * t[:, None]) @ down)
        h = np.concatenate(heights) if heights else np.zeros(0)
        h = h[np.isfinite(h) & (h > 0)]
        return float(np.median(h)) if h.size >= 2 else None

    def _frame(self, layout: Layout, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors in camera axes: ``down`` (floor normal), ``fwd`` (horizontal, to the vanishing
        point), ``right`` (horizontal, fwd x down ... pointing to +x)."""
        yh = (layout.horizon - camera.cy) / camera.fy
        down = np.array([0.0, 1.0, -yh])
        down /= np.linalg.norm(down)
        xf = 0.0 if layout.vanishing_point is None else (layout.vanishing_point[0] - camera.cx) / camera.fx
        fwd = np.array([xf, yh, 1.0])
        fwd /= np.linalg.norm(fwd)
        right = np.cross(down, fwd)
        right /= np.linalg.norm(right)
        if right[0] < 0:
            right = -right
        return down, fwd, right

    def _side_walls(self, seg: np.ndarray, layout: Layout, camera: Camera) -> tuple[float | None, float | None]:
        """Lateral distances of the outermost floor lines (endpoints below the horizon) on each side."""
        down, _, right = self._frame(layout, camera)
        pts = np.concatenate([seg[:, :2], seg[:, 2:]])
        pts = pts[pts[:, 1] > layout.horizon + 2.0]
        if pts.shape[0] == 0:
            return None, None
        rays = np.c_[(pts[:, 0] - camera.cx) / camera.fx, (pts[:, 1] - camera.cy) / camera.fy, np.ones(len(pts))]
        t = self.config.camera_height / np.maximum(rays @ down, 1e-9)
        lateral = (rays * t[:, None]) @ right
        ok = np.isfinite(lateral) & (t * np.linalg.norm(rays, axis=1) < 50 * self.config.camera_height)
        lateral = lateral[ok]
        left = lateral[lateral < 0]
        rt = lateral[lateral > 0]
        return (float(-left.min()) if left.size >= 2 else None), (float(rt.max()) if rt.size >= 2 else None)

    # ------------------------------------------------------------------ depth
    def estimate(self, image: Any, camera: Camera, known_depth: Any = None, known_mask: Any = None) -> np.ndarray:
        """``(H, W)`` float32 z-depth of the fitted box layout (see the class docstring)."""
        img = _check_image(image)
        if camera is None:
            raise InputError("the prior depth backend needs the camera (its focal length and principal point)")
        h, w = img.shape[:2]
        if (camera.height, camera.width) != (h, w):
            raise InputError(f"camera is {camera.height}x{camera.width} but the image is {h}x{w} (H, W)")
        cfg = self.config
        layout = self.fit_layout(np.asarray(img, np.float32), camera)
        self.layout = layout
        down, fwd, right = self._frame(layout, camera)
        u = (np.arange(w, dtype=np.float64) + 0.5 - camera.cx) / camera.fx
        v = (np.arange(h, dtype=np.float64) + 0.5 - camera.cy) / camera.fy
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)  # (H, W, 3), z = 1
        depth = np.full((h, w), np.inf)

        def plane(normal: np.ndarray, dist: float) -> None:
            # points p = t * ray with p . normal = dist; t is the z-depth since ray z = 1
            den = rays @ normal
            with np.errstate(divide="ignore", invalid="ignore"):
                t = dist / den
            np.minimum(depth, np.where((den > 1e-9) & (t > 0), t, np.inf), out=depth)

        plane(down, cfg.camera_height)
        plane(fwd, cfg.wall_distance)
        ceiling = cfg.ceiling_height if cfg.ceiling_height > 0 else layout.ceiling
        if ceiling:
            plane(-down, ceiling)
        if layout.left is not None:
            plane(-right, layout.left)
        if layout.right is not None:
            plane(right, layout.right)
        depth = np.where(np.isfinite(depth), depth, cfg.wall_distance)
        if known_depth is not None and known_mask is not None:
            km = _np(known_mask, bool)
            kd = _np(known_depth, np.float64)
            ok = km & np.isfinite(kd) & (kd > 0)
            depth = np.where(ok, kd, depth)
        return depth.astype(np.float32)


__all__ = ["GeometricPriorDepth", "Layout", "vanishing_point"]
