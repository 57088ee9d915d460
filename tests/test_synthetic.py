import math

import numpy as np
import pytest
import torch

from scenescape.backends import DEPTH, INPAINTERS, DepthEstimator, Inpainter, build_backend
from scenescape.config import ConfigError
from scenescape.evaluation import (
    WORLDS,
    Box,
    OracleDepth,
    OracleInpainter,
    Pillar,
    World,
    default_camera,
    make_world,
    seen_mask,
    suggest_trajectory,
)
from scenescape.geometry.camera import Camera
from scenescape.trajectories import build_trajectory


def test_gt_depth_of_a_slanted_wall_is_analytic_z_depth():
    w = make_world("room")
    # Near the back wall (z = -4), looking at it obliquely (yawed ~25 degrees, pitched a little):
    eye = np.array([0.3, -0.1, -3.2])
    target = eye + np.array([math.tan(math.radians(25)), 0.1, -1.0])
    cam = Camera(40.0, 42.0, 31.0, 25.5, 64, 48, Camera.look_at_pose(eye, target))
    out = w.render_full(cam)
    assert (out["surface"] == 4).all(), "every pixel should see the back wall (-z face)"
    # independent analytic z-depth: intersect each pixel ray with the plane z = -4
    w2c = cam.world_to_camera.double().numpy()
    r, t = w2c[:3, :3], w2c[:3, 3]
    centre = -r.T @ t
    jj, ii = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
    d_cam = np.stack([(jj - cam.cx) / cam.fx, (ii - cam.cy) / cam.fy, np.ones_like(jj)], -1)
    d_world = d_cam @ r  # rows: R^T d
    z_depth = (-4.0 - centre[2]) / d_world[..., 2]
    assert np.allclose(out["depth"].numpy(), z_depth, rtol=1e-6)
    assert not np.allclose(z_depth, z_depth.mean(), rtol=1e-2)  # slanted: depth really varies
    # the 3D points lie on the wall
    assert torch.allclose(out["points"][..., 2], torch.full((48, 64), -4.0, dtype=torch.float64), atol=1e-9)


