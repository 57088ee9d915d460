"""Camera trajectories: presets, segments, keyframe interpolation, camera files, nerfstudio I/O.

Conventions: OpenCV cameras (x right, y down, z forward) and ``world_to_camera`` poses, as everywhere in
scenescape. Every preset is a function ``preset(start, n, **params) -> list[Camera]`` returning ``n``
cameras whose first one is ``start``; the intrinsics of ``start`` are kept. Distances (steps, radii) are
multiplied by ``scene_scale`` (default 1), so one trajectory works for a scene of any size: pass the
typical depth of the first frame (e.g. its median) as ``scene_scale``.

Presets (``PRESETS``):

* ``forward``      move along the view direction by ``step`` per frame.
* ``backward``     zoom out: move against the view direction by ``step`` per frame.
* ``scenescape``   SceneScape's default: backward ``step=0.0066`` per frame while yawing ``yaw_step=0.03``
  rad per frame, the yaw direction flipping every ``flip_every=11`` frames (a ~20 degree sweep).
* ``forward_yaw``  forward with the same yaw sweep.
* ``lateral``      move sideways along the camera's x axis (``direction=+1`` right, ``-1`` left).
* ``orbit``        circle around a point ``radius`` in front of the start camera, always looking at it.
* ``spiral``       forward while the centre circles around the view axis (radius ``radius``, ``period`` frames).
* ``keyframes``    interpolate through explicit keyframe cameras (slerp rotations; linear or
  Catmull-Rom positions; intrinsics linear).

Files (:func:`load_trajectory_file`, YAML or JSON):

* segments: ``{"segments": [{"preset": "forward", "frames": 10, "params": {"step": 0.05}}, ...]}`` or a
  bare list of such segments; each segment starts where the previous one ended;
* explicit cameras: ``{"cameras": [Camera.to_dict(), ...]}`` or a bare list of camera dicts
  (per-frame intrinsics honoured);
* a nerfstudio camera path (``camera_path.json`` with a ``camera_path`` list).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera, cameras_from_json, cameras_to_json

# OpenGL camera axes (x right, y up, z back) <-> OpenCV (x right, y down, z forward): flip y and z.
_GL_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------------------------- math
def _c2w(cam: Camera) -> np.ndarray:
    """``(4, 4)`` float64 camera-to-world of ``cam``."""
    w2c = cam.world_to_camera.double().numpy()
    out = np.eye(4)
    out[:3, :3] = w2c[:3, :3].T
    out[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
    return out


def _camera_from_c2w(template: Camera, rot_c2w: np.ndarray, centre: np.ndarray, **intr: Any) -> Camera:
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
    ca, cb = _c2w(a), _c2w(b)
    rot = slerp_rotation(ca[:3, :3], cb[:3, :3], t)
    centre = (1 - t) * ca[:3, 3] + t * cb[:3, 3]
    intr = {k: (1 - t) * getattr(a, k) + t * getattr(b, k) for k in ("fx", "fy", "cx", "cy")}
    return _camera_from_c2w(a, rot, centre, **intr)


# ---------------------------------------------------------------------------------------------- presets
def _check_n(n: int) -> int:
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
    c0 = _c2w(start)
    down = c0[:3, 1]  # camera y axis (image down) in world: rotating about it by +a turns the view right
    yaws = _yaw_angles(n, yaw_step, flip_every)
    cams = [start]
    centre = c0[:3, 3].copy()
    for k in range(1, n):
        rot = axis_angle_matrix(down, yaws[k]) @ c0[:3, :3]
        centre = centre + step * rot[:, 2]
        cams.append(_camera_from_c2w(start, rot, centre))
    return cams


def forward(start: Camera, n: int, *, step: float = 0.02, scene_scale: float = 1.0) -> list[Camera]:
    """Move forward (along +z of the start camera) by ``step * scene_scale`` per frame."""
    return _walk(start, _check_n(n), step * scene_scale, 0.0, 1)


def backward(start: Camera, n: int, *, step: float = 0.02, scene_scale: float = 1.0) -> list[Camera]:
    """Zoom out: move backward by ``step * scene_scale`` per frame, orientation fixed."""
    return _walk(start, _check_n(n), -step * scene_scale, 0.0, 1)


def scenescape(start: Camera, n: int, *, step: float = 0.0066, yaw_step: float = 0.03, flip_every: int = 11,
               scene_scale: float = 1.0) -> list[Camera]:
    """SceneScape's default motion: backward ``step * scene_scale`` per frame (along the current view
    direction) and yaw ``yaw_step`` rad per frame, the yaw direction flipping every ``flip_every`` frames."""
    return _walk(start, _check_n(n), -step * scene_scale, yaw_step, int(flip_every))


def forward_yaw(start: Camera, n: int, *, step: float = 0.02, yaw_step: float = 0.03, flip_every: int = 11,
                scene_scale: float = 1.0) -> list[Camera]:
    """Forward ``step * scene_scale`` per frame with SceneScape's yaw sweep (``yaw_step``, ``flip_every``)."""
    return _walk(start, _check_n(n), step * scene_scale, yaw_step, int(flip_every))


