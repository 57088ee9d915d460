"""Object mode building blocks: hash grid, fields, volume rendering, cameras and prompts."""

from __future__ import annotations

import math

import pytest
import torch

from scenescape.fields.hashgrid import PRIMES, HashGridEncoding
from scenescape.fields.nerf import AnalyticField, Background, BackgroundConfig, FieldConfig, NeRFField
from scenescape.fields.volume import RenderConfig, orbit_camera, render_cameras, sample_pdf, sphere_bounds
from scenescape.pipelines.object.pipeline import ObjectConfig, PromptConfig, view_name, view_prompt


def test_hashgrid_levels_dense_then_hashed_and_gradients_are_exact():
    enc = HashGridEncoding(levels=4, features_per_level=2, log2_hashmap_size=8, base_resolution=2,
                           max_resolution=16).double()
    assert enc._dense.tolist() == [True, True, False, False]  # (N+1)^3 <= 256 only for N = 2, 4
    assert enc.resolutions.tolist() == [2.0, 4.0, 8.0, 16.0]
    enc.embeddings.data.normal_()
    x = torch.rand(6, 3, dtype=torch.float64, requires_grad=True)
    assert enc(x).shape == (6, 8)
    assert torch.autograd.gradcheck(enc, (x,))
    assert torch.autograd.gradgradcheck(enc, (x,))  # normals by autograd train through it


def test_hashgrid_matches_reference_trilinear_hash_lookup():
    enc = HashGridEncoding(levels=2, features_per_level=1, log2_hashmap_size=6, base_resolution=2, max_resolution=7)
    enc.embeddings.data = torch.arange(enc.embeddings.shape[0], dtype=torch.float32)[:, None]
    x = torch.tensor([[0.3, 0.6, 0.9]])
    out = enc(x)[0]
    table = 64
    for lvl, n in enumerate([2, 7]):
        p = x[0] * n
        b = torch.floor(p).long()
        f = p - b
        dense = (n + 1) ** 3 <= table
        offset = 0 if lvl == 0 else 27
        ref = 0.0
        for c in range(8):
            bit = [(c >> k) & 1 for k in range(3)]
            v = [int(b[k]) + bit[k] for k in range(3)]
            idx = v[0] + v[1] * (n + 1) + v[2] * (n + 1) ** 2 if dense else \
                (v[0] * PRIMES[0] ^ v[1] * PRIMES[1] ^ v[2] * PRIMES[2]) % table
            w = math.prod(float(f[k]) if bit[k] else 1 - float(f[k]) for k in range(3))
            ref += w * (offset + idx)
        assert out[lvl].item() == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("encoding", ["hashgrid", "frequency"])
def test_field_blob_initialisation_and_normals(encoding):
    torch.manual_seed(0)
    fld = NeRFField(FieldConfig(encoding=encoding, levels=4, log2_hashmap_size=12, max_resolution=64, hidden=16,
                                frequencies=4, progressive_steps=100, blob_density=10.0, blob_radius=0.5))
    centre = fld.density(torch.zeros(1, 3))
    far = fld.density(torch.tensor([[0.95, 0.0, 0.0]]))
    assert centre.item() > 5.0 and far.item() < centre.item() / 3  # a ball of density in the middle
    assert fld.density(torch.tensor([[1.2, 0.0, 0.0]])).item() == 0.0  # outside the box
    sigma, albedo = fld(torch.rand(10, 3) - 0.5)
    assert sigma.shape == (10,) and albedo.shape == (10, 3) and (albedo > 0).all() and (albedo < 1).all()
    pts = torch.tensor([[0.4, 0.0, 0.0], [0.0, -0.4, 0.0], [0.0, 0.0, 0.4]])
    n = fld.normals(pts)
    assert ((n * pts / 0.4).sum(-1) > 0.9).all()  # the blob's normals point outwards
    if encoding == "frequency":
        fld.set_progress(0)
        assert fld.band_weights.sum().item() == 0.0
        fld.set_progress(100)
        assert torch.allclose(fld.band_weights, torch.ones(4))


def test_autograd_and_finite_difference_normals_agree():
    f = AnalyticField(softness=0.05)
    pts = torch.tensor([[0.3, 0.1, -0.1], [-0.2, 0.3, 0.2]])
    fd = f.normals(pts)
    f.normal_method = "autograd"
    ag = f.normals(pts)
    assert torch.allclose(fd, ag, atol=1e-3)


