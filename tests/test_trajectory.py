import json
import math

import numpy as np
import pytest
import torch

from scenescape.geometry.camera import Camera
from scenescape.geometry.projection import project
from scenescape.geometry.rotations import slerp_rotation
from scenescape.io.nerfstudio import (
    cameras_from_nerfstudio_path,
    cameras_from_nerfstudio_transforms,
    to_nerfstudio_transforms,
)
from scenescape.trajectories import (
    PRESETS,
    TrajectoryConfig,
    build_trajectory,
    interpolate_keyframes,
    load_trajectory_file,
    save_cameras,
    save_trajectory_file,
)


def _start(w=64, h=48):
    return Camera(60.0, 62.0, w / 2, h / 2, w, h, Camera.look_at_pose((0.1, -0.2, 0.3), (0.5, 0.0, 4.0)))


def _angle(r1, r2):
    r = r1.double().T @ r2.double()
    return math.acos(max(-1.0, min(1.0, (float(torch.trace(r)) - 1) / 2)))


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "keyframes"])
def test_each_preset_gives_n_cameras_starting_at_start(name):
    start = _start()
    cams = build_trajectory(name, start, 13)
    assert len(cams) == 13
    assert cams[0] == start
    assert all((c.fx, c.fy, c.width, c.height) == (start.fx, start.fy, 64, 48) for c in cams)
    steps = [float((a.center - b.center).norm()) for a, b in zip(cams[:-1], cams[1:])]
    turns = [_angle(a.rotation, b.rotation) for a, b in zip(cams[:-1], cams[1:])]
    assert max(steps) + max(turns) > 1e-4, "the camera must move"
    assert max(steps) < 0.1 and max(turns) < 0.05


def test_presets_move_the_right_way_and_scale():
    start = _start()
    fwd = build_trajectory("forward", start, 5, scene_scale=2.0)
    view = start.camera_to_world[:3, 2]
    d = fwd[-1].center - start.center
    assert torch.allclose(d, view * 4 * 0.02 * 2.0, atol=1e-5)
    back = build_trajectory(TrajectoryConfig("backward", {"step": 0.1}), start, 3)
    assert torch.allclose(back[-1].center - start.center, -0.2 * view, atol=1e-5)
    # SceneScape's sweep: yaw grows 0.03/frame for 11 frames, then turns back.
    ss = build_trajectory("scenescape", start, 23)
    yaws = [_angle(start.rotation, c.rotation) for c in ss]
    assert yaws[11] == pytest.approx(0.33, abs=1e-4)
    assert yaws[22] == pytest.approx(0.0, abs=1e-3)  # float32 poses
    # orbit keeps looking at the same point
    orb = build_trajectory("orbit", start, 10, scene_scale=2.0)
    target = start.center + 2.0 * view
    for c in orb:
        uv, z = project(target[None], c)
        assert torch.allclose(uv[0], torch.tensor([c.cx, c.cy]), atol=1e-3)
        assert float(z[0]) == pytest.approx(2.0, rel=1e-4)


def test_unknown_preset_and_param_are_named():
    with pytest.raises(ValueError, match="forward"):
        build_trajectory("forwrd", _start(), 4)
    with pytest.raises(ValueError, match="yaw_step"):
        build_trajectory(TrajectoryConfig("forward_yaw", {"yaw_stp": 0.1}), _start(), 4)


def test_segments_compose_continuously():
    start = _start()
    segs = [TrajectoryConfig("forward", {"step": 0.05}, 5), TrajectoryConfig("lateral", {"step": 0.05}, 4),
            TrajectoryConfig("forward_yaw", {"step": 0.05}, 6)]
    cams = build_trajectory(segs, start)
    assert len(cams) == 15
    assert cams[0] == start
    steps = [float((a.center - b.center).norm()) for a, b in zip(cams[:-1], cams[1:])]
    assert max(steps) == pytest.approx(0.05, abs=1e-4) and min(steps) > 0.04  # no repeated or jumping frame
    # the lateral segment starts where the forward one ended
    view = start.camera_to_world[:3, 2]
    right = start.camera_to_world[:3, 0]
    assert torch.allclose(cams[4].center, start.center + 0.2 * view, atol=1e-5)
    assert torch.allclose(cams[5].center, cams[4].center + 0.05 * right, atol=1e-5)
    assert len(build_trajectory(segs, start, frames=7)) == 7
    as_dicts = [{"preset": g.name, "frames": g.frames, "params": g.params} for g in segs]  # loaded YAML data
    assert build_trajectory(as_dicts, start) == cams
    with pytest.raises(ValueError, match="15 cameras"):
        build_trajectory(segs, start, frames=16)


