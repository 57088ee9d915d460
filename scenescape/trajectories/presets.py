"""Trajectory presets, registered by name: ``preset(start, n, **params) -> list[Camera]``.

Every preset returns ``n`` cameras whose first one is ``start`` (its intrinsics kept); distances (steps,
radii) are multiplied by ``scene_scale``. A new preset is one function here (or in its own module) plus
the ``@register_preset("name")`` line above it.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.rotations import axis_angle_matrix, camera_from_c2w, camera_to_world

PRESETS: dict[str, Callable[..., list[Camera]]] = {}
"""Registered presets, name -> function."""


def register_preset(name: str) -> Callable[[Callable[..., list[Camera]]], Callable[..., list[Camera]]]:
    """Decorator: register a preset function under ``name`` (used by configs, the CLI and segment files)."""

    def deco(fn: Callable[..., list[Camera]]) -> Callable[..., list[Camera]]:
        if name in PRESETS and PRESETS[name] is not fn:
            raise ValueError(f"trajectory preset '{name}' is registered twice")
        PRESETS[name] = fn
        return fn

    return deco


def get_preset(name: str) -> Callable[..., list[Camera]]:
    """The preset function ``name``; an unknown name is an error naming the nearest preset."""
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise InputError(f"unknown trajectory preset '{name}'.{hint} Available: {', '.join(PRESETS)}; "
                     "or give a trajectory file (trajectory.file, a .json/.yaml path)")


def check_frames(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise InputError(f"frames must be a positive integer, got {n!r}")
    return int(n)


def _yaw_angles(n: int, yaw_step: float, flip_every: int) -> np.ndarray:
    """Cumulative yaw per frame; the increment's sign flips every ``flip_every`` frames."""
    if flip_every < 1:
        raise InputError(f"flip_every must be >= 1, got {flip_every}")
    inc = np.array([yaw_step * (1 if (k // flip_every) % 2 == 0 else -1) for k in range(max(n - 1, 0))])
    return np.concatenate([[0.0], np.cumsum(inc)])


def _walk(start: Camera, n: int, step: float, yaw_step: float, flip_every: int) -> list[Camera]:
    """Move ``step`` along the current view direction per frame while yawing about the start's up axis."""
    c0 = camera_to_world(start)
    down = c0[:3, 1]  # camera y axis (image down) in world: rotating about it by +a turns the view right
    yaws = _yaw_angles(n, yaw_step, flip_every)
    cams = [start]
    centre = c0[:3, 3].copy()
    for k in range(1, n):
        rot = axis_angle_matrix(down, yaws[k]) @ c0[:3, :3]
        centre = centre + step * rot[:, 2]
        cams.append(camera_from_c2w(start, rot, centre))
    return cams


@register_preset("forward")
def forward(start: Camera, n: int, *, step: float = 0.02, scene_scale: float = 1.0) -> list[Camera]:
    """Move forward (along +z of the start camera) by ``step * scene_scale`` per frame."""
    return _walk(start, check_frames(n), step * scene_scale, 0.0, 1)


@register_preset("backward")
def backward(start: Camera, n: int, *, step: float = 0.02, scene_scale: float = 1.0) -> list[Camera]:
    """Zoom out: move backward by ``step * scene_scale`` per frame, orientation fixed."""
    return _walk(start, check_frames(n), -step * scene_scale, 0.0, 1)


@register_preset("scenescape")
def scenescape(start: Camera, n: int, *, step: float = 0.0066, yaw_step: float = 0.03, flip_every: int = 11,
               scene_scale: float = 1.0) -> list[Camera]:
    """SceneScape's default motion: backward ``step * scene_scale`` per frame (along the current view
    direction) and yaw ``yaw_step`` rad per frame, the yaw direction flipping every ``flip_every`` frames."""
    return _walk(start, check_frames(n), -step * scene_scale, yaw_step, int(flip_every))


@register_preset("forward_yaw")
def forward_yaw(start: Camera, n: int, *, step: float = 0.02, yaw_step: float = 0.03, flip_every: int = 11,
                scene_scale: float = 1.0) -> list[Camera]:
    """Forward ``step * scene_scale`` per frame with SceneScape's yaw sweep (``yaw_step``, ``flip_every``)."""
    return _walk(start, check_frames(n), step * scene_scale, yaw_step, int(flip_every))


@register_preset("lateral")
def lateral(start: Camera, n: int, *, step: float = 0.02, direction: float = 1.0,
            scene_scale: float = 1.0) -> list[Camera]:
    """Translate along the start camera's x axis (``direction`` +1 right, -1 left), orientation fixed."""
    n = check_frames(n)
    c0 = camera_to_world(start)
    return [camera_from_c2w(start, c0[:3, :3], c0[:3, 3] + k * step * scene_scale * direction * c0[:3, 0])
            if k else start for k in range(n)]


@register_preset("orbit")
def orbit(start: Camera, n: int, *, radius: float = 1.0, angle_step: float = 0.02,
          scene_scale: float = 1.0) -> list[Camera]:
    """Circle about the point ``radius * scene_scale`` in front of the start camera (about the start's
    vertical axis), ``angle_step`` rad per frame, always looking at that point."""
    n = check_frames(n)
    c0 = camera_to_world(start)
    target = c0[:3, 3] + radius * scene_scale * c0[:3, 2]
    down = c0[:3, 1]
    cams = [start]
    for k in range(1, n):
        r = axis_angle_matrix(down, -k * angle_step)
        cams.append(camera_from_c2w(start, r @ c0[:3, :3], target + r @ (c0[:3, 3] - target)))
    return cams


@register_preset("spiral")
def spiral(start: Camera, n: int, *, step: float = 0.01, radius: float = 0.05, period: float = 24.0,
           scene_scale: float = 1.0) -> list[Camera]:
    """Forward ``step`` per frame while the centre circles the view axis (``radius``, one turn per
    ``period`` frames); orientation fixed. Starts exactly at ``start``."""
    n = check_frames(n)
    if period <= 0:
        raise InputError(f"spiral period must be > 0 frames, got {period}")
    c0 = camera_to_world(start)
    cams = [start]
    for k in range(1, n):
        a = 2 * math.pi * k / period
        off = (k * step * c0[:3, 2] + radius * (math.cos(a) - 1) * c0[:3, 0] - radius * math.sin(a) * c0[:3, 1])
        cams.append(camera_from_c2w(start, c0[:3, :3], c0[:3, 3] + scene_scale * off))
    return cams


def check_params(name: str, fn: Callable[..., Any], params: dict[str, Any]) -> None:
    valid = [p for p in inspect.signature(fn).parameters if p not in ("start", "n")]
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise InputError(f"trajectory preset '{name}' has no parameter '{key}'.{hint} "
                             f"Valid: {', '.join(valid)}")


__all__ = ["PRESETS", "backward", "check_frames", "check_params", "forward", "forward_yaw", "get_preset", "lateral", "orbit",
           "register_preset", "scenescape", "spiral"]