def lateral(start: Camera, n: int, *, step: float = 0.02, direction: float = 1.0,
            scene_scale: float = 1.0) -> list[Camera]:
    """Translate along the start camera's x axis (``direction`` +1 right, -1 left), orientation fixed."""
    n = _check_n(n)
    c0 = _c2w(start)
    return [_camera_from_c2w(start, c0[:3, :3], c0[:3, 3] + k * step * scene_scale * direction * c0[:3, 0])
            if k else start for k in range(n)]


def orbit(start: Camera, n: int, *, radius: float = 1.0, angle_step: float = 0.02,
          scene_scale: float = 1.0) -> list[Camera]:
    """Circle about the point ``radius * scene_scale`` in front of the start camera (about the start's
    vertical axis), ``angle_step`` rad per frame, always looking at that point."""
    n = _check_n(n)
    c0 = _c2w(start)
    target = c0[:3, 3] + radius * scene_scale * c0[:3, 2]
    down = c0[:3, 1]
    cams = [start]
    for k in range(1, n):
        r = axis_angle_matrix(down, -k * angle_step)
        cams.append(_camera_from_c2w(start, r @ c0[:3, :3], target + r @ (c0[:3, 3] - target)))
    return cams


def spiral(start: Camera, n: int, *, step: float = 0.01, radius: float = 0.05, period: float = 24.0,
           scene_scale: float = 1.0) -> list[Camera]:
    """Forward ``step`` per frame while the centre circles the view axis (``radius``, one turn per
    ``period`` frames); orientation fixed. Starts exactly at ``start``."""
    n = _check_n(n)
    if period <= 0:
        raise InputError(f"spiral period must be > 0 frames, got {period}")
    c0 = _c2w(start)
    cams = [start]
    for k in range(1, n):
        a = 2 * math.pi * k / period
        off = (k * step * c0[:3, 2] + radius * (math.cos(a) - 1) * c0[:3, 0] - radius * math.sin(a) * c0[:3, 1])
        cams.append(_camera_from_c2w(start, c0[:3, :3], c0[:3, 3] + scene_scale * off))
    return cams


def _catmull_rom(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, t: float) -> np.ndarray:
    t2, t3 = t * t, t * t * t
    return 0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)


def interpolate_keyframes(keyframes: Sequence[Camera], n: int, position: str = "catmull_rom") -> list[Camera]:
    """``n`` cameras through ``keyframes`` (first and last exact), uniform in keyframe index.

    Rotations are slerped between consecutive keyframes; positions are linear or uniform Catmull-Rom
    (``position``: ``"linear"`` | ``"catmull_rom"``); intrinsics are interpolated linearly. All keyframes must
    share one image size.
    """
    n = _check_n(n)
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
    c2ws = [_c2w(k) for k in keys]
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
        out.append(_camera_from_c2w(a, rot, p, **intr))
    return out