def test_keyframe_interpolation_continuous_and_exact_at_ends():
    a = Camera(50, 50, 32, 24, 64, 48, Camera.look_at_pose((0, 0, 0), (0, 0, 1)))
    b = Camera(70, 70, 30, 25, 64, 48, Camera.look_at_pose((1, 0.2, 1), (3, 0, 2)))
    c = Camera(60, 60, 32, 24, 64, 48, Camera.look_at_pose((2, 0, 0), (2, 0.5, -3)))
    for mode in ("linear", "catmull_rom"):
        cams = interpolate_keyframes([a, b, c], 41, position=mode)
        assert len(cams) == 41
        assert cams[0] == a and cams[-1] == c
        assert cams[20] == b  # keyframe passed exactly (uniform in keyframe index)
        steps = [float((p.center - q.center).norm()) for p, q in zip(cams[:-1], cams[1:])]
        turns = [_angle(p.rotation, q.rotation) for p, q in zip(cams[:-1], cams[1:])]
        total_turn = _angle(a.rotation, b.rotation) + _angle(b.rotation, c.rotation)
        assert max(steps) < 0.15  # path length ~3 over 40 steps: no jumps
        assert max(turns) < 2.5 * total_turn / 40
        fxs = [p.fx for p in cams]
        assert max(abs(x - y) for x, y in zip(fxs[:-1], fxs[1:])) <= 20 / 20 + 1e-6
    # slerp endpoints exact and midpoint halfway
    r0, r1 = a.rotation.double().numpy(), c.rotation.double().numpy()
    assert np.allclose(slerp_rotation(r0, r1, 0.0), r0) and np.allclose(slerp_rotation(r0, r1, 1.0), r1)
    mid = torch.tensor(slerp_rotation(r0, r1, 0.5))
    assert _angle(torch.tensor(r0), mid) == pytest.approx(_angle(torch.tensor(r0), torch.tensor(r1)) / 2, abs=1e-6)


def test_keyframes_preset_from_eye_target_starts_at_start():
    start = _start()
    cfg = TrajectoryConfig("keyframes", {"keyframes": [{"eye": [1.0, 0.0, 1.0], "target": [1.0, 0.0, 5.0]}],
                                         "interpolation": "linear"})
    cams = build_trajectory(cfg, start, 5)
    assert cams[0] == start
    assert torch.allclose(cams[-1].center, torch.tensor([1.0, 0.0, 1.0]), atol=1e-5)
    assert cams[-1].fx == start.fx


def test_camera_json_round_trip_keeps_per_frame_intrinsics(tmp_path):
    cams = build_trajectory("spiral", _start(), 6)
    cams[3] = Camera(77.0, 78.0, 30.5, 20.25, 64, 48, cams[3].world_to_camera)
    p = tmp_path / "cams.json"
    save_cameras(p, cams)
    back = load_trajectory_file(p)
    assert back == cams
    assert (back[3].fx, back[3].cy) == (77.0, 20.25)
    assert build_trajectory(str(p), _start()) == cams
    assert build_trajectory(TrajectoryConfig(name=str(p)), _start(), 4) == cams[:4]


