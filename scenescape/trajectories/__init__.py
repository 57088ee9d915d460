"""Camera trajectories: presets registered by name, segments and keyframes, trajectory files.

* ``presets``: the presets (``forward``, ``backward``, ``scenescape``, ``forward_yaw``, ``lateral``, ``orbit``,
  ``spiral``; ``keyframes`` in ``keyframes``), each one function plus an ``@register_preset`` line;
* ``config``: :class:`TrajectoryConfig` (a preset and its params, or a file);
* ``files``: trajectory files (segments, explicit cameras, nerfstudio camera paths) and camera lists;
* ``build``: :func:`build_trajectory`, the cameras of any of these.

Rotation maths lives in :mod:`scenescape.geometry.rotations`, nerfstudio files in :mod:`scenescape.io.nerfstudio`.
"""

from scenescape.trajectories import keyframes as _keyframes  # noqa: F401  (registers the keyframes preset)
from scenescape.trajectories.build import TrajectorySpec, build_trajectory, compose_segments, run_preset
from scenescape.trajectories.config import TrajectoryConfig, looks_like_path
from scenescape.trajectories.files import (
    load_cameras,
    load_trajectory_file,
    parse_trajectory_data,
    save_cameras,
    save_trajectory_file,
)
from scenescape.trajectories.keyframes import interpolate_keyframes
from scenescape.trajectories.presets import PRESETS, check_frames, get_preset, register_preset

__all__ = [
    "PRESETS", "TrajectoryConfig", "TrajectorySpec", "build_trajectory", "check_frames", "compose_segments",
    "get_preset", "interpolate_keyframes", "load_cameras", "load_trajectory_file", "looks_like_path",
    "parse_trajectory_data", "register_preset", "run_preset", "save_cameras", "save_trajectory_file",
]
