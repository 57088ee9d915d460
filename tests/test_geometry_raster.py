"""The pure-torch z-buffer rasteriser: coverage, z-order, perspective-correct interpolation, seams, near plane,
supersampling, and agreement with open3d's ray caster."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenescape import Camera, SceneMesh, render_mesh
from scenescape.geometry.raster import rasterize


def make_cam(w: int = 48, h: int = 40, f: float = 40.0, pose=None) -> Camera:
    return Camera(f, f, w / 2, h / 2, w, h, pose)


def screen_mesh(tri_uv: np.ndarray, depth: float, cam: Camera, colors=None) -> SceneMesh:
    """Mesh whose vertices project to the given pixel coordinates ``(T, 3, 2)`` at z-depth ``depth``."""
    uv = torch.as_tensor(tri_uv, dtype=torch.float64).reshape(-1, 2)
    x = (uv[:, 0] - cam.cx) / cam.fx * depth
    y = (uv[:, 1] - cam.cy) / cam.fy * depth
    v = torch.stack([x, y, torch.full_like(x, depth)], 1).float()
    f = torch.arange(v.shape[0]).view(-1, 3)
    return SceneMesh(v, f, colors)


def _edge(p, q, u, v):
    return (q[0] - p[0]) * (v - p[1]) - (q[1] - p[1]) * (u - p[0])


def test_coverage_matches_brute_force_point_in_triangle():
    rng = np.random.default_rng(0)
    cam = make_cam()
    for _ in range(20):
        tri = rng.uniform([-5, -5], [53, 45], size=(1, 3, 2))
        mesh = screen_mesh(tri, 2.0, cam)
        out = render_mesh(mesh, cam)
        # brute force in float64 with pixel centres at +0.5
        v, u = np.meshgrid(np.arange(cam.height) + 0.5, np.arange(cam.width) + 0.5, indexing="ij")
        a, b, c = tri[0]

        e = np.stack([_edge(b, c, u, v), _edge(c, a, u, v), _edge(a, b, u, v)])
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        inside = (np.sign(area) * e >= 0).all(0)
        dist = np.abs(e) / np.stack([np.hypot(*(c - b)), np.hypot(*(a - c)), np.hypot(*(b - a))])[:, None, None]
        sure = dist.min(0) > 1e-3  # ignore pixels within 1e-3 px of an edge
        got = out.mask.numpy()
        assert (got[sure] == inside[sure]).all()
        assert np.allclose(out.depth.numpy()[got], 2.0, rtol=1e-5)


def test_zbuffer_keeps_nearest_regardless_of_order():
    cam = make_cam()
    big = np.array([[[0, 0], [48, 0], [0, 40]], [[48, 0], [48, 40], [0, 40]]], dtype=float)
    far = screen_mesh(big, 5.0, cam, torch.tensor([[1.0, 0, 0]]).repeat(6, 1))
    near = screen_mesh(np.array([[[10, 10], [30, 10], [10, 30]]], dtype=float), 2.0, cam,
                       torch.tensor([[0, 1.0, 0]]).repeat(3, 1))
    for first, second in ((far, near), (near, far)):
        m = first.clone()
        m.append(second.vertices, second.faces, second.colors)
        out = render_mesh(m, cam)
        assert out.mask.all()
        assert out.depth[15, 12] == pytest.approx(2.0, rel=1e-5)
        assert out.depth[35, 40] == pytest.approx(5.0, rel=1e-5)
        assert torch.allclose(out.image[15, 12], torch.tensor([0.0, 1.0, 0.0]))
        assert torch.allclose(out.image[35, 40], torch.tensor([1.0, 0.0, 0.0]))
        near_face = out.face_index[15, 12].item()
        assert (m.vertices[m.faces[near_face]][:, 2] < 3).all()


def test_perspective_correct_interpolation_on_tilted_plane():
    # a strongly tilted quad: colour = a linear function of the 3D point is reproduced exactly only with
    # perspective-correct barycentrics
    cam = make_cam(64, 64, 50.0)
    v = torch.tensor([[-1.0, -0.6, 1.0], [1.0, -0.6, 1.0], [-3.0, 0.6, 6.0], [3.0, 0.6, 6.0]])
    col = ((v[:, 2:3] - 1.0) / 5.0).repeat(1, 3)  # 0 at z=1, 1 at z=6
    mesh = SceneMesh(v, torch.tensor([[0, 2, 3], [0, 3, 1]]), col)
    out = render_mesh(mesh, cam)
    assert out.mask.float().mean() > 0.3
    expect = (out.depth - 1.0) / 5.0
    assert float((out.image[..., 0] - expect)[out.mask].abs().max()) < 1e-4
    # barycentrics reproduce the 3D point that projects to the pixel centre
    fi, bary = out.face_index, out.bary
    pts = (mesh.vertices[mesh.faces[fi[out.mask]]] * bary[out.mask][..., None]).sum(1)
    uv = torch.stack([pts[:, 0] / pts[:, 2] * cam.fx + cam.cx, pts[:, 1] / pts[:, 2] * cam.fy + cam.cy], 1)
    ii, jj = out.mask.nonzero().unbind(1)
    assert torch.allclose(uv, torch.stack([jj + 0.5, ii + 0.5], 1).float(), atol=1e-3)
    assert (fi[~out.mask] == -1).all() and (out.depth[~out.mask] == 0).all()


def test_shared_edges_do_not_crack():
    # a jittered grid mesh of a plane: every pixel centre inside must be covered exactly
    rng = np.random.default_rng(1)
    cam = make_cam(64, 64, 60.0)
    n = 13
    g = np.stack(np.meshgrid(np.linspace(-2, 66, n), np.linspace(-2, 66, n), indexing="xy"), -1)
    g[1:-1, 1:-1] += rng.uniform(-2, 2, size=(n - 2, n - 2, 2))
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, d], 1), np.stack([a, d, b], 1)])
    uv = torch.as_tensor(g.reshape(-1, 2))
    z = torch.as_tensor(rng.uniform(2, 3, size=n * n))  # not planar: shared edges between tilted faces
    x = (uv[:, 0] - cam.cx) / cam.fx * z
    y = (uv[:, 1] - cam.cy) / cam.fy * z
    mesh = SceneMesh(torch.stack([x, y, z], 1).float(), torch.as_tensor(faces))
    out = render_mesh(mesh, cam)
    assert out.mask.all()
    assert (out.face_index >= 0).all()


def test_near_plane_and_behind_camera_faces_are_dropped():
    cam = make_cam()
    v = torch.tensor([[-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0],  # behind
                      [-1.0, -1.0, 0.5], [1.0, -1.0, 0.5], [0.0, 1.0, -0.5]])  # straddles the camera plane
    mesh = SceneMesh(v, torch.tensor([[0, 1, 2], [3, 4, 5]]))
    out = render_mesh(mesh, cam)
    assert not out.mask.any()
    ok = SceneMesh(v[3:] + torch.tensor([0, 0, 2.0]), torch.tensor([[0, 1, 2]]))
    assert render_mesh(ok, cam).mask.any()
    assert not render_mesh(ok, cam, near=1.55).mask.any()


def test_supersampling_masked_downsample():
    cam = make_cam(32, 32, 30.0)
    # uniform-colour triangle: masked averaging keeps the colour exact even on edge pixels
    mesh = screen_mesh(np.array([[[3.3, 4.1], [28.7, 6.2], [9.1, 27.9]]]), 3.0, cam,
                       torch.tensor([[0.2, 0.6, 0.9]]).repeat(3, 1))
    o1 = render_mesh(mesh, cam)
    o4 = render_mesh(mesh, cam, supersample=4)
    om = render_mesh(mesh, cam, supersample=4, coverage="majority")
    assert o4.image.shape == (32, 32, 3) and o4.depth.shape == (32, 32)
    assert torch.allclose(o4.image[o4.mask], torch.tensor([0.2, 0.6, 0.9]), atol=1e-5)
    assert torch.allclose(o4.depth[o4.mask], torch.tensor(3.0), rtol=1e-5)
    assert (o4.mask >= o1.mask).all() and (om.mask <= o4.mask).all()
    assert o4.mask.sum() > om.mask.sum() > 0
    assert abs(int(om.mask.sum()) - int(o1.mask.sum())) < 0.1 * int(o1.mask.sum())
    assert (o4.face_index[o4.mask] == 0).all() and (o4.face_index[~o4.mask] == -1).all()
    bg = render_mesh(mesh, cam, background=(1.0, 0.0, 0.0))
    assert torch.allclose(bg.image[~bg.mask], torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="supersample"):
        render_mesh(mesh, cam, supersample=0)


def test_big_faces_are_chunked_and_small_chunks_give_same_result():
    cam = make_cam(64, 48, 40.0, Camera.look_at_pose((0.3, -0.2, -1.0), (0, 0, 3)))
    rng = np.random.default_rng(2)
    v = torch.as_tensor(rng.uniform([-3, -3, 2], [3, 3, 6], size=(300, 3))).float()
    f = torch.as_tensor(rng.integers(0, 300, size=(400, 3)))
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    fi_a, b_a, d_a = rasterize(v, f, cam)
    fi_b, b_b, d_b = rasterize(v, f, cam, chunk=64)
    assert torch.equal(fi_a, fi_b) and torch.equal(d_a, d_b)


def test_matches_open3d_raycasting_depth():
    o3d = pytest.importorskip("open3d")  # optional dependency (benchmarks extra)
    rng = np.random.default_rng(3)
    v = rng.uniform([-2, -2, 3], [2, 2, 6], size=(200, 3)).astype(np.float32)
    f = rng.integers(0, 200, size=(150, 3))
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    cam = make_cam(64, 64, 50.0, Camera.look_at_pose((0.5, 0.2, -0.5), (0, 0, 4)))
    out = render_mesh(SceneMesh(torch.as_tensor(v), torch.as_tensor(f)), cam)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f.astype(np.uint32)))
    rays = scene.create_rays_pinhole(o3d.core.Tensor(cam.K.double().numpy()),
                                     o3d.core.Tensor(cam.world_to_camera.double().numpy()), 64, 64)
    t_hit = scene.cast_rays(rays)["t_hit"].numpy()
    d = rays.numpy()[..., 3:]
    zdir = (d @ cam.world_to_camera[:3, :3].double().numpy().T)[..., 2]
    z = np.where(np.isfinite(t_hit), t_hit * zdir, 0.0)
    hit = np.isfinite(t_hit)
    agree = hit == out.mask.numpy()
    assert agree.mean() > 0.99  # disagreements only on exact edges
    both = hit & out.mask.numpy()
    assert np.allclose(out.depth.numpy()[both], z[both], rtol=1e-4)


def test_pytorch3d_backend_needs_pytorch3d():
    cam = make_cam()
    mesh = screen_mesh(np.array([[[3, 4], [28, 6], [9, 27]]], dtype=float), 3.0, cam)
    try:
        import pytorch3d  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="PyTorch3D"):
            render_mesh(mesh, cam, backend="pytorch3d")
    else:  # pragma: no cover - only where PyTorch3D is installed
        a, b = render_mesh(mesh, cam), render_mesh(mesh, cam, backend="pytorch3d")
        assert (a.mask == b.mask).float().mean() > 0.99
    with pytest.raises(ValueError, match="backend"):
        render_mesh(mesh, cam, backend="opengl")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():  # pragma: no cover - only on GPU machines
    cam = make_cam(64, 48, 40.0, Camera.look_at_pose((0.3, -0.2, -1.0), (0, 0, 3)))
    rng = np.random.default_rng(4)
    v = torch.as_tensor(rng.uniform([-3, -3, 2], [3, 3, 6], size=(300, 3))).float()
    f = torch.as_tensor(rng.integers(0, 300, size=(400, 3)))
    mesh = SceneMesh(v, f, torch.rand(300, 3))
    a = render_mesh(mesh, cam)
    b = render_mesh(mesh.to("cuda"), cam).to("cpu")
    assert (a.mask == b.mask).float().mean() > 0.995
    both = a.mask & b.mask
    assert torch.allclose(a.depth[both], b.depth[both], rtol=1e-4)


def test_camera_rotation_invariance_of_depth():
    # same mesh, camera rolled 90 degrees about its axis: depth image rotates with it
    cam = make_cam(40, 40, 35.0)
    rng = np.random.default_rng(5)
    v = torch.as_tensor(rng.uniform([-1, -1, 3], [1, 1, 5], size=(60, 3))).float()
    f = torch.as_tensor(rng.integers(0, 60, size=(40, 3)))
    mesh = SceneMesh(v, f)
    roll = torch.eye(4)
    roll[:3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    a = render_mesh(mesh, cam).depth
    b = render_mesh(mesh, cam.with_pose(roll)).depth
    # rolled camera x' = -y, y' = x: pixel (i', j') of b sees pixel (i, j) = (W-1-j', i') of a
    rot = torch.rot90(a, k=-1)
    both = (rot > 0) & (b > 0)
    assert both.sum() > 50
    assert torch.allclose(rot[both], b[both], rtol=1e-4)
    assert ((rot > 0) != (b > 0)).float().mean() < 0.01
    assert math.isfinite(float(b.sum()))