def test_segment_file_yaml_and_json(tmp_path):
    segs = [TrajectoryConfig("forward", {"step": 0.05}, 3), TrajectoryConfig("orbit", {"angle_step": 0.01}, 4)]
    for suffix in (".yaml", ".json"):
        p = tmp_path / f"traj{suffix}"
        save_trajectory_file(p, segs)
        loaded = load_trajectory_file(p)
        assert loaded == segs
        assert build_trajectory(p, _start()) == build_trajectory(segs, _start())
    (tmp_path / "t.yaml").write_text("- {preset: backward, frames: 4, params: {step: 0.1}}\n")
    assert len(build_trajectory(tmp_path / "t.yaml", _start())) == 4


def test_malformed_files_name_index_and_field(tmp_path):
    good = _start().to_dict()
    bad_pose = dict(good, world_to_camera=[[1, 0, 0], [0, 1, 0]])
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"cameras": [good, good, bad_pose]}))
    with pytest.raises(ValueError, match=r"camera 2.*world_to_camera"):
        load_trajectory_file(p)
    missing = {k: v for k, v in good.items() if k != "fy"}
    p.write_text(json.dumps([good, missing]))
    with pytest.raises(ValueError, match=r"camera 1.*fy"):
        load_trajectory_file(p)
    p.write_text(json.dumps({"segments": [{"preset": "forward", "frames": 2}, {"preset": "orbit", "frames": 0}]}))
    with pytest.raises(ValueError, match=r"segment 1.*frames"):
        load_trajectory_file(p)
    p.write_text(json.dumps({"segments": [{"preset": "forward", "frames": 2, "params": {"stepp": 1}}]}))
    with pytest.raises(ValueError, match=r"segment 0.*'step'"):
        load_trajectory_file(p)
    p.write_text(json.dumps({"camera_path": [{"camera_to_world": list(range(16)), "fov": 50},
                                             {"camera_to_world": [1, 2, 3], "fov": 50}], "render_height": 10,
                             "render_width": 10}))
    with pytest.raises(ValueError, match=r"camera [01]"):
        load_trajectory_file(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_trajectory_file(p)


def test_nerfstudio_camera_path_convention():
    # nerfstudio (OpenGL) camera at the origin with identity camera_to_world looks down world -z, y up.
    data = {"camera_type": "perspective", "render_height": 100, "render_width": 160,
            "camera_path": [{"camera_to_world": np.eye(4).reshape(-1).tolist(), "fov": 60.0, "aspect": 1.6}]}
    (cam,) = cameras_from_nerfstudio_path(data)
    assert (cam.width, cam.height) == (160, 100)
    assert cam.fy == pytest.approx(50 / math.tan(math.radians(30)))
    assert cam.fx == cam.fy and (cam.cx, cam.cy) == (80, 50)
    # The equivalent OpenCV camera looks down world -z: z_cam = -z_world.
    expected = Camera.look_at_pose((0, 0, 0), (0, 0, -1), up=(0, 1, 0))
    assert torch.allclose(cam.world_to_camera, expected, atol=1e-6)
    uv, z = project(torch.tensor([[0.0, 0.0, -5.0], [1.0, 0.0, -5.0], [0.0, 1.0, -5.0]]), cam)
    assert float(z[0]) == pytest.approx(5.0)
    assert torch.allclose(uv[0], torch.tensor([80.0, 50.0]))
    assert float(uv[1, 0]) > 80  # world +x appears on the right
    assert float(uv[2, 1]) < 50  # world +y (OpenGL up) appears above the centre


def test_nerfstudio_transforms_round_trip():
    cams = build_trajectory("orbit", _start(), 4)
    t = to_nerfstudio_transforms(cams, [f"images/{i:04d}.png" for i in range(4)])
    fr = t["frames"][1]
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h", "file_path", "transform_matrix"} <= set(fr)
    m = np.asarray(fr["transform_matrix"])
    # OpenGL camera-to-world: -z column is the OpenCV viewing direction, translation is the centre.
    assert np.allclose(m[:3, 3], cams[1].center.numpy(), atol=1e-6)
    assert np.allclose(-m[:3, 2], cams[1].camera_to_world[:3, 2].numpy(), atol=1e-6)
    assert cameras_from_nerfstudio_transforms(t) == cams
    with pytest.raises(ValueError, match="frame_paths"):
        to_nerfstudio_transforms(cams, ["a.png"])
