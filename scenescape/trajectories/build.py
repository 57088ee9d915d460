"""Building a camera list from a trajectory config: a preset, chained preset segments, or a file.

Conventions: OpenCV cameras (x right, y down, z forward) and ``world_to_camera`` poses, as everywhere in
scenescape. Distances are multiplied by ``scene_scale`` (pass the first frame's median depth), so one
trajectory works for a scene of any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.trajectories.config import TrajectoryConfig
from scenescape.trajectories.files import load_trajectory_file, looks_like_path, parse_trajectory_data
from scenescape.trajectories.presets import check_frames, check_params, get_preset


def run_preset(name: str, start: Camera, n: int, params: dict[str, Any] | None = None,
               scene_scale: float | None = None) -> list[Camera]:
    """Call preset ``name`` with ``params`` (validated: unknown keys are errors naming the nearest one).

    ``scene_scale``, when given, is used unless ``params`` sets it.
    """
    fn = get_preset(name)
    params = dict(params or {})
    check_params(name, fn, params)
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
        n = check_frames(seg.frames)
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
        spec: a preset name, a :class:`TrajectoryConfig` (a preset, or a ``file``), a
            path to a trajectory file (a string counts as a path when :func:`looks_like_path` says so) (segments, explicit cameras or a nerfstudio camera path), a list
            of segments or of cameras, or already-loaded file data (dicts as in the file formats).
        start_camera: the first camera of preset trajectories (its intrinsics are kept).
        frames: number of cameras. Required for a single preset; for files and lists it may be
            omitted (all cameras) or be at most the file's count (the first ``frames`` are used).
        scene_scale: multiplies preset distances unless a segment's params set ``scene_scale``.

    Returns:
        ``frames`` cameras (or all of the file's).
    """
    if isinstance(spec, TrajectoryConfig):
        if spec.file:
            return build_trajectory(load_trajectory_file(spec.file), start_camera, frames, scene_scale)
        n = frames if frames is not None else spec.frames
        if n is None:
            raise InputError(f"trajectory '{spec.name}': the number of frames is not set")
        return run_preset(spec.name, start_camera, check_frames(n), spec.params, scene_scale)
    if isinstance(spec, (str, Path)):
        if looks_like_path(spec):
            loaded = load_trajectory_file(spec)
            return build_trajectory(loaded, start_camera, frames, scene_scale)
        if frames is None:
            raise InputError(f"trajectory '{spec}': the number of frames is not set")
        return run_preset(str(spec), start_camera, check_frames(frames), {}, scene_scale)
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
        frames = check_frames(frames)
        if frames > len(cams):
            raise InputError(f"trajectory has {len(cams)} cameras but {frames} frames were requested")
        cams = cams[:frames]
    return list(cams)


__all__ = ["TrajectorySpec", "build_trajectory", "compose_segments", "run_preset"]
