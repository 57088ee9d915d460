"""Camera trajectories: presets registered by name, segments and keyframes, trajectory files.
"""

from __future__ import annotations

from scenescape.trajectories.build import (  # noqa: F401
    PRESETS,
    TrajectoryConfig,
    TrajectorySpec,
    _c2w,
    _camera_from_c2w,
    axis_angle_matrix,
    backward,
    build_trajectory,
    camera_path_to_tensor,
    cameras_from_nerfstudio_path,
    cameras_from_nerfstudio_transforms,
    compose_segments,
    forward,
    forward_yaw,
    interpolate_cameras,
    interpolate_keyframes,
    keyframes,
    lateral,
    load_cameras,
    load_trajectory_file,
    looks_like_path,
    matrix_to_quaternion,
    orbit,
    parse_trajectory_data,
    quaternion_to_matrix,
    run_preset,
    save_cameras,
    save_trajectory_file,
    scenescape,
    slerp,
    slerp_rotation,
    spiral,
    to_nerfstudio_transforms,
)

__all__ = ['PRESETS', 'TrajectoryConfig', 'TrajectorySpec', 'axis_angle_matrix', 'backward', 'build_trajectory', 'camera_path_to_tensor', 'cameras_from_nerfstudio_path', 'cameras_from_nerfstudio_transforms', 'compose_segments', 'forward', 'forward_yaw', 'interpolate_cameras', 'interpolate_keyframes', 'keyframes', 'lateral', 'load_cameras', 'load_trajectory_file', 'looks_like_path', 'matrix_to_quaternion', 'orbit', 'parse_trajectory_data', 'quaternion_to_matrix', 'run_preset', 'save_cameras', 'save_trajectory_file', 'scenescape', 'slerp', 'slerp_rotation', 'spiral', 'to_nerfstudio_transforms']