def keyframes(start: Camera, n: int, *, keyframes: Sequence[Any] = (), interpolation: str = "catmull_rom",
              scene_scale: float = 1.0) -> list[Camera]:
    """Interpolate from ``start`` through ``keyframes`` (Camera objects, camera dicts, or
    ``{"eye": [x, y, z], "target": [x, y, z], "up": [..]}`` with ``start``'s intrinsics). ``start`` is
    prepended unless the first keyframe equals it. ``scene_scale`` is ignored (positions are absolute)."""
    n = _check_n(n)
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


PRESETS: dict[str, Callable[..., list[Camera]]] = {
    "forward": forward,
    "backward": backward,
    "scenescape": scenescape,
    "forward_yaw": forward_yaw,
    "lateral": lateral,
    "orbit": orbit,
    "spiral": spiral,
    "keyframes": keyframes,
}


# ---------------------------------------------------------------------------------------------- config
@dataclasses.dataclass
class TrajectoryConfig:
    """One trajectory segment: a preset ``name`` (or a trajectory file path), its ``params``, and
    optionally its own number of ``frames`` (inside segment lists; otherwise the caller's count is used).
    """

    name: str = "scenescape"
    params: dict = dataclasses.field(default_factory=dict)
    frames: int | None = None


def _preset(name: str) -> Callable[..., list[Camera]]:
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise InputError(f"unknown trajectory preset '{name}'.{hint} Available: {', '.join(PRESETS)}; "
                     "or give a trajectory file (.json/.yaml)")


def _check_params(name: str, fn: Callable[..., Any], params: dict[str, Any]) -> None:
    valid = [p for p in inspect.signature(fn).parameters if p not in ("start", "n")]
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise InputError(f"trajectory preset '{name}' has no parameter '{key}'.{hint} "
                             f"Valid: {', '.join(valid)}")


def run_preset(name: str, start: Camera, n: int, params: dict[str, Any] | None = None,
               scene_scale: float | None = None) -> list[Camera]:
    """Call preset ``name`` with ``params`` (validated: unknown keys are errors naming the nearest one).

    ``scene_scale``, when given, is used unless ``params`` sets it.
    """
    fn = _preset(name)
    params = dict(params or {})
    _check_params(name, fn, params)
    if scene_scale is not None and "scene_scale" not in params:
        params["scene_scale"] = scene_scale
    for k, v in params.items():
        if k not in ("keyframes", "interpolation") and not isinstance(v, (int, float)):
            raise InputError(f"trajectory preset '{name}': parameter '{k}' must be a number, got {v!r}")
    return fn(start, n, **params)


def compose_segments(segments: Sequence[TrajectoryConfig], start: Camera,
                     scene_scale: float | None = None) -> list[Camera]:
    """Chain preset segments: each starts where the previous ended (that camera is not repeated).

    The first segment contributes ``frames`` cameras starting with ``start``; later ones contribute
    ``frames`` new cameras each.
    """
    cams: list[Camera] = []
    current = start
    for i, seg in enumerate(segments):
        if seg.frames is None:
            raise InputError(f"segment {i} ('{seg.name}'): missing 'frames'")
        n = _check_n(seg.frames)
        try:
            part = run_preset(seg.name, current, n + (1 if i else 0), seg.params, scene_scale)
        except ValueError as e:
            raise InputError(f"segment {i} ('{seg.name}'): {e}") from e
        part = part[1:] if i else part
        cams.extend(part)
        current = cams[-1]
    return cams


TrajectorySpec = str | Path | TrajectoryConfig | Sequence[TrajectoryConfig] | Sequence[Camera]


