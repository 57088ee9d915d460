"""Trajectory files (YAML or JSON): preset segments, explicit camera lists, nerfstudio camera paths.

* segments: ``{"segments": [{"preset": "forward", "frames": 10, "params": {"step": 0.05}}, ...]}`` or a
  bare list of such segments; each segment starts where the previous one ended;
* explicit cameras: ``{"cameras": [Camera.to_dict(), ...]}`` or a bare list of camera dicts
  (per-frame intrinsics honoured);
* a nerfstudio camera path (``camera_path.json`` with a ``camera_path`` list) or ``transforms.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera, cameras_from_json, cameras_to_json
from scenescape.io import atomic_write_text, write_json
from scenescape.io.nerfstudio import cameras_from_nerfstudio_path, cameras_from_nerfstudio_transforms
from scenescape.trajectories.config import TrajectoryConfig, looks_like_path
from scenescape.trajectories.presets import check_params, get_preset


def save_cameras(path: str | Path, cameras: Sequence[Camera]) -> None:
    """Write cameras as ``{"convention": "opencv", "cameras": [...]}`` (atomic)."""

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
            fn = get_preset(name)
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
            check_params(name, fn, params)
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

    data = {"segments": [{"preset": s.name, "frames": s.frames, "params": dict(s.params)} for s in segments]}
    if str(path).lower().endswith((".yaml", ".yml")):
        import yaml

        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    else:
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")


__all__ = ["load_cameras", "load_trajectory_file", "looks_like_path", "parse_trajectory_data", "save_cameras",
           "save_trajectory_file"]