def test_raycast_box_rotated_box_and_pillar():
    w = World("t", (-5, -5, -5), (5, 5, 10), [Box((0, 0, 3), (0.5, 0.5, 0.5)), Box((3, 0, 0), (0.5, 1, 0.5), yaw=math.pi / 4)],
              [Pillar(-2.0, 3.0, 0.3)])
    o = torch.zeros(1, 3, dtype=torch.float64)
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [-2.0, 0.0, 3.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    t, sid, normal = w.raycast(o, dirs)
    assert float(t[0]) == pytest.approx(2.5) and int(sid[0]) == 6
    assert torch.allclose(normal[0], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    # rotated 45 degrees about y: the near corner edge is at x = 3 - 0.5 * sqrt(2)
    assert float(t[1]) == pytest.approx(3 - 0.5 * math.sqrt(2)) and int(sid[1]) == 7
    # pillar: ray towards its axis hits at (|axis| - r) along the unit ray
    assert float(t[2] * dirs[2].norm()) == pytest.approx(math.sqrt(13) - 0.3) and int(sid[2]) == 8
    assert float(t[3]) == pytest.approx(5.0) and int(sid[3]) == 3  # floor (+y face)


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_render_is_deterministic_and_seed_only_changes_colour(name):
    cam = default_camera(name, 48, 40, 45.0)
    a_img, a_dep = make_world(name, 3).render(cam)
    b_img, b_dep = make_world(name, 3).render(cam)
    assert torch.equal(a_img, b_img) and torch.equal(a_dep, b_dep)
    w = make_world(name, 3)
    w.render(cam)
    c_img, _ = w.render(cam)  # cached copy must not alias
    c_img[:] = 0
    assert torch.equal(w.render(cam)[0], a_img)
    o_img, o_dep = make_world(name, 4).render(cam)
    assert torch.equal(o_dep, a_dep) and not torch.equal(o_img, a_img)
    assert a_img.shape == (40, 48, 3) and a_img.dtype == torch.float32
    assert float(a_img.min()) >= 0 and float(a_img.max()) <= 1 and float(a_dep.min()) > 0.5


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_worlds_have_occluders_at_several_depths_and_texture(name):
    w = make_world(name)
    out = w.render_full(default_camera(name, 128, 128, 125.0))
    occ = out["surface"] >= 6
    depths = out["depth"][occ]
    assert occ.float().mean() > 0.05
    assert float(depths.max()) / float(depths.min()) > 2.0  # near and far occluders
    assert len(torch.unique(out["surface"])) >= 8
    # smooth but textured: neighbouring pixels differ a little, the image a lot
    img = out["image"]
    assert float(img.std()) > 0.08
    same = out["surface"][:, 1:] == out["surface"][:, :-1]
    assert float((img[:, 1:] - img[:, :-1]).abs().amax(-1)[same].median()) < 0.1


@pytest.mark.parametrize("name", sorted(WORLDS))
@pytest.mark.parametrize("kind", ["forward_yaw", "backward", "scenescape"])
def test_suggested_trajectories_stay_in_free_space(name, kind):
    w = make_world(name)
    cams = build_trajectory(suggest_trajectory(name, kind), default_camera(name, 32, 32, 30.0), 24)
    assert len(cams) == 24
    assert all(w.inside_free_space(c.center.tolist(), margin=0.3) for c in cams)


def test_oracle_backends_from_config_obey_protocol():
    depth = build_backend(DEPTH, "oracle", {"world": "corridor", "seed": 2})
    inp = build_backend(INPAINTERS, "oracle", {"world": "corridor", "seed": 2})
    assert isinstance(depth, OracleDepth) and isinstance(depth, DepthEstimator)
    assert isinstance(inp, OracleInpainter) and isinstance(inp, Inpainter)
    with pytest.raises(ConfigError, match="world"):
        build_backend(DEPTH, "oracle", {"wrld": "room"})
    with pytest.raises(ValueError, match="corridor"):
        build_backend(DEPTH, "oracle", {"world": "coridor"})
    cam = default_camera("corridor", 40, 30, 35.0).with_pose(Camera.look_at_pose((0.2, 0, 1), (0, 0.1, 5)))
    gt_img, gt_dep = make_world("corridor", 2).render(cam)
    given = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    d = depth.estimate(given, cam)
    assert d.shape == (30, 40) and torch.equal(d, gt_dep)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    out = inp.inpaint(given, mask, cam, "a prompt")
    assert out.shape == (30, 40, 3)
    assert torch.equal(out[~torch.from_numpy(mask)], torch.from_numpy(given)[~torch.from_numpy(mask)])
    assert torch.equal(out[torch.from_numpy(mask)], gt_img[torch.from_numpy(mask)])
    with pytest.raises(ValueError, match="image"):
        depth.estimate(given[:, :20], cam)
    with pytest.raises(ValueError, match="mask"):
        inp.inpaint(given, mask[:10], cam, "")


def test_seen_mask_counts_only_points_a_training_camera_saw():
    w = make_world("room")
    cam = default_camera("room", 128, 128, 125.0)
    # a camera shifted a little sees almost everything (not the border band nor depth-edge triangles)
    near = cam.with_pose(Camera.look_at_pose((0.01, 0, 0), (0.01, 0, 1)))
    seen = seen_mask(w, cam, [near])
    assert 0.93 < float(seen.float().mean()) < 0.995
    # a camera looking the other way sees none of it
    back = cam.with_pose(Camera.look_at_pose((0, 0, 0), (0, 0, -1)))
    assert not seen_mask(w, cam, [back]).any()
    # a camera shifted right sees the left part of the view only partially: fewer seen pixels
    right = cam.with_pose(Camera.look_at_pose((0, 0, 0), (0.5, 0, 1)))
    part = seen_mask(w, cam, [right])
    assert 0.05 < float(part.float().mean()) < 0.9
    assert float(part[:, :32].float().mean()) < float(part[:, -32:].float().mean())