def build_trajectory(spec: TrajectorySpec, start_camera: Camera, frames: int | None = None,
                     scene_scale: float | None = None) -> list[Camera]:
    """Cameras for a trajectory.

    Args:
        spec: a preset name, a :class:`TrajectoryConfig` (whose ``name`` may also be a file path), a
            path to a trajectory file (segments, explicit cameras or a nerfstudio camera path), a list
            of segments or of cameras, or already-loaded file data (dicts as in the file formats).
        start_camera: the first camera of preset trajectories (its intrinsics are kept).
        frames: number of cameras. Required for a single preset; for files and lists it may be
            omitted (all cameras) or be at most the file's count (the first ``frames`` are used).
        scene_scale: multiplies preset distances unless a segment's params set ``scene_scale``.

    Returns:
        ``frames`` cameras (or all of the file's).
    """
    if isinstance(spec, TrajectoryConfig):
        if looks_like_path(spec.name):
            if spec.params:
                raise InputError(f"trajectory file '{spec.name}' takes no params (got {sorted(spec.params)})")
            return build_trajectory(spec.name, start_camera, frames, scene_scale)
        n = frames if frames is not None else spec.frames
        if n is None:
            raise InputError(f"trajectory '{spec.name}': the number of frames is not set")
        return run_preset(spec.name, start_camera, _check_n(n), spec.params, scene_scale)
    if isinstance(spec, (str, Path)):
        if looks_like_path(spec):
            loaded = load_trajectory_file(spec)
            return build_trajectory(loaded, start_camera, frames, scene_scale)
        if frames is None:
            raise InputError(f"trajectory '{spec}': the number of frames is not set")
        return run_preset(str(spec), start_camera, _check_n(frames), {}, scene_scale)
    if isinstance(spec, dict):
        return build_trajectory(parse_trajectory_data(spec), start_camera, frames, scene_scale)
    items = list(spec)
    if not items:
        raise InputError("trajectory: empty list of segments/cameras")
    if all(isinstance(c, dict) for c in items):
        return build_trajectory(parse_trajectory_data(items), start_camera, frames, scene_scale)
    if all(isinstance(c, Camera) for c in items):
        cams = items
    elif all(isinstance(s, TrajectoryConfig) for s in items):
        cams = compose_segments(items, start_camera, scene_scale)
    else:
        raise InputError("trajectory list must hold only Camera objects or only TrajectoryConfig segments")
    if frames is not None:
        frames = _check_n(frames)
        if frames > len(cams):
            raise InputError(f"trajectory has {len(cams)} cameras but {frames} frames were requested")
        cams = cams[:frames]
    return list(cams)


def looks_like_path(s: Any) -> bool:
    """Whether a trajectory name is meant as a file (``.json``/``.yaml``/``.yml`` suffix, a ``/``, or an
    existing file) rather than a preset name."""
    s = str(s)
    return s.lower().endswith((".json", ".yaml", ".yml")) or "/" in s or Path(s).is_file()




# ---------------------------------------------------------------------------------------------- files
def save_cameras(path: str | Path, cameras: Sequence[Camera]) -> None:
    """Write cameras as ``{"convention": "opencv", "cameras": [...]}`` (atomic)."""
    from scenescape.io import write_json

    write_json(path, cameras_to_json(list(cameras)))


def load_cameras(path: str | Path) -> list[Camera]:
    """Read an explicit camera list file; errors name the camera index and field."""
    out = load_trajectory_file(path)
    if not all(isinstance(c, Camera) for c in out):
        raise InputError(f"'{path}' holds trajectory segments, not explicit cameras")
    return out  # type: ignore[return-value]


def _read_data(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"trajectory file '{path}' does not exist")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"trajectory file '{path}' is not valid YAML: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"trajectory file '{path}' is not valid JSON: {e}") from e


