"""Camera and projection conventions (OpenCV, pixel centres at +0.5, z-depth)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scenescape import Camera
from scenescape.geometry.camera import cameras_from_json, cameras_to_json
from scenescape.geometry.projection import camera_rays, pixel_grid, project, unproject


def random_pose(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    q = q / q.norm()
    w, x, y, z = q.tolist()
    r = torch.tensor([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]], dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = r
    pose[:3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
    return pose


def test_unproject_then_project_is_identity():
    for seed in range(3):
        cam = Camera(70.0, 65.0, 31.0, 25.5, 64, 48, random_pose(seed))
        depth = 1.0 + torch.rand(48, 64, generator=torch.Generator().manual_seed(seed)) * 5
        pts = unproject(depth, cam)
        assert pts.shape == (48, 64, 3)
        uv, z = project(pts, cam)
        assert torch.allclose(uv, pixel_grid(48, 64), atol=2e-3)
        assert torch.allclose(z, depth, rtol=1e-5)
    # pixel centres at +0.5: the principal point pixel of a centred camera lies on the optical axis
    cam = Camera(50.0, 50.0, 32.0, 32.0, 64, 64)
    rays = camera_rays(cam)
    assert torch.allclose(rays[31, 31, :2], torch.tensor([-0.5 / 50, -0.5 / 50]))
    assert torch.allclose(rays[32, 32, :2], torch.tensor([0.5 / 50, 0.5 / 50]))
    # x right, y down, z forward
    uv, z = project(torch.tensor([[1.0, 2.0, 4.0]]), cam)
    assert uv[0, 0] > 32 and uv[0, 1] > 32 and z[0] == 4.0


def test_json_round_trip(tmp_path):
    cams = [Camera(70.0, 65.0, 31.0, 25.5, 64, 48, random_pose(s)) for s in range(3)]
    path = tmp_path / "cams.json"
    path.write_text(json.dumps(cameras_to_json(cams)))
    back = cameras_from_json(json.loads(path.read_text()))
    assert back == cams
    assert Camera.from_dict(cams[0].to_dict()) == cams[0]
    with pytest.raises(ValueError, match="camera 1"):
        cameras_from_json({"cameras": [cams[0].to_dict(), {"fx": 1}]})


def test_from_fov_and_look_at():
    cam = Camera.from_fov(90.0, 64, 48)
    assert cam.fx == pytest.approx(32.0) and cam.fy == cam.fx
    assert (cam.cx, cam.cy) == (32.0, 24.0)
    assert cam.fov_x == pytest.approx(90.0)
    eye, target = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 0.0, 5.0])
    lk = Camera.look_at(eye, target, fov_deg=60, width=32, height=32)
    assert torch.allclose(lk.center, eye, atol=1e-5)
    uv, z = project(target[None], lk)
    assert torch.allclose(uv[0], torch.tensor([16.0, 16.0]), atol=1e-4) and z[0] > 0
    # up (-y world) appears up in the image: a point above the target projects to a smaller v
    uv_up, _ = project((target + torch.tensor([0.0, -1.0, 0.0]))[None], lk)
    assert uv_up[0, 1] < 16.0
    with pytest.raises(ValueError, match="field of view"):
        Camera.from_fov(180.0, 10, 10)


def test_scaled_keeps_pixel_centre_convention():
    cam = Camera(40.0, 40.0, 16.0, 12.0, 32, 24, random_pose(7))
    s = cam.scaled(2)
    assert (s.width, s.height, s.fx, s.cx) == (64, 48, 80.0, 32.0)
    # the 2x2 sub-pixel centres of pixel (i, j) average to the ray of pixel (i, j)
    r1, r2 = camera_rays(cam), camera_rays(s)
    avg = r2.view(24, 2, 32, 2, 3).mean(dim=(1, 3))
    assert torch.allclose(avg, r1, atol=1e-6)
    with pytest.raises(ValueError, match="integer"):
        cam.scaled(1.3)


@pytest.mark.parametrize("bad", [
    torch.zeros(4, 4),
    torch.diag(torch.tensor([1.0, 1.0, -1.0, 1.0])),  # reflection
    torch.full((4, 4), float("nan")),
    torch.eye(3),
])
def test_bad_pose_raises(bad):
    with pytest.raises(ValueError, match="world_to_camera"):
        Camera(10.0, 10.0, 5.0, 5.0, 10, 10, bad)


def test_bad_intrinsics_raise():
    with pytest.raises(ValueError, match="focal"):
        Camera(0.0, 10.0, 5.0, 5.0, 10, 10)
    with pytest.raises(ValueError, match="width and height"):
        Camera(10.0, 10.0, 5.0, 5.0, 0, 10)
    with pytest.raises(ValueError, match="depth"):
        unproject(torch.ones(5, 5), Camera(10.0, 10.0, 5.0, 5.0, 10, 10))
    assert math.isclose(Camera(10.0, 10.0, 5.0, 5.0, 10, 10).fov_y, 2 * math.degrees(math.atan(0.5)))


def test_rays_and_unprojection_equal_the_pixel_grid_formula_exactly():
    g = torch.Generator().manual_seed(0)
    for cam in (Camera(50.0, 50.0, 16, 12, 32, 24), Camera(33.3, 40.7, 10.3, 7.7, 21, 15)):
        uv = pixel_grid(cam.height, cam.width)
        x = (uv[..., 0] - cam.cx) / cam.fx
        y = (uv[..., 1] - cam.cy) / cam.fy
        rays = torch.stack([x, y, torch.ones_like(x)], dim=-1)
        assert torch.equal(camera_rays(cam), rays)
        d = torch.rand(cam.height, cam.width, generator=g) * 5 + 0.1
        assert torch.equal(unproject(d, cam, world=False), rays * d[..., None])
