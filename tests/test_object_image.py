"""Image to object (RealFusion): reference view, masks, reconstruction loss, textual inversion, CLI, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from scenescape.errors import InputError
from scenescape.fields.volume import RenderConfig, orbit_camera, render_cameras
from scenescape.pipelines.object import AnalyticTarget, ObjectConfig, ObjectPipeline, eval_cameras, psnr
from scenescape.pipelines.object.image import (
    ImageConfig,
    ReferenceConfig,
    estimate_radius,
    grabcut_mask,
    image_prompt,
    object_mask,
    reference_view,
)

REF = dict(radius=1.8, elevation=0.0, azimuth=0.0, fov=40.0)
REF_RES = 24
STEPS = 150


def _analytic_photo(path, size: int = 64) -> np.ndarray:
    """The known object at the reference camera as an RGBA PNG (alpha = opacity); returns the alpha."""
    tgt = AnalyticTarget(RenderConfig())
    cam = orbit_camera(REF["radius"], REF["elevation"], REF["azimuth"], REF["fov"], size)
    out = render_cameras(tgt.field, tgt.background, [cam], tgt.cfg, bg_colors=torch.zeros(1, 3), perturb=False)
    a = out.opacity[0].clamp(0, 1)
    col = (out.rgb[0] / a.clamp_min(1e-4)[..., None]).clamp(0, 1)  # on black: rgb = a * colour
    rgba = torch.cat([col, a[..., None]], -1).numpy()
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8)).save(path)
    return a.numpy()


SMALL = [
    "resolution=16", "guidance.name=analytic", "nerf.levels=8", "nerf.log2_hashmap_size=14",
    "nerf.max_resolution=128", "nerf.hidden=32", "nerf.layers=1", "render.num_samples=24", "render.num_importance=8",
    "background.kind=random_solid", "shading.albedo_steps=100000", "loss.orientation_start=0",
    "loss.orientation_end=0", "camera.elevation=[-10, 45]", "optim.lr=0.02", "output.val_every=0",
    "output.checkpoint_every=0", "output.export=false", "progress=false",
    "image.textual_inversion.enabled=false", "image.prompt=an object", f"image.reference.resolution={REF_RES}",
    "image.loss.normal_smooth=0",
    # the prior knows the object only coarsely (8x8): the photo brings the detail at its view
    "guidance.options={mode: sds, resolution: 8}",
]


@pytest.mark.slow
def test_image_to_object_reaches_the_bars_and_needs_the_reconstruction_loss(tmp_path):
    photo = tmp_path / "photo.png"
    _analytic_photo(photo)
    ref_cam = orbit_camera(REF["radius"], 0.0, 0.0, REF["fov"], REF_RES)

    def run(extra):
        cfg = ObjectConfig.load(None, SMALL + [f"steps={STEPS}", f"image.path={photo}", *extra])
        pipe = ObjectPipeline(cfg)
        res = pipe.run(None, tmp_path / f"run{len(extra)}")
        cams = [ref_cam] + eval_cameras(cfg, 6, size=REF_RES, offset=17.0, elevation=10.0)  # held out
        target = AnalyticTarget(cfg.render).render(cams, background=torch.ones(len(cams), 3))
        out = pipe.render_views(res.field, res.background, cams).rgb
        return [psnr(out[i], target[i]) for i in range(len(cams))], res

    with_rec, res = run([])
    assert (res.out_dir / "reference.png").is_file() and (res.out_dir / "reference_mask.png").is_file()
    assert with_rec[0] >= 30.0, with_rec
    assert min(with_rec[1:]) >= 22.0, with_rec
    without, _ = run(["image.loss.image=0", "image.loss.mask=0"])
    assert without[0] <= with_rec[0] - 2.0, (with_rec, without)


def test_mask_sources_alpha_file_and_grabcut(tmp_path):
    photo = tmp_path / "photo.png"
    alpha = _analytic_photo(photo, 48)
    cfg = ImageConfig(path=str(photo), reference=ReferenceConfig(resolution=32))
    ref = reference_view(cfg, RenderConfig())
    assert ref.mask_source == "alpha" and ref.rgb.shape == (32, 32, 3) and ref.mask.shape == (32, 32)
    assert ref.rgb[0, 0].tolist() == [1.0, 1.0, 1.0]  # composited on white outside the object
    assert abs(float(ref.mask.mean()) - float(alpha.mean())) < 0.02
    # a mask file wins over the alpha channel
    m = np.zeros((48, 48), np.uint8)
    m[10:30, 12:40] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    cfg = ImageConfig(path=str(photo), mask=str(tmp_path / "mask.png"))
    rgb = np.asarray(Image.open(photo).convert("RGB")).astype(np.float32) / 255
    got, src = object_mask(rgb, alpha, cfg)
    assert src == "file" and got.sum() == 20 * 28
    # GrabCut finds a coloured disc on a noisy, differently coloured background (no alpha, no mask)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 30) ** 2 + (xx - 34) ** 2 < 15 ** 2
    rng = np.random.default_rng(0)
    img = np.clip(np.where(disc[..., None], [0.85, 0.2, 0.1], [0.2, 0.5, 0.8]) + rng.normal(0, 0.04, (64, 64, 3)), 0, 1)
    gc = grabcut_mask(img.astype(np.float32))
    iou = (gc & disc).sum() / (gc | disc).sum()
    assert iou > 0.9, iou


def test_estimated_reference_distance_matches_the_render(tmp_path):
    # a sphere of radius 0.4 at distance 2.0: the estimate from its rendered silhouette recovers ~2.0
    class Sphere(torch.nn.Module):
        def density(self, x):
            return 80 * torch.sigmoid((0.4 - x.norm(dim=-1)) / 0.005)

        def forward(self, x):
            return self.density(x), torch.ones_like(x) * 0.5

    cam = orbit_camera(2.0, 0.0, 0.0, 40.0, 96)
    out = render_cameras(Sphere(), lambda d, solid=None: torch.ones_like(d), [cam], RenderConfig(num_samples=96),
                         bg_colors=torch.ones(1, 3), perturb=False)
    d = estimate_radius(out.opacity[0].numpy() > 0.5, 40.0, object_radius=0.4)
    assert abs(d - 2.0) < 0.1, d


def test_bad_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(empty)  # fully transparent: no object
    with pytest.raises(InputError, match="no object found"):
        reference_view(ImageConfig(path=str(empty)), RenderConfig())
    photo = tmp_path / "photo.png"
    _analytic_photo(photo, 48)
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="48x40 but the photo is 48x48"):
        reference_view(ImageConfig(path=str(photo), mask=str(tmp_path / "small.png")), RenderConfig())
    for bad, match in (({"radius": 0.5}, "out of range"), ({"elevation": 120.0}, "elevation"),
                       ({"fov": 179.0}, "fov")):
        with pytest.raises(InputError, match=match):
            reference_view(ImageConfig(path=str(photo), reference=ReferenceConfig(**bad)), RenderConfig())
    with pytest.raises(InputError, match="does not exist"):
        reference_view(ImageConfig(path=str(tmp_path / "nope.png")), RenderConfig())
    # through the CLI: exit 2 with the message, nothing written
    from scenescape.cli import cli

    res = CliRunner().invoke(cli, ["object", "--image", str(empty), "--out", str(tmp_path / "run"), "--quiet",
                                   "guidance.name=analytic", "image.textual_inversion.enabled=false", "steps=1"])
    assert res.exit_code == 2 and "no object found" in res.output, res.output
    assert not (tmp_path / "run").exists()


def test_image_prompt_places_the_token():
    cfg = ImageConfig()
    assert image_prompt(None, cfg) == "a photo of a <object>"
    assert image_prompt("a teddy bear", cfg) == "a teddy bear <object>"
    assert image_prompt("{token} on a table", cfg) == "<object> on a table"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from scenescape.testing.tiny import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("tiny") / "sd")


@pytest.mark.slow
def test_textual_inversion_moves_the_token_lowers_its_loss_and_reloads(tmp_path, tiny_sd):
    from scenescape.backends import GUIDANCE, build_backend
    from scenescape.backends.guidance.textual_inversion import TextualInversionConfig, train_textual_inversion

    g = build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32})
    img = np.full((48, 48, 3), 0.9, np.float32)
    img[10:40, 12:36] = [0.9, 0.2, 0.1]
    img[20:30, 18:30] = [0.1, 0.3, 0.9]
    mask = np.zeros((48, 48), bool)
    mask[10:40, 12:36] = True
    cfg = TextualInversionConfig(steps=30, lr=0.1, batch_size=4, save_every=10)
    path = train_textual_inversion(g.model, img, mask, tmp_path / "ti", cfg, seed=0)
    summary = json.loads((tmp_path / "ti" / "summary.json").read_text())
    assert summary["moved"] > 0.1
    assert summary["loss_after"] < summary["loss_before"], summary
    trained = g.model.embed("a photo of a <object>")
    # a fresh model loads the run folder's embedding with diffusers' loader: same text embedding
    g2 = build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32})
    before_emb = g2.model.embed("a photo of a object")
    g2.model.load_textual_inversion(path, "<object>")
    assert torch.allclose(g2.model.embed("a photo of a <object>"), trained, atol=1e-6)
    assert not torch.allclose(trained, before_emb, atol=1e-3)
    # finished: reused as is (the file is not rewritten); a different config is refused
    mtime = path.stat().st_mtime_ns
    g3 = build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32})
    assert train_textual_inversion(g3.model, img, mask, tmp_path / "ti", cfg, seed=0) == path
    assert path.stat().st_mtime_ns == mtime and "<object>" in g3.model.tokenizer.get_vocab()
    with pytest.raises(InputError, match="another textual-inversion config"):
        g4 = build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32})
        train_textual_inversion(g4.model, img, mask, tmp_path / "ti", TextualInversionConfig(steps=31), seed=0)


@pytest.mark.slow
def test_textual_inversion_resumes_to_the_same_embedding(tmp_path, tiny_sd):
    from safetensors.torch import load_file

    from scenescape.backends import GUIDANCE, build_backend
    from scenescape.backends.guidance.textual_inversion import TextualInversionConfig, train_textual_inversion

    img = np.full((32, 32, 3), 0.8, np.float32)
    img[8:24, 8:24] = [0.2, 0.6, 0.3]
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    cfg = TextualInversionConfig(steps=6, lr=0.05, save_every=3)

    def model():
        return build_backend(GUIDANCE, "stable_diffusion", {"model": tiny_sd, "resolution": 32}).model

    full = load_file(train_textual_inversion(model(), img, mask, tmp_path / "a", cfg))["<object>"]
    # an interrupted 6-step run leaves its step-3 state and no embedding; a 3-step run's final state is that state
    import dataclasses

    part = dataclasses.replace(cfg, steps=3)
    train_textual_inversion(model(), img, mask, tmp_path / "c", part)
    st = torch.load(tmp_path / "c" / "state.pt", weights_only=True)
    st["config"]["steps"] = 6  # the state a 6-step run leaves after its step-3 save
    st["step"] = 3
    (tmp_path / "b").mkdir()
    torch.save(st, tmp_path / "b" / "state.pt")
    resumed = load_file(train_textual_inversion(model(), img, mask, tmp_path / "b", cfg))["<object>"]
    assert torch.allclose(resumed, full, atol=1e-6)


@pytest.mark.slow
def test_object_cli_image_end_to_end_with_tiny_sd(tmp_path, tiny_sd):
    from scenescape.cli import cli
    from scenescape.io import read_video

    photo = tmp_path / "photo.png"
    _analytic_photo(photo, 48)
    out = tmp_path / "run"
    args = ["object", "--image", str(photo), "--out", str(out), "--steps", "2", "--quiet",
            "resolution=16", "nerf.levels=4", "nerf.log2_hashmap_size=12", "nerf.max_resolution=64",
            "nerf.hidden=16", "render.num_samples=12", "render.num_importance=4", "image.reference.resolution=16",
            f"guidance.options={{model: '{tiny_sd}', resolution: 32, guidance_scale: 7.5}}",
            "image.textual_inversion.steps=3", "image.textual_inversion.batch_size=1",
            "output.val_every=0", "output.checkpoint_every=1", "output.video_frames=3", "output.video_size=16",
            "output.mesh_resolution=24"]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "mesh.glb", "mesh.obj", "mesh.ply", "video.mp4", "reference.png",
                 "reference_mask.png", "textual_inversion/learned_embeds.safetensors", "manifest.json"):
        assert (out / name).is_file(), name
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["prompt"] == "a photo of a <object>" and ck["step"] == 2
    assert read_video(out / "video.mp4").shape[0] == 3
    # resume to more steps: the learned embedding is reused, not retrained
    emb = (out / "textual_inversion/learned_embeds.safetensors").read_bytes()
    res = CliRunner().invoke(cli, ["object", "--resume", str(out), "--steps", "3", "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert (out / "textual_inversion/learned_embeds.safetensors").read_bytes() == emb


def test_reference_loss_terms_normals_and_depth(tmp_path):
    from scenescape.backends.base import BackendConfig
    from scenescape.fields.nerf import Background, BackgroundConfig, FieldConfig, NeRFField
    from scenescape.pipelines.object.image import (
        ImageLossConfig,
        ReferenceLoss,
        normal_smoothness,
        pearson_depth_loss,
    )

    flat = torch.zeros(8, 8, 3)
    flat[..., 2] = 1.0
    assert normal_smoothness(flat).item() == 0.0
    assert normal_smoothness(torch.randn(8, 8, 3)).item() > 0.5
    d = torch.rand(16, 16) + 1
    m = torch.ones(16, 16)
    assert pearson_depth_loss(d, 2 * d + 1, m).item() == pytest.approx(0.0, abs=1e-5)  # scale/shift invariant
    assert pearson_depth_loss(d, -d, m).item() == pytest.approx(2.0, abs=1e-5)
    photo = tmp_path / "photo.png"
    _analytic_photo(photo, 32)
    cfg = ImageConfig(path=str(photo), reference=ReferenceConfig(resolution=12),
                      loss=ImageLossConfig(normal_smooth=0.5, depth=1.0), depth=BackendConfig(name="prior"))
    ref = reference_view(cfg, RenderConfig())
    ref.depth = torch.linspace(1, 2, 12)[:, None].expand(12, 12).clone()
    fld = NeRFField(FieldConfig(levels=4, log2_hashmap_size=10, max_resolution=32, hidden=8))
    bg = Background(BackgroundConfig(kind="solid"))
    loss, stats = ReferenceLoss(ref, cfg, RenderConfig(num_samples=8, num_importance=0))(
        0, fld, bg, torch.Generator().manual_seed(0))
    loss.backward()
    assert {"ref_image", "ref_mask", "ref_normal_smooth", "ref_depth"} <= set(stats)
    assert all(p.grad is not None for p in fld.parameters() if p.requires_grad)


def test_photo_with_exif_orientation_and_alpha_comes_out_upright_with_its_mask(tmp_path):
    """A phone photo (EXIF orientation 6: the stored pixels are rotated) with an alpha mask: RGB and alpha
    are both turned upright, as scene mode's reader turns them."""
    from PIL import Image

    from scenescape.io import load_image
    from scenescape.pipelines.object.image import load_rgba

    h, w = 6, 10
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = np.arange(w, dtype=np.uint8)[None] * 20  # red ramps to the right
    rgba[:2, :3, 3] = 255  # opaque top-left corner of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    Image.fromarray(rgba, "RGBA").save(tmp_path / "p.png", exif=exif)
    rgb, alpha = load_rgba(tmp_path / "p.png")
    assert rgb.shape == (w, h, 3) and alpha.shape == (w, h)  # upright: the stored image turned 90 degrees
    upright = np.rot90(rgba, k=-1)  # what a viewer shows for orientation 6
    assert np.allclose(alpha, upright[..., 3] / 255.0)
    assert np.allclose(rgb[..., 0], upright[..., 0] / 255.0, atol=1 / 255)
    assert np.allclose(rgb, load_image(tmp_path / "p.png"), atol=1e-6)  # the same reader as scene mode
