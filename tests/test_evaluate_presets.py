"""The `scenescape` preset moves like SceneScape: about 13% of the median depth backward per frame (its
0.0066 per frame is in units of inverse raw DPT-Large disparity, raw values ~20), and the evaluator's
camera-control measure recovers that motion from rendered frames alone."""

import numpy as np
import pytest
import torch

from scenescape.evaluation import default_camera, make_world
from scenescape.evaluation.measures.cameras import camera_control
from scenescape.trajectories import build_trajectory
from scenescape.trajectories.presets import SCENESCAPE_STEP


def test_scenescape_step_is_sceneScapes_motion_as_a_fraction_of_depth():
    # SceneScape: speed = camera_speed_factor 0.035 * 0.1875 per frame, in units of 1 / raw DPT disparity
    speed = 0.035 * 0.1875
    for raw_median_disparity in (20.0,):
        assert SCENESCAPE_STEP == pytest.approx(speed * raw_median_disparity, rel=0.02)
    w = make_world("room")
    cam = default_camera(w, 160, 160, 156.0)
    _, dep = w.render(cam)
    med = float(dep.median())
    cams = build_trajectory("scenescape", cam, 5, scene_scale=med)
    steps = [float((b.center - a.center).norm()) / med for a, b in zip(cams, cams[1:])]
    assert np.allclose(steps, 0.13, rtol=1e-3)
    # backward: the camera moves against its view direction
    view = cams[1].camera_to_world[:3, 2]
    assert float(torch.dot(cams[2].center - cams[1].center, view)) < 0


def test_camera_control_recovers_the_scenescape_motion_from_frames():
    w = make_world("corridor")
    cam = default_camera(w, 160, 160, 156.0)
    _, dep = w.render(cam)
    cams = build_trajectory("scenescape", cam, 5, scene_scale=float(dep.median()))
    assert all(w.inside_free_space(c.center.tolist(), margin=0.1) for c in cams)
    renders = [w.render(c) for c in cams]
    frames = np.stack([r[0].numpy() for r in renders])
    depths = np.stack([r[1].numpy() for r in renders])
    s = camera_control(frames, cams, depths)["summary"]
    assert s["pairs_failed"] == 0 and s["pairs_with_translation"] == 4
    assert s["rotation_error_deg"] < 1.0 and s["translation_error_deg"] < 5.0
