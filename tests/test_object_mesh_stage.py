"""Magic3D stage 2: tetrahedral grid + marching tetrahedra, the differentiable mesh renderer, the mesh stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scenescape.geometry.camera import Camera
from scenescape.geometry.diffrender import antialias, interpolate, rasterize_diff
from scenescape.geometry.tetra import edge_face_pairs, marching_tets, mesh_edges, tet_grid
from scenescape.io.meshes import load_mesh


def test_tet_grid_is_conforming_and_positively_oriented():
    v, t = tet_grid(3, 1.0)
    assert v.shape == (64, 3) and t.shape == (6 * 27, 4)
    e = torch.stack([v[t[:, k]] - v[t[:, 0]] for k in (1, 2, 3)], 1)
    vol = torch.det(e) / 6
    assert (vol > 0).all() and vol.sum().item() == pytest.approx(8.0, rel=1e-5)  # tiles the cube exactly
    # conforming: every interior triangle is shared by exactly two tetrahedra, boundary ones by one
    tri = torch.cat([t[:, [0, 1, 2]], t[:, [0, 1, 3]], t[:, [0, 2, 3]], t[:, [1, 2, 3]]])
    _, counts = torch.unique(torch.sort(tri, 1).values, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    assert int((counts == 1).sum()) == 6 * 9 * 2  # 2 triangles per boundary square


@pytest.mark.parametrize("radius", [0.6137, 0.4321])
def test_marching_tets_of_a_sphere_is_watertight_genus_zero_and_accurate(radius):
    v, t = tet_grid(32, 1.0)
    sdf = (v.norm(dim=-1) - radius).requires_grad_(True)
    verts, faces = marching_tets(v, t, sdf)
    edges, per_edge = mesh_edges(faces)
    assert (per_edge == 2).all()  # watertight: every edge has exactly two faces
    assert verts.shape[0] - edges.shape[0] + faces.shape[0] == 2  # Euler characteristic of a sphere
    r = verts.detach().norm(dim=-1)
    assert abs(r.mean().item() - radius) / radius < 0.01 and (r - radius).abs().max().item() < 0.01
    p = verts.detach()[faces]
    signed = (torch.cross(p[:, 0], p[:, 1], dim=-1) * p[:, 2]).sum(-1).sum() / 6
    assert signed.item() == pytest.approx(4 / 3 * torch.pi * radius ** 3, rel=0.02)  # outward winding
    # differentiable: pushing the SDF down everywhere grows the sphere
    verts.norm(dim=-1).sum().backward()
    assert sdf.grad is not None and sdf.grad.sum().item() < 0
    assert edge_face_pairs(faces).shape[0] == edges.shape[0]


def test_marching_tets_empty_and_full_fields_give_no_surface():
    v, t = tet_grid(4, 1.0)
    for s in (torch.ones(v.shape[0]), -torch.ones(v.shape[0])):
        verts, faces = marching_tets(v, t, s)
        assert verts.shape == (0, 3) and faces.shape == (0, 3)


def _scene():
    cam = Camera.from_fov(50.0, 24, 24, Camera.look_at_pose((0, 0, -2.0), (0, 0, 0), (0, -1, 0)))
    verts = torch.tensor([[-0.5, -0.4, 0.0], [0.6, -0.3, 0.1], [0.0, 0.55, -0.1], [0.7, 0.5, 0.2]])
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    col = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 1, 0, 1]])  # rgb + alpha
    return cam, verts, faces, col


def _render(verts, faces, cam, col):
    fr = rasterize_diff(verts, faces, cam)
    img = torch.where(fr.mask[..., None], interpolate(col, fr), torch.tensor([0.2, 0.3, 0.4, 0.0], dtype=col.dtype))
    return antialias(img, fr), fr


def test_differentiable_renderer_gradients_match_finite_differences():
    # float64 and a small step: the antialiasing takes the largest of several shares at a pixel, a kink that
    # a 1e-3 step can straddle
    cam, verts, faces, col = _scene()
    verts, col = verts.double(), col.double()
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    weight = torch.stack([1 + 0.5 * torch.sin(xx / 5), 1 + 0.5 * torch.cos(yy / 4), 0.5 + 0 * xx, 1 + xx / 24], -1)
    weight = weight.double()
    v = verts.clone().requires_grad_(True)
    out, fr = _render(v, faces, cam, col)
    (out * weight).sum().backward()
    eps, checked, silhouette = 1e-5, 0, 0
    for i in range(4):
        for k in range(3):
            vp, vm = verts.clone(), verts.clone()
            vp[i, k] += eps
            vm[i, k] -= eps
            op, fp = _render(vp, faces, cam, col)
            om, fm = _render(vm, faces, cam, col)
            if not ((fp.face_index == fr.face_index).all() and (fm.face_index == fr.face_index).all()):
                continue  # an edge crossed a pixel centre: visibility changed, not comparable
            num = ((op - om) * weight).sum().item() / (2 * eps)
            assert v.grad[i, k].item() == pytest.approx(num, rel=0.05, abs=0.5), (i, k)
            checked += 1
    assert checked >= 9
    # the silhouette alone (antialiased coverage = area in pixels) has the right gradient too
    v2 = verts.clone().requires_grad_(True)
    out2, _ = _render(v2, faces, cam, col)
    area = out2[..., 3].sum()
    area.backward()
    assert out2[..., 3].min().item() == 0.0 and 0 < ((out2[..., 3] > 0) & (out2[..., 3] < 1)).sum().item()
    for i, k in ((0, 0), (2, 1), (3, 1)):
        vp, vm = verts.clone(), verts.clone()
        vp[i, k] += eps
        vm[i, k] -= eps
        num = (_render(vp, faces, cam, col)[0][..., 3].sum() - _render(vm, faces, cam, col)[0][..., 3].sum()) / (2 * eps)
        assert v2.grad[i, k].item() == pytest.approx(num.item(), rel=0.05, abs=0.5)
        silhouette += abs(v2.grad[i, k].item()) > 1.0
    assert silhouette >= 2  # moving a silhouette vertex changes the covered area: a real gradient


def test_antialiased_coverage_approximates_the_projected_area():
    # a square of known pixel area seen head-on, edges at fractional pixel positions
    cam = Camera.from_fov(50.0, 32, 32, Camera.look_at_pose((0, 0, -2.0), (0, 0, 0), (0, -1, 0)))
    s = 0.33
    verts = torch.tensor([[-s, -s, 0.0], [s, -s, 0.0], [s, s, 0.0], [-s, s, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    out, fr = _render(verts, faces, cam, torch.ones(4, 4))
    side = 2 * s / 2.0 * cam.fx  # pixels
    assert out[..., 3].sum().item() == pytest.approx(side * side, rel=0.02)
    assert fr.mask.sum().item() != pytest.approx(side * side, rel=0.002)  # the hard mask is coarser


def _magic3d_tiny(folder: str) -> list[str]:
    return [
        "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12", "nerf.max_resolution=64", "nerf.hidden=16",
        "nerf.layers=1", "render.num_samples=12", "render.num_importance=4", "shading.albedo_steps=2",
        "loss.orientation_ramp_steps=4",
        f"guidance.options={{model: '{folder}', resolution: 64, guidance_scale: 7.5}}",
        "output.val_every=2", "output.val_views=2", "output.checkpoint_every=2", "output.video_frames=2",
        "output.video_size=16", "output.mesh_resolution=24", "mesh.tet_resolution=12", "mesh.resolution=32",
        "mesh.normal_consistency=100",
    ]


@pytest.mark.slow
def test_magic3d_both_stages_with_a_tiny_sd_end_to_end_and_resume_in_stage_two(tmp_path):
    from click.testing import CliRunner

    from scenescape.cli import cli
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline
    from scenescape.testing.tiny import make_tiny_sd

    sd = make_tiny_sd(tmp_path / "sd")
    items = _magic3d_tiny(sd) + ["steps=3", "mesh.steps=4", "progress=false"]
    out = tmp_path / "mug"
    res = CliRunner().invoke(cli, ["object", "a ceramic mug", "--config", "configs/object/magic3d-cpu-small.yaml",
                                   "--out", str(out), *items], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "mesh_checkpoint.pt", "mesh.glb", "refined.glb", "refined.obj", "refined.ply",
                 "validation/mesh_step_000005.png", "manifest.json", ".scenescape-run.json"):
        assert (out / name).is_file(), name
    ck = torch.load(out / "mesh_checkpoint.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 7 and len(ck["losses"]) == 4 and all(torch.isfinite(torch.tensor(ck["losses"])))
    import trimesh

    tm = trimesh.load(out / "refined.ply", process=False)  # an independent reader
    assert len(tm.faces) > 20 and tm.visual.vertex_colors[:, :3].std() > 0
    mesh = load_mesh(out / "refined.glb")
    assert mesh.num_faces == len(tm.faces)

    # interrupted inside stage 2 and resumed: the same result as the uninterrupted run
    cfg = ObjectConfig.load("configs/object/magic3d-cpu-small.yaml", items + ["output.export=false"])
    part = ObjectPipeline(cfg).run("a ceramic mug", tmp_path / "part", stop_after=5)
    assert part.steps == 5
    assert torch.load(tmp_path / "part" / "mesh_checkpoint.pt", weights_only=True)["step"] == 5
    done = ObjectPipeline(cfg).run("a ceramic mug", tmp_path / "part", resume=True)
    assert done.steps == 7
    b = torch.load(tmp_path / "part" / "mesh_checkpoint.pt", weights_only=True)
    assert b["losses"] == pytest.approx(ck["losses"], rel=1e-5)
    assert torch.allclose(b["sdf"], ck["sdf"], atol=1e-5) and torch.allclose(b["deform"], ck["deform"], atol=1e-5)


def test_refined_mesh_is_written_in_the_frame_of_the_stage_one_mesh(tmp_path):
    """Stage 2 from a known, asymmetric stage-1 field: ``refined.ply`` lies on ``mesh.ply`` (both in the
    object frame, y up, facing +Z), checked with trimesh as the reader."""
    import trimesh
    from scipy.spatial import cKDTree

    from scenescape.fields.nerf import AnalyticField
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline
    from scenescape.pipelines.object.export import export_run_outputs
    from scenescape.pipelines.object.mesh_stage import run_mesh_stage

    items = ["resolution=16", "render.num_samples=12", "render.num_importance=4", "steps=1", "mesh.steps=1",
             "guidance={name: analytic, options: {mode: sds}}", "background.kind=solid", "progress=false",
             "output.video_frames=2", "output.video_size=16", "output.mesh_resolution=48",
             "mesh.tet_resolution=24", "mesh.resolution=32"]
    pipe = ObjectPipeline(ObjectConfig.load("configs/object/magic3d-cpu-small.yaml", items))
    fld = AnalyticField(shape="pair")  # two shapes off the centre: a flipped frame cannot coincide
    _, bg = pipe.build_models()
    export_run_outputs(fld, bg, pipe.config, tmp_path)
    run_mesh_stage(pipe, "x", tmp_path, fld, bg, pipe.build_guidance(), False, None, True)
    a = trimesh.load(tmp_path / "mesh.ply", process=False)
    b = trimesh.load(tmp_path / "refined.ply", process=False)
    d = cKDTree(a.vertices).query(b.vertices)[0]
    assert np.median(d) < 0.05 and np.percentile(d, 95) < 0.08, (np.median(d), np.percentile(d, 95))


def test_metric_sdf_keeps_the_surface_and_measures_distance_in_world_units():
    """A log-density level (slope 1/softness, saturating inside) becomes a signed distance: same zero set,
    ~1 world unit per unit near the surface, so ``mesh.lr_sdf`` is a distance per step."""
    from scenescape.fields.dmtet import DMTetGeometry, metric_sdf
    from scenescape.fields.nerf import AnalyticField

    fld = AnalyticField(shape="pair", softness=0.01, peak=200.0)
    geo = DMTetGeometry(32, 1.0)
    logd = geo.log_density(fld.density)
    level = float(np.log(50.0 + 1e-6)) - logd
    sdf = metric_sdf(level, 32, geo.cell)
    assert torch.equal(sdf < 0, level < 0)
    true = fld.sdf(geo.grid).amin(-1)
    near = (true.abs() < geo.cell) & (true > 0)  # outside, where the log density is linear in the distance
    offset = float(0.01 * np.log(200.0 / 50.0 - 1))  # the level-50 surface lies this far outside the true one
    err = (sdf[near] - (true[near] - offset)).abs()
    assert float(err.median()) < 0.15 * geo.cell, float(err.median())
    assert float(level[near].abs().median()) > 3 * float(sdf[near].abs().median())  # the raw level is not metric
    with torch.no_grad():
        geo.sdf.copy_(level)
        v0, f0 = geo.mesh()
        geo.sdf.copy_(sdf)
        v1, f1 = geo.mesh()
    assert torch.equal(f0, f1)
    # marching tets on the metric SDF places the vertices on the level-50 surface at least as well
    e0 = (fld.sdf(v0).amin(-1) - offset).abs()
    e1 = (fld.sdf(v1).amin(-1) - offset).abs()
    assert float(e1.median()) <= float(e0.median()) + 1e-4 and float(e1.median()) < 0.1 * geo.cell, (e0.median(), e1.median())


def test_stage_two_starts_from_the_iso_level_whose_silhouettes_match_the_nerf():
    """A NeRF's rendered silhouette (opacity > 0.5) lies outside its density iso-surfaces; the default
    ``mesh.init_views`` picks the level that matches it, at held-out views, where Otsu's split is small."""
    from scenescape.fields.nerf import AnalyticField
    from scenescape.fields.volume import render_cameras
    from scenescape.geometry.raster import rasterize
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline, eval_cameras, silhouette_iou
    from scenescape.pipelines.object.mesh_stage import MeshStage

    items = ["resolution=16", "steps=1", "mesh.steps=1", "guidance={name: analytic, options: {mode: sds}}",
             "background.kind=solid", "progress=false", "mesh.tet_resolution=32", "mesh.init_size=32"]
    fld = AnalyticField(shape="pair")  # soft: the 0.5-opacity contour is ~0.04 outside the zero level set
    ious = {}
    for views in (8, 0):
        pipe = ObjectPipeline(ObjectConfig.load("configs/object/magic3d-cpu-small.yaml", items + [f"mesh.init_views={views}"]))
        _, bg = pipe.build_models()
        st = MeshStage(pipe, fld, bg)
        st.init_geometry()
        cams = eval_cameras(pipe.config, 5, size=48, offset=23.0, elevation=20.0)  # not the calibration views
        op = render_cameras(fld, bg, cams, pipe.config.render, perturb=False).opacity
        v, f = st.geometry.mesh()
        cover = torch.stack([(rasterize(v.detach(), f, c)[0] >= 0).float() for c in cams])
        ious[views] = silhouette_iou(cover, op)
    assert ious[8] > 0.95, ious
    assert ious[8] > ious[0] + 0.05, ious