def test_render_sphere_opacity_depth_and_normals():
    fld = AnalyticField()
    bg = Background(BackgroundConfig(kind="solid", color=(0.0, 0.0, 1.0)))
    cam = orbit_camera(2.0, 0.0, 0.0, 50.0, 33)
    r = render_cameras(fld, bg, [cam], RenderConfig(num_samples=96, num_importance=64), perturb=False,
                       need_normals=True, bg_colors=torch.tensor([[0.0, 0.0, 1.0]]))
    assert r.rgb.shape == (1, 33, 33, 3) and r.depth.shape == (1, 33, 33) and r.normals.shape == (1, 33, 33, 3)
    assert r.opacity[0, 16, 16] > 0.99 and r.opacity[0, 0, 0] < 0.01
    assert torch.allclose(r.rgb[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)  # background
    # centre pixel sees the big sphere (centre (0, 0.05, 0), radius 0.38) from z = 2: z-depth ~ 2 - 0.377
    assert r.depth[0, 16, 16].item() == pytest.approx(2.0 - math.sqrt(0.38 ** 2 - 0.05 ** 2), abs=0.02)
    n = r.normals[0, 16, 16] / r.normals[0, 16, 16].norm()
    assert n[2].item() > 0.95  # facing the camera at +z
    assert r.orientation.item() < 1e-3  # outward normals: no orientation penalty


def test_shading_modes():
    fld = AnalyticField()
    bg = Background(BackgroundConfig(kind="solid"))
    cam = orbit_camera(2.0, 0.0, 0.0, 50.0, 17)
    cfg = RenderConfig(num_samples=64, num_importance=32)
    lit = render_cameras(fld, bg, [cam], cfg, shading="lambertian", lights=cam.center[None] * 2, perturb=False)
    dark = render_cameras(fld, bg, [cam], cfg, shading="lambertian", lights=-cam.center[None] * 2, perturb=False)
    alb = render_cameras(fld, bg, [cam], cfg, shading="albedo", perturb=False)
    tl = render_cameras(fld, bg, [cam], cfg, shading="textureless", lights=cam.center[None] * 2, perturb=False)
    c = (0, 8, 8)
    assert lit.rgb[c].sum() > 3 * dark.rgb[c].sum()  # a light behind the object leaves only ambient
    assert (lit.rgb[c] <= alb.rgb[c] + 1e-4).all()
    assert torch.allclose(tl.rgb[c], tl.rgb[c].mean().expand(3), atol=1e-4)  # grey


def test_sphere_bounds_and_pdf_sampling():
    o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 5.0, 3.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    near, far, hit = sphere_bounds(o, d, 1.0, 0.05)
    assert hit.tolist() == [True, False]
    assert near[0].item() == pytest.approx(2.0) and far[0].item() == pytest.approx(4.0)
    bins = torch.linspace(0, 1, 11)[None]
    w = torch.zeros(1, 10)
    w[0, 7] = 1.0
    s = sample_pdf(bins, w, 50, deterministic=True)
    assert ((s >= 0.7) & (s <= 0.8)).float().mean() > 0.9


def test_view_dependent_prompts():
    cfg = PromptConfig()
    assert view_name(0, 0, cfg) == "front" and view_name(30, 20, cfg) == "front"
    assert view_name(90, 0, cfg) == "side" and view_name(-100, 10, cfg) == "side"
    assert view_name(180, 0, cfg) == "back" and view_name(-150, 0, cfg) == "back" and view_name(200, 0, cfg) == "back"
    assert view_name(10, 70, cfg) == "overhead"
    assert view_prompt("a mug", 180, 0, cfg) == "a mug, back view"
    assert view_prompt("a mug", 180, 0, PromptConfig(view_dependent=False)) == "a mug"


def test_orbit_camera_looks_at_origin_from_above():
    cam = orbit_camera(2.0, 30.0, 90.0, 50.0, 16)
    c = cam.center
    assert c.norm().item() == pytest.approx(2.0, abs=1e-5)
    assert c[1].item() == pytest.approx(-1.0, abs=1e-5)  # above = -y (OpenCV world)
    assert c[0].item() > 1.7  # azimuth 90 = +x
    z_axis = cam.world_to_camera[2, :3]
    assert torch.allclose(z_axis, -c / c.norm(), atol=1e-5)


@pytest.mark.parametrize("override, word", [
    ("camera.radius=[0, 2]", "radius"), ("camera.fov=[10, 180]", "fov"), ("camera.eval_fov=0", "fov"),
    ("camera.elevation=[-100, 10]", "elevation"), ("steps=0", "steps"), ("nerf.encodng=frequency", "encoding"),
    ("render.num_samples=1", "num_samples"),
])
def test_bad_config_values_are_clear_errors(override, word):
    from scenescape.config import ConfigError

    with pytest.raises(ConfigError, match=word):
        ObjectConfig.load(None, [override])


def test_every_object_preset_loads():
    from pathlib import Path

    presets = sorted((Path(__file__).resolve().parents[1] / "configs" / "object").glob("*.yaml"))
    assert {p.name for p in presets} >= {"sds-cpu-small.yaml", "sds-gpu.yaml", "sjc-gpu.yaml", "analytic-cpu.yaml"}
    for p in presets:
        cfg = ObjectConfig.load(p)
        assert cfg.guidance.name in ("stable_diffusion", "analytic"), p
    assert ObjectConfig.load(presets[-1].parent / "sjc-gpu.yaml").guidance.options["mode"] == "sjc"
