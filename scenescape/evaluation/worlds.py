"""Procedural indoor worlds with exact ground truth at any camera.

A :class:`World` is a closed room (an axis-aligned box seen from inside) holding solid occluders
(boxes, optionally rotated about the vertical axis, and vertical round pillars). Its colour is a smooth
procedural function of the 3D point (a few sinusoids per surface, wavelengths 0.1-0.35 world units, i.e.
features of about 5-20 px at 512x512, fx=500 at 2-6 units), so ground truth has no texture resolution.
Ground-truth RGB and z-depth for ANY camera come from analytic ray casting in torch (ray-box slabs,
ray-cylinder quadratics; nearest hit), vectorised over all pixels.

World coordinates follow the OpenCV convention used everywhere in scenescape: y points down (the floor
is at positive y), the default camera is at the origin looking along +z.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.projection import camera_rays

_EPS = 1e-6


@dataclasses.dataclass
class Box:
    """Solid box: ``centre`` (3,), ``half`` extents (3,), ``yaw`` rotation (rad) about the vertical (y) axis."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float = 0.0

    def rotation(self) -> torch.Tensor:
        """``(3, 3)`` local-to-world rotation (float64)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


@dataclasses.dataclass
class Pillar:
    """Vertical round pillar (infinite along y; the room's floor and ceiling bound it)."""

    x: float
    z: float
    radius: float


@dataclasses.dataclass
class SurfaceStyle:
    """Colour of one surface: ``base`` RGB plus sinusoids ``amp_k * sin(2 pi (dir_k . p) / wavelength_k + phase_k)``."""

    base: np.ndarray        # (3,)
    dirs: np.ndarray        # (K, 3) unit
    wavelengths: np.ndarray  # (K,)
    phases: np.ndarray      # (K,)
    amps: np.ndarray        # (K, 3) per-channel amplitudes


class World:
    """A closed procedural room with occluders; exact RGB-D at any camera.

    Args:
        name: world name (for messages).
        room_lo, room_hi: ``(3,)`` corners of the room's interior (y down: ``room_hi[1]`` is the floor).
        boxes, pillars: occluders.
        seed: colour seed (the geometry does not depend on it).
        start_eye, start_target: the default camera's centre and look-at point.
    """

    def __init__(self, name: str, room_lo: Sequence[float], room_hi: Sequence[float], boxes: Sequence[Box],
                 pillars: Sequence[Pillar], seed: int = 0, start_eye: Sequence[float] = (0.0, 0.0, 0.0),
                 start_target: Sequence[float] = (0.0, 0.0, 1.0), trajectory_step: float = 0.05):
        self.name = name
        self.seed = int(seed)
        self.room_lo = torch.tensor(room_lo, dtype=torch.float64)
        self.room_hi = torch.tensor(room_hi, dtype=torch.float64)
        self.boxes = list(boxes)
        self.pillars = list(pillars)
        self.start_eye = tuple(float(v) for v in start_eye)
        self.start_target = tuple(float(v) for v in start_target)
        self.trajectory_step = float(trajectory_step)
        # Surface ids: 0..5 room faces (-x, +x, -y ceiling, +y floor, -z, +z), then boxes, then pillars.
        self.n_surfaces = 6 + len(self.boxes) + len(self.pillars)
        self.styles = self._make_styles(np.random.default_rng(self.seed))
        self._style_tensors = self._stack_styles()
        self._cache_key: Any = None
        self._cache_val: Any = None

    # ------------------------------------------------------------------ colours
    def _make_styles(self, rng: np.random.Generator) -> list[SurfaceStyle]:
        styles = []
        for _ in range(self.n_surfaces):
            base = rng.uniform(0.25, 0.75, size=3)
            k = 4
            dirs = rng.normal(size=(k, 3))
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            wavelengths = rng.uniform(0.1, 0.35, size=k)
            phases = rng.uniform(0, 2 * np.pi, size=k)
            amps = rng.uniform(0.02, 0.08, size=(k, 3)) * rng.choice([-1.0, 1.0], size=(k, 3))
            styles.append(SurfaceStyle(base, dirs, wavelengths, phases, amps))
        return styles

    def _stack_styles(self) -> dict[str, torch.Tensor]:
        return {
            "base": torch.tensor(np.stack([s.base for s in self.styles]), dtype=torch.float64),
            "dirs": torch.tensor(np.stack([s.dirs for s in self.styles]), dtype=torch.float64),
            "freq": torch.tensor(np.stack([2 * np.pi / s.wavelengths for s in self.styles]), dtype=torch.float64),
            "phase": torch.tensor(np.stack([s.phases for s in self.styles]), dtype=torch.float64),
            "amps": torch.tensor(np.stack([s.amps for s in self.styles]), dtype=torch.float64),
        }

    def colour(self, points: torch.Tensor, surface: torch.Tensor, normals: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 3)`` RGB in [0, 1] of ``points`` ``(N, 3)`` on surfaces ``surface`` ``(N,)`` (ids)."""
        st = {k: v.to(points.device) for k, v in self._style_tensors.items()}
        p = points.double()
        sid = surface.long().clamp(0, self.n_surfaces - 1)
        arg = torch.einsum("nkc,nc->nk", st["dirs"][sid], p) * st["freq"][sid] + st["phase"][sid]
        rgb = st["base"][sid] + torch.einsum("nk,nkc->nc", torch.sin(arg), st["amps"][sid])
        if normals is not None:
            light = torch.tensor([0.3, -0.8, -0.5], dtype=torch.float64, device=p.device)
            light = light / light.norm()
            rgb = rgb * (0.8 + 0.2 * (normals.double() @ light).abs())[:, None]
        return rgb.clamp(0.02, 0.98)

    # ------------------------------------------------------------------ ray casting
    def raycast(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest hit along rays ``origins + t * dirs`` (t > 0).

        Args:
            origins: ``(N, 3)`` or ``(3,)``; dirs: ``(N, 3)`` (need not be unit).

        Returns:
            ``t`` ``(N,)`` float64 (inf where a ray leaves the room: only for origins outside it),
            ``surface`` ``(N,)`` int64 ids, ``normal`` ``(N, 3)`` float64 unit normals.
        """
        d = dirs.double()
        o = origins.double().expand_as(d)
        dev = d.device
        n = d.shape[0]
        safe = torch.where(d.abs() < 1e-15, torch.full_like(d, 1e-15), d)
        inv = 1.0 / safe
        lo, hi = self.room_lo.to(dev), self.room_hi.to(dev)
        # Room interior: exit distance (the far slab of the inside box).
        t_far_axes = torch.where(d > 0, (hi - o) * inv, (lo - o) * inv)
        t_far_axes = torch.where(d.abs() < 1e-15, torch.full_like(t_far_axes, math.inf), t_far_axes)
        t_best, axis = t_far_axes.min(dim=1)
        pos_dir = torch.gather(d, 1, axis[:, None])[:, 0] > 0
        surface = axis * 2 + pos_dir.long()
        normal = torch.zeros(n, 3, dtype=torch.float64, device=dev)
        normal.scatter_(1, axis[:, None], torch.where(pos_dir, -1.0, 1.0).double()[:, None])

        for bi, box in enumerate(self.boxes):
            rot = box.rotation().to(dev)
            c = torch.tensor(box.centre, dtype=torch.float64, device=dev)
            h = torch.tensor(box.half, dtype=torch.float64, device=dev)
            ol = (o - c) @ rot
            dl = d @ rot
            dls = torch.where(dl.abs() < 1e-15, torch.full_like(dl, 1e-15), dl)
            t1 = (-h - ol) / dls
            t2 = (h - ol) / dls
            tmin_axes = torch.minimum(t1, t2)
            tmax = torch.maximum(t1, t2).min(dim=1).values
            tmin, ax = tmin_axes.max(dim=1)
            hit = (tmin <= tmax) & (tmin > _EPS) & (tmin < t_best)
            if hit.any():
                t_best = torch.where(hit, tmin, t_best)
                surface = torch.where(hit, torch.full_like(surface, 6 + bi), surface)
                sgn = -torch.sign(torch.gather(dl, 1, ax[:, None])[:, 0])
                nl = torch.zeros(n, 3, dtype=torch.float64, device=dev)
                nl.scatter_(1, ax[:, None], sgn[:, None])
                normal = torch.where(hit[:, None], nl @ rot.T, normal)

        for pi, pil in enumerate(self.pillars):
            ox, oz = o[:, 0] - pil.x, o[:, 2] - pil.z
            dx, dz = d[:, 0], d[:, 2]
            a = dx * dx + dz * dz
            b = 2 * (ox * dx + oz * dz)
            cc = ox * ox + oz * oz - pil.radius ** 2
            disc = b * b - 4 * a * cc
            ok = (disc >= 0) & (a > 1e-18)
            sq = torch.sqrt(disc.clamp_min(0))
            t = (-b - sq) / (2 * a.clamp_min(1e-18))
            hit = ok & (t > _EPS) & (t < t_best)
            if hit.any():
                t_best = torch.where(hit, t, t_best)
                surface = torch.where(hit, torch.full_like(surface, 6 + len(self.boxes) + pi), surface)
                px, pz = ox + t * dx, oz + t * dz
                nl = torch.stack([px, torch.zeros_like(px), pz], dim=1) / pil.radius
                normal = torch.where(hit[:, None], nl, normal)
        return t_best, surface, normal

    def inside_free_space(self, point: Sequence[float], margin: float = 0.05) -> bool:
        """Whether ``point`` is inside the room and at least ``margin`` away from every occluder."""
        p = torch.tensor(point, dtype=torch.float64)
        if ((p - self.room_lo) < margin).any() or ((self.room_hi - p) < margin).any():
            return False
        for box in self.boxes:
            q = (p - torch.tensor(box.centre, dtype=torch.float64)) @ box.rotation()
            if ((q.abs() - torch.tensor(box.half, dtype=torch.float64)) < margin).all():
                return False
        for pil in self.pillars:
            if math.hypot(float(p[0]) - pil.x, float(p[2]) - pil.z) < pil.radius + margin:
                return False
        return True

    # ------------------------------------------------------------------ rendering
    def render(self, camera: Camera, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground truth at ``camera``: image ``(H, W, 3)`` float32 in [0, 1] and z-depth ``(H, W)`` float32.

        Every pixel sees a surface (the room is closed). The last result is cached (same camera and device).
        """
        key = (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
               tuple(camera.world_to_camera.reshape(-1).tolist()), str(device))
        if key == self._cache_key:
            img, dep = self._cache_val
            return img.clone(), dep.clone()
        out = self.render_full(camera, device)
        val = (out["image"], out["depth"])
        self._cache_key, self._cache_val = key, val
        return val[0].clone(), val[1].clone()

    def render_full(self, camera: Camera, device: Any = None) -> dict[str, torch.Tensor]:
        """``image`` (H,W,3) f32, ``depth`` (H,W) f32 z-depth, ``points`` (H,W,3) f64 world, ``surface``
        (H,W) int64 ids, ``normal`` (H,W,3) f64."""
        h, w = camera.height, camera.width
        rays = camera_rays(camera, device=device).double().reshape(-1, 3)  # z = 1: t is z-depth
        c2w = camera.camera_to_world.double()
        # Rebuild c2w in float64 from the float32 pose for accuracy.
        w2c = camera.world_to_camera.double()
        rot_c2w = w2c[:3, :3].T
        centre = -rot_c2w @ w2c[:3, 3]
        del c2w
        rot_c2w, centre = rot_c2w.to(rays.device), centre.to(rays.device)
        dirs = rays @ rot_c2w.T
        t, sid, normal = self.raycast(centre[None], dirs)
        if not torch.isfinite(t).all():
            raise InputError(f"camera centre {centre.tolist()} is outside world '{self.name}'")
        pts = centre[None] + t[:, None] * dirs
        rgb = self.colour(pts, sid, normal)
        return {
            "image": rgb.reshape(h, w, 3).float(),
            "depth": t.reshape(h, w).float(),
            "points": pts.reshape(h, w, 3),
            "surface": sid.reshape(h, w),
            "normal": normal.reshape(h, w, 3),
        }

    def visible_from(self, points: torch.Tensor, centre: torch.Tensor, rel_tol: float = 1e-4) -> torch.Tensor:
        """``(N,)`` bool: whether each world point ``(N, 3)`` is the first hit seen from ``centre`` ``(3,)``."""
        c = centre.double().to(points.device)
        d = points.double() - c
        t, _, _ = self.raycast(c[None], d)
        return t >= 1.0 - rel_tol

    def __repr__(self) -> str:
        return (f"World({self.name!r}, seed={self.seed}, {len(self.boxes)} boxes, {len(self.pillars)} pillars, "
                f"room {self.room_lo.tolist()} .. {self.room_hi.tolist()})")


def room(seed: int = 0) -> World:
    """A 5 x 2.8 x 10 room; occluders at depths 1.8-5.3 in front of the start camera and behind it."""
    boxes = [
        Box((-1.0, 0.85, 2.2), (0.45, 0.35, 0.35), yaw=0.3),     # crate on the floor
        Box((0.25, 0.7, 4.2), (0.6, 0.5, 0.4), yaw=-0.4),       # table-sized block
        Box((-2.2, -0.5, 3.6), (0.3, 0.15, 0.8)),                # shelf on the left wall
        Box((1.6, 0.6, -2.5), (0.4, 0.6, 0.4)),                  # behind the camera (zoom-out)
        Box((-1.7, 0.8, -1.5), (0.3, 0.4, 0.3), yaw=0.5),        # behind, left
        Box((1.9, -0.2, 5.5), (0.35, 1.4, 0.3)),                 # tall cabinet at the back right
    ]
    pillars = [Pillar(1.1, 3.0, 0.22), Pillar(-0.7, 5.2, 0.3), Pillar(-2.0, 0.8, 0.15)]
    return World("room", (-2.5, -1.6, -4.0), (2.5, 1.2, 6.0), boxes, pillars, seed=seed)


def corridor(seed: int = 0) -> World:
    """A 2 m wide, 18 m long corridor with wall pilasters, floor boxes, a pole and a half-open doorway."""
    boxes = [
        Box((-0.88, -0.15, 2.0), (0.12, 1.25, 0.15)),   # pilasters alternating left/right
        Box((0.88, -0.15, 3.5), (0.12, 1.25, 0.15)),
        Box((-0.88, -0.15, 5.0), (0.12, 1.25, 0.15)),
        Box((0.88, -0.15, 6.5), (0.12, 1.25, 0.15)),
        Box((-0.88, -0.15, 8.0), (0.12, 1.25, 0.15)),
        Box((0.45, 0.85, 4.2), (0.25, 0.25, 0.3), yaw=0.35),   # box on the floor
        Box((-0.55, -0.15, 10.0), (0.45, 1.25, 0.1)),          # doorway: wall on the left half
        Box((0.45, -1.15, 10.0), (0.55, 0.25, 0.1)),           # lintel over the opening
        Box((0.88, -0.15, -1.5), (0.12, 1.25, 0.15)),          # behind the camera
        Box((-0.5, 0.9, -2.5), (0.3, 0.2, 0.3)),
    ]
    pillars = [Pillar(-0.4, 7.0, 0.12)]
    return World("corridor", (-1.0, -1.4, -4.0), (1.0, 1.1, 14.0), boxes, pillars, seed=seed)


WORLDS: dict[str, Callable[[int], World]] = {"room": room, "corridor": corridor}


def make_world(name: str | World, seed: int = 0) -> World:
    """Build world ``name`` (``"room"``, ``"corridor"``); a :class:`World` is returned as is."""
    if isinstance(name, World):
        return name
    if name not in WORLDS:
        import difflib

        close = difflib.get_close_matches(str(name), list(WORLDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise InputError(f"unknown synthetic world '{name}'.{hint} Available: {', '.join(WORLDS)}")
    return WORLDS[name](int(seed))


def default_camera(world: str | World = "room", width: int = 512, height: int = 512, fx: float = 500.0,
                   fy: float | None = None) -> Camera:
    """A start camera inside ``world`` (level, looking down the room), principal point at the centre."""
    w = make_world(world)
    pose = Camera.look_at_pose(w.start_eye, w.start_target)
    return Camera(fx, fy if fy is not None else fx, width / 2, height / 2, width, height, pose)


def suggest_trajectory(world: str | World = "room", kind: str = "forward_yaw", frames: int | None = None,
                       step: float | None = None, reference_frames: int = 24):
    """A :class:`scenescape.trajectories.TrajectoryConfig` that stays inside ``world``'s free space.

    ``kind``: ``"forward_yaw"`` (forward with SceneScape's yaw sweep), ``"forward"``, ``"backward"``
    (zoom out) or ``"scenescape"`` (backward with the yaw sweep). The path is fixed: ``reference_frames``
    steps of ``step`` (default the world's ``trajectory_step``, 0.05 units) with a yaw of 0.03 rad per step
    flipping every 11 steps; ``frames`` (default ``reference_frames``) samples it, so fewer frames take
    proportionally larger steps along the same path.
    """
    from scenescape.trajectories import TrajectoryConfig

    w = make_world(world)
    n = reference_frames if frames is None else int(frames)
    if n < 1:
        raise InputError(f"suggest_trajectory: frames must be >= 1, got {frames}")
    k = reference_frames / n
    s = (w.trajectory_step if step is None else float(step)) * k
    yaw = {"yaw_step": 0.03 * k, "flip_every": max(1, round(11 / k))}
    params = {
        "forward_yaw": {"step": s, **yaw},
        "forward": {"step": s},
        "backward": {"step": s},
        "scenescape": {"step": s, **yaw},
    }
    if kind not in params:
        raise InputError(f"suggest_trajectory: kind must be one of {sorted(params)}, got {kind!r}")
    return TrajectoryConfig(name=kind, params=params[kind], frames=frames)


__all__ = ["WORLDS", "Box", "Pillar", "SurfaceStyle", "World", "corridor", "default_camera", "make_world", "room",
           "suggest_trajectory"]