def parse_trajectory_data(data: Any) -> list[Camera] | list[TrajectoryConfig]:
    """Interpret loaded JSON/YAML data (see :func:`load_trajectory_file`)."""
    if isinstance(data, dict) and "camera_path" in data:
        return cameras_from_nerfstudio_path(data)
    if isinstance(data, dict) and "frames" in data and "segments" not in data and isinstance(data["frames"], list):
        return cameras_from_nerfstudio_transforms(data)
    if isinstance(data, dict) and "cameras" in data:
        return cameras_from_json(data)
    if isinstance(data, dict) and "segments" in data:
        unknown = sorted(set(data) - {"segments"})
        if unknown:
            raise InputError(f"trajectory has unknown top-level field(s) {unknown}; expected 'segments'")
        return _parse_segments(data["segments"])
    if isinstance(data, list) and data:
        if all(isinstance(d, dict) and ("preset" in d or "name" in d) for d in data):
            return _parse_segments(data)
        return cameras_from_json(data)
    raise InputError("a trajectory file must hold {'segments': [...]}, {'cameras': [...]}, a nerfstudio "
                     "camera path ({'camera_path': [...]}) or a non-empty list of segments or cameras")


def _parse_segments(items: Any) -> list[TrajectoryConfig]:
    if not isinstance(items, list) or not items:
        raise InputError("'segments' must be a non-empty list of {preset, frames, params}")
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise InputError(f"segment {i}: expected a mapping {{preset, frames, params}}, got {d!r}")
        unknown = sorted(set(d) - {"preset", "name", "frames", "params"})
        if unknown:
            raise InputError(f"segment {i}: unknown field(s) {unknown}; valid: preset, frames, params")
        name = d.get("preset", d.get("name"))
        if not isinstance(name, str):
            raise InputError(f"segment {i}: field 'preset' must be a preset name, got {name!r}")
        try:
            fn = _preset(name)
        except ValueError as e:
            raise InputError(f"segment {i}: {e}") from e
        if "frames" not in d:
            raise InputError(f"segment {i}: missing field 'frames'")
        frames = d["frames"]
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise InputError(f"segment {i}: field 'frames' must be a positive integer, got {frames!r}")
        params = d.get("params") or {}
        if not isinstance(params, dict):
            raise InputError(f"segment {i}: field 'params' must be a mapping, got {params!r}")
        try:
            _check_params(name, fn, params)
        except ValueError as e:
            raise InputError(f"segment {i}: {e}") from e
        out.append(TrajectoryConfig(name=name, params=dict(params), frames=frames))
    return out


def load_trajectory_file(path: str | Path) -> list[Camera] | list[TrajectoryConfig]:
    """Load a trajectory file (``.json``, ``.yaml``/``.yml``).

    Returns explicit cameras (camera list files, nerfstudio camera paths or transforms) or a list of
    :class:`TrajectoryConfig` segments (pass either to :func:`build_trajectory`). Malformed input raises
    ``ValueError`` naming the file and the camera/segment index and field.
    """
    path = Path(path)
    data = _read_data(path)
    try:
        return parse_trajectory_data(data)
    except ValueError as e:
        raise InputError(f"trajectory file '{path}': {e}") from e


def save_trajectory_file(path: str | Path, segments: Sequence[TrajectoryConfig]) -> None:
    """Write segments as ``{"segments": [{preset, frames, params}]}`` (YAML by suffix, else JSON)."""
    from scenescape.io import atomic_write_text

    data = {"segments": [{"preset": s.name, "frames": s.frames, "params": dict(s.params)} for s in segments]}
    if str(path).lower().endswith((".yaml", ".yml")):
        import yaml

        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    else:
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- nerfstudio
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
    c2w_cv = c2w_gl @ _GL_FLIP
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
        data = _read_data(Path(data))
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
        c2w_gl = _c2w(c) @ _GL_FLIP
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


__all__ = [
    "PRESETS", "TrajectoryConfig", "build_trajectory", "looks_like_path", "compose_segments", "run_preset",
    "forward", "backward", "scenescape", "forward_yaw", "lateral", "orbit", "spiral", "keyframes",
    "interpolate_keyframes", "interpolate_cameras", "slerp", "slerp_rotation", "matrix_to_quaternion",
    "quaternion_to_matrix", "axis_angle_matrix", "load_trajectory_file", "parse_trajectory_data",
    "save_trajectory_file", "save_cameras", "load_cameras", "cameras_from_nerfstudio_path",
    "cameras_from_nerfstudio_transforms", "to_nerfstudio_transforms", "camera_path_to_tensor",
]
