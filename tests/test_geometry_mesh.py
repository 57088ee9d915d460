"""SceneMesh: RGB-D meshing, stitching, filters, export/import, input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenescape import Camera, SceneMesh, render_mesh
from scenescape.geometry.masks import disocclusion_mask
from scenescape.io.meshes import load_mesh, save_mesh, to_trimesh

H = W = 96
F = 80.0


def cam_at(x: float = 0.0, y: float = 0.0, z: float = 0.0, yaw: float = 0.0, size: int = H, f: float = F) -> Camera:
    """Camera at (x, y, z) looking along +z, turned by ``yaw`` radians about the y axis."""
    c, s = math.cos(yaw), math.sin(yaw)
    r = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = r
    pose[:3, 3] = -r @ torch.tensor([x, y, z], dtype=torch.float64)
    return Camera(f, f, size / 2, size / 2, size, size, pose)


def texture(p: torch.Tensor) -> torch.Tensor:
    """Smooth colour as a function of the 3D point ``(..., 3)`` -> ``(..., 3)`` in [0, 1]."""
    return torch.stack([0.5 + 0.4 * torch.sin(3 * p[..., 0] + p[..., 2]),
                        0.5 + 0.4 * torch.cos(2.5 * p[..., 1] - p[..., 2]),
                        0.5 + 0.4 * torch.sin(2 * p[..., 0] + 2 * p[..., 1])], dim=-1)


def step_scene(cam: Camera, wall: float = 4.0, occ: float = 2.0, half: float = 0.5):
    """Ground truth of a far wall (world z = ``wall``) behind a square occluder (z = ``occ``, |x|, |y| <= half).

    Returns image ``(H, W, 3)`` and z-depth ``(H, W)``.
    """
    h, w = cam.height, cam.width
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    rc = torch.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, torch.ones_like(u)], -1).double()
    c2w = cam.camera_to_world.double()
    d = rc @ c2w[:3, :3].T  # world direction whose camera z is 1: the ray parameter is the z-depth
    o = c2w[:3, 3]
    t_wall = (wall - o[2]) / d[..., 2]
    t_occ = (occ - o[2]) / d[..., 2]
    p_occ = o + t_occ[..., None] * d
    hit = (t_occ > 0) & (t_occ < t_wall) & (p_occ[..., 0].abs() <= half) & (p_occ[..., 1].abs() <= half)
    t = torch.where(hit, t_occ, t_wall)
    p = o + t[..., None] * d
    return texture(p).float(), t.float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


# ---------------------------------------------------------------------------------------------- building
def test_rgbd_mesh_renders_back_image_and_depth():
    cam = cam_at()
    img, depth = step_scene(cam, occ=3.0, half=0.6)
    # a tilted, smooth depth field, not only planes
    depth = depth * (1 + 0.05 * torch.sin(torch.arange(W) / 9.0))[None, :]
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    assert mesh.vertices.dtype == torch.float32 and mesh.faces.dtype == torch.int64
    assert mesh.colors.shape == (mesh.num_vertices, 3)
    out = render_mesh(mesh, cam)
    assert out.mask.all()
    assert psnr(out.image, img) >= 40
    assert float(((out.depth - depth).abs() / depth).max()) < 1e-3
    # numpy input gives the same mesh
    mesh_np = SceneMesh.from_rgbd(img.numpy(), depth.numpy(), cam)
    assert torch.equal(mesh_np.faces, mesh.faces) and torch.allclose(mesh_np.vertices, mesh.vertices)


def test_faces_are_ccw_in_the_image_and_face_the_camera():
    cam = cam_at(0.2, -0.1, 0.3, yaw=0.2)
    img, depth = step_scene(cam, occ=10.0)  # wall only
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    v = mesh.vertices[mesh.faces]  # (M, 3, 3) world
    n = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    to_cam = cam.center - v.mean(1)
    assert ((n * to_cam).sum(-1) > 0).all()  # right-hand normal points back at the camera that made it


def test_step_edge_triangles_are_dropped_and_zbuffer_orders_planes():
    cam = cam_at()
    img, depth = step_scene(cam)
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    z = (mesh.vertices[mesh.faces][..., 2])
    # no face spans the two planes (z = 2 and z = 4)
    assert float((z.amax(1) / z.amin(1)).max()) < 1.01
    # a naive triangulation would have rubber-sheet faces there: check that some were dropped
    stats = SceneMesh().extend_from_rgbd(img, depth, cam)
    assert stats.faces_dropped > 0
    # seen from the side, the gap behind the occluder's edge opens (not covered by a rubber sheet) ...
    side = cam_at(x=0.6)
    out = render_mesh(mesh, side)
    gt_img, gt_depth = step_scene(side)
    assert (~out.mask).sum() > 20
    # ... and where both planes project, the near one wins the z-test
    cov = out.mask
    assert torch.allclose(out.depth[cov], gt_depth[cov], rtol=1e-3)
    assert (gt_depth[cov] < 2.5).any()
    # rendering with faces reversed in order still gives the near plane (z-test, not draw order)
    rev = SceneMesh(mesh.vertices, mesh.faces.flip(0), mesh.colors)
    out_r = render_mesh(rev, side)
    assert torch.equal(out_r.mask, out.mask)
    assert torch.allclose(out_r.depth, out.depth, atol=1e-5)


def test_extend_adds_only_mask_pixels_and_shares_seam_vertices():
    cam = cam_at()
    img, depth = step_scene(cam, occ=10.0)  # a plane
    left = torch.zeros(H, W, dtype=torch.bool)
    left[:, : W // 2] = True
    mesh = SceneMesh.from_rgbd(img, depth, cam, mask=left)
    n0, f0 = mesh.num_vertices, mesh.num_faces
    assert n0 == H * (W // 2)
    stats = mesh.extend_from_rgbd(img, depth, cam, ~left)
    assert stats.vertices_added == H * (W - W // 2)  # one vertex per mask pixel, nothing else
    assert mesh.num_vertices == n0 + stats.vertices_added and mesh.num_faces == f0 + stats.faces_added
    assert stats.seam_vertices == H  # the column left of the mask is reused
    new_faces = mesh.faces[f0:]
    assert ((new_faces < n0).any(1)).sum() > 0  # seam faces use old vertices
    # old part unchanged (appending)
    assert torch.equal(mesh.faces[:f0], SceneMesh.from_rgbd(img, depth, cam, mask=left).faces)
    # no crack: the plane built in two halves covers every pixel from new views
    for other in (cam_at(0.3, 0.2, -0.5, yaw=0.1), cam_at(-0.2, 0.0, 0.5, yaw=-0.15)):
        out = render_mesh(mesh, other)
        seen = render_mesh(SceneMesh.from_rgbd(img, depth, cam), other).mask  # the plane made in one piece
        assert seen.float().mean() > 0.5
        assert out.mask[seen].all()


def test_plane_rendered_from_new_camera_has_analytic_depth():
    cam = cam_at()
    img, depth = step_scene(cam, occ=10.0)
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    new = cam_at(0.4, -0.3, 1.0, yaw=0.25)
    out = render_mesh(mesh, new)
    gt_img, gt_depth = step_scene(new, occ=10.0)
    assert out.mask.float().mean() > 0.5
    assert float(((out.depth - gt_depth).abs() / gt_depth)[out.mask].max()) < 1e-4


def test_two_plane_step_fusion_sideways_no_floating_full_coverage():
    """Fidelity in miniature: render -> disocclusion mask -> ground-truth RGB-D -> extend, camera moving sideways."""
    cams = [cam_at(x=0.08 * k) for k in range(6)]
    img, depth = step_scene(cams[0])
    mesh = SceneMesh.from_rgbd(img, depth, cams[0])
    for cam in cams[1:]:
        out = render_mesh(mesh, cam)
        mask = disocclusion_mask(out.mask)
        gt_img, gt_depth = step_scene(cam)
        # disocclusions appear behind the occluder (not only at the image border)
        inner = torch.zeros_like(mask)
        inner[4:-4, 4:-4] = True
        assert (mask & inner & (gt_depth > 3.0) & ~out.mask).sum() > 0
        # what renders is not floating in front of the truth
        assert float((out.depth[out.mask] < 0.9 * gt_depth[out.mask]).float().mean()) == 0.0
        stats = mesh.extend_from_rgbd(gt_img, gt_depth, cam, mask, render=out)
        assert stats.vertices_added > 0 and stats.seam_vertices > 0
        after = render_mesh(mesh, cam)
        assert after.mask.float().mean() >= 0.998
        assert float((after.depth[after.mask] < 0.9 * gt_depth[after.mask]).float().mean()) == 0.0
        rel = ((after.depth - gt_depth).abs() / gt_depth)[after.mask]
        assert float(rel.median()) < 1e-3
    # held-out midpoint
    mid = cam_at(x=0.2)
    out = render_mesh(mesh, mid)
    gt_img, gt_depth = step_scene(mid)
    assert out.mask.float().mean() >= 0.998
    assert float((out.depth[out.mask] < 0.9 * gt_depth[out.mask]).float().mean()) == 0.0
    assert psnr(out.image[out.mask], gt_img[out.mask]) > 30


# ---------------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_export_and_load_keep_vertices_faces_colours(tmp_path, suffix):
    cam = cam_at()
    img, depth = step_scene(cam)
    mesh = SceneMesh.from_rgbd(img[:32, :32].contiguous(), depth[:32, :32].contiguous(),
                               Camera(F, F, 16, 16, 32, 32))
    path = save_mesh(mesh, tmp_path / f"scene{suffix}")
    assert path.exists() and not list(tmp_path.glob(".*"))  # atomic: no temporary left over
    back = load_mesh(path)
    assert back.num_vertices == mesh.num_vertices and back.num_faces == mesh.num_faces
    assert torch.equal(back.faces, mesh.faces)
    assert torch.allclose(back.vertices, mesh.vertices, rtol=1e-6, atol=1e-6)
    assert float((back.colors - mesh.colors).abs().max()) <= 0.5 / 255 + 1e-6


def test_export_files_carry_vertex_colours_for_viewers(tmp_path):
    import trimesh

    cam = Camera(F, F, 8, 8, 16, 16)
    img, depth = step_scene(cam)
    mesh = SceneMesh.from_rgbd(torch.full((16, 16, 3), 0.25) + torch.tensor([0.5, 0.0, 0.0]), depth, cam)
    save_mesh(mesh, tmp_path / "a.glb")
    scene = trimesh.load(tmp_path / "a.glb")
    geom = list(scene.geometry.values())[0]
    # COLOR_0 is linear (glTF spec): sRGB 0.75 -> 0.5225
    assert abs(float(geom.visual.vertex_attributes["color"][0, 0]) - ((0.75 + 0.055) / 1.055) ** 2.4) < 1e-6
    raw = (tmp_path / "a.glb").read_bytes()
    assert b"COLOR_0" in raw and b"KHR_materials_unlit" in raw  # colours shown as they are (three.js, Blender)
    save_mesh(mesh, tmp_path / "a.obj")
    first_v = next(ln for ln in (tmp_path / "a.obj").read_text().splitlines() if ln.startswith("v "))
    assert len(first_v.split()) == 7  # v x y z r g b
    save_mesh(mesh, tmp_path / "a.ply")
    head = (tmp_path / "a.ply").read_bytes()[:400]
    assert b"property uchar red" in head
    # PLY in the Z-up world (x, z, -y) of the OpenCV world; GLB y-up (x, -y, -z); restored on load
    tm = trimesh.load(tmp_path / "a.ply", process=False)
    v = mesh.vertices.numpy()
    assert np.allclose(tm.vertices, np.stack([v[:, 0], v[:, 2], -v[:, 1]], 1), atol=1e-6)
    assert np.allclose(geom.vertices, v * np.array([1, -1, -1]), atol=1e-6)
    raw = load_mesh(save_mesh(mesh, tmp_path / "b.ply", frame="world"), frame="world")
    assert torch.allclose(raw.vertices, mesh.vertices)


def test_npz_checkpoint_is_exact(tmp_path):
    cam = cam_at()
    img, depth = step_scene(cam)
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    save_mesh(mesh, tmp_path / "m.npz")
    back = load_mesh(tmp_path / "m.npz")
    assert torch.equal(back.vertices, mesh.vertices) and torch.equal(back.faces, mesh.faces)
    assert torch.equal(back.colors, mesh.colors)
    assert torch.equal(load_mesh(tmp_path / "m.npz").faces, mesh.faces)


def test_clone_to_and_pytorch3d_message():
    cam = Camera(F, F, 8, 8, 16, 16)
    img, depth = step_scene(cam)
    mesh = SceneMesh.from_rgbd(img, depth, cam)
    c = mesh.clone()
    c.vertices += 1
    assert not torch.equal(c.vertices, mesh.vertices)
    assert mesh.to("cpu") is mesh
    tm = to_trimesh(mesh)
    assert tm.vertices.shape == (mesh.num_vertices, 3)
    try:
        import pytorch3d  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="PyTorch3D"):
            mesh.to_pytorch3d()
    else:  # pragma: no cover - only where PyTorch3D is installed
        assert mesh.to_pytorch3d().verts_packed().shape == mesh.vertices.shape


# ---------------------------------------------------------------------------------------------- bad input
def _bad_cases():
    cam = Camera(F, F, 8, 8, 16, 16)
    img, depth = step_scene(cam)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 4:8] = True
    nan_d = depth.clone()
    nan_d[5, 5] = float("nan")
    neg_d = depth.clone()
    neg_d[6, 6] = -1.0
    zero_d = depth.clone()
    zero_d[4, 4] = 0.0
    inf_d = depth.clone()
    inf_d[7, 7] = float("inf")
    return cam, img, depth, mask, [
        ("depth", dict(depth=nan_d)),
        ("depth", dict(depth=neg_d)),
        ("depth", dict(depth=zero_d)),
        ("depth", dict(depth=inf_d)),
        ("depth", dict(depth=depth[:15])),
        ("image", dict(image=img[:, :15])),
        ("image", dict(image=img[..., :2])),
        ("mask", dict(mask=mask[:15])),
        ("mask", dict(mask=torch.zeros(16, 16, dtype=torch.bool))),
        ("camera", dict(cam=Camera(F, F, 8, 8, 17, 16))),
    ]


def test_bad_inputs_raise_value_error_naming_the_argument_and_leave_mesh_unchanged():
    cam, img, depth, mask, cases = _bad_cases()
    full = torch.ones(16, 16, dtype=torch.bool)
    full[4:8, 4:8] = False
    mesh = SceneMesh.from_rgbd(img, depth, cam, mask=full)
    before = mesh.clone()
    for name, kw in cases:
        args = dict(image=img, depth=depth, cam=cam, mask=mask) | kw
        with pytest.raises(ValueError, match=name):
            mesh.extend_from_rgbd(args["image"], args["depth"], args["cam"], args["mask"])
        assert torch.equal(mesh.vertices, before.vertices) and torch.equal(mesh.faces, before.faces)
        assert torch.equal(mesh.colors, before.colors)
    # from_rgbd raises the same way
    with pytest.raises(ValueError, match="depth"):
        SceneMesh.from_rgbd(img, cases[0][1]["depth"], cam)
    # depth outside the mask is not used, so it may be empty (0)
    d0 = torch.where(mask, depth, torch.zeros_like(depth))
    assert mesh.extend_from_rgbd(img, d0, cam, mask).vertices_added == 16
    # a non-invertible pose is refused when the camera is made
    with pytest.raises(ValueError, match="world_to_camera"):
        Camera(F, F, 8, 8, 16, 16, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="max_rel_jump"):
        mesh.extend_from_rgbd(img, depth, cam, mask, max_rel_jump=-1)
    with pytest.raises(ValueError, match="unknown"):
        mesh.extend_from_rgbd(img, depth, cam, mask, max_rel_jmp=0.1)


def test_grazing_and_relative_jump_filters_follow_their_options():
    cam = cam_at()
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    img = torch.full((H, W, 3), 0.5)
    # a plane seen almost edge-on: z = 2 / (1 - k x / z) -> per-pixel relative steps of ~k/F
    k = 0.99
    xr = (u - cam.cx) / cam.fx
    depth = 2.0 / (1.0 - k * xr / xr.abs().max())
    mesh_default = SceneMesh.from_rgbd(img, depth, cam)
    mesh_keep = SceneMesh.from_rgbd(img, depth, cam, min_cos=0.0, max_rel_jump=10.0)
    assert mesh_keep.num_faces == 2 * (H - 1) * (W - 1)
    assert mesh_default.num_faces < mesh_keep.num_faces  # the most grazing part is dropped
    # the kept faces all satisfy the documented criteria
    p = mesh_default.vertices[mesh_default.faces]
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    r = p.mean(1)
    cos = (n * r).sum(-1).abs() / (n.norm(dim=-1) * r.norm(dim=-1))
    assert float(cos.min()) >= 0.04
    z = p[..., 2]
    assert float((z.amax(1) / z.amin(1)).max()) <= 1.1


def test_quads_restricted_to_the_needed_pixels_give_the_same_triangles_in_the_same_order():
    from scenescape.geometry.triangulate import quad_triangles

    g = torch.Generator().manual_seed(0)
    for h, w in ((1, 5), (2, 2), (3, 7), (16, 9), (40, 33)):
        for p in (0.3, 0.9, 1.0):
            valid = torch.rand(h, w, generator=g) < p
            z = torch.rand(h, w, generator=g)
            for pn in (0.0, 0.05, 0.5, 1.0):
                need = torch.rand(h, w, generator=g) < pn
                full = quad_triangles(valid, z)
                full = full[need.reshape(-1)[full].any(1)]
                got = quad_triangles(valid, z, need)
                assert torch.equal(got[need.reshape(-1)[got].any(1)], full), (h, w, p, pn)
                if pn == 1.0:
                    assert torch.equal(got, quad_triangles(valid, z))
