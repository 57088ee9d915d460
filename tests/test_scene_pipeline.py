"""Scene pipeline: depth alignment, classical backends, SceneConfig, the loop with oracle backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenescape import Camera
from scenescape.backends.depth import DepthCompletion, GeometricPriorDepth
from scenescape.backends.inpaint import OpenCVInpainter
from scenescape.config import ConfigError
from scenescape.geometry.depth_align import (
    align_depth,
    blend_to_known,
    edge_weights,
    harmonic_fill,
    seam_correction,
)
from scenescape.pipelines import SceneConfig, ScenePipeline
from scenescape.pipelines.scene import composite

# ----------------------------------------------------------------------------- depth alignment


def _plane_disparity(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return 0.2 + 0.002 * xx + 0.004 * yy  # a plane's disparity is affine in the pixel coordinates


def test_align_recovers_known_scale_and_shift_with_outliers():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0.5, 3.0, (60, 80))
    known = 2.5 * pred + 0.7
    mask = rng.random((60, 80)) < 0.6
    bad = mask & (rng.random((60, 80)) < 0.08)  # 8% gross outliers
    known_bad = known.copy()
    known_bad[bad] *= rng.uniform(2.0, 5.0, bad.sum())
    aligned, s, t = align_depth(pred, known_bad, mask, space="depth")
    assert s == pytest.approx(2.5, rel=1e-6) and t == pytest.approx(0.7, abs=1e-6)
    assert torch.allclose(aligned, torch.as_tensor(known, dtype=torch.float32), rtol=1e-5)
    # a plain least-squares fit would be pulled far away by the outliers
    a = np.vstack([pred[mask], np.ones(mask.sum())]).T
    s_ls, _ = np.linalg.lstsq(a, known_bad[mask], rcond=None)[0]
    assert abs(s_ls - 2.5) > 0.1


def test_align_in_disparity_space():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 6.0, (40, 40))
    pred_disp = (1.0 / depth - 0.05) / 3.0  # relative disparity: 1/depth = 3 * pred + 0.05
    mask = rng.random((40, 40)) < 0.5
    aligned, s, t = align_depth(pred_disp, depth, mask, space="disparity")
    assert s == pytest.approx(3.0, rel=1e-6) and t == pytest.approx(0.05, abs=1e-7)
    assert torch.allclose(aligned, torch.as_tensor(depth, dtype=torch.float32), rtol=1e-4)


def test_align_output_is_positive_and_finite_and_errors_are_clear():
    pred = np.linspace(-1, 1, 400).reshape(20, 20)  # a fit that goes negative on part of the image
    known = np.where(pred > 0, 2 * pred + 0.1, 1.0)
    mask = pred > 0
    aligned, _, _ = align_depth(pred, known, mask)
    assert torch.isfinite(aligned).all() and (aligned > 0).all()
    with pytest.raises(ValueError, match="at least 16 known pixels"):
        align_depth(pred, known, np.zeros((20, 20), bool))
    with pytest.raises(ValueError, match="same"):
        align_depth(pred, known[:10], mask)
    with pytest.raises(ValueError, match="space"):
        align_depth(pred, known, mask, space="log")


def test_harmonic_fill_continues_a_plane_exactly():
    disp = _plane_disparity()
    fixed = np.ones_like(disp, bool)
    fixed[10:35, 15:50] = False
    out = harmonic_fill(disp, fixed)
    assert np.abs(out - disp).max() < 1e-9


def test_edge_weights_stop_bleeding_across_an_image_edge():
    h, w = 30, 40
    img = np.zeros((h, w, 3))
    img[:, 20:] = 1.0  # an image edge between columns 19 and 20
    vals = np.where(np.arange(w)[None, :] < 20, 1.0, 5.0) * np.ones((h, 1))
    fixed = np.zeros((h, w), bool)
    fixed[:, 0] = True
    fixed[:, -1] = True
    out_w = harmonic_fill(vals, fixed, weights=edge_weights(img, sigma=0.1))
    out_u = harmonic_fill(vals, fixed)
    # with edge weights each side takes its own boundary value; without, a linear ramp across
    assert np.abs(out_w[:, 1:19] - 1.0).max() < 0.1 and np.abs(out_w[:, 21:-1] - 5.0).max() < 0.1
    assert abs(out_u[5, 10] - (1.0 + 4.0 * 10 / 39)) < 1e-6


def test_seam_correction_removes_the_step_but_not_a_depth_edge():
    h, w = 40, 60
    known = np.full((h, w), 2.0)
    new = np.zeros((h, w), bool)
    new[:, 30:] = True
    aligned = np.full((h, w), 2.1)  # 5% too far: a step at the seam
    rng = np.random.default_rng(0)
    aligned[~new] *= np.exp(rng.normal(0, 0.02, (~new).sum()))  # a rough prediction (2% noise) on known pixels
    aligned[:, 28:30] = 2.1
    depth = blend_to_known(aligned, known, ~new, new).numpy()
    assert np.abs(depth[:, 30] - 2.0).max() < 0.01  # meets the old surface at the seam
    assert np.all(depth[:, ~new[0]] == 2.0)  # known pixels exactly kept
    assert np.all(np.diff(depth[5, 29:], axis=0) >= -1e-9)  # smooth: monotone towards the new value
    # a 3x jump is a real depth edge: left as predicted
    far = np.full((h, w), 6.0)
    f = seam_correction(far, known, ~new, new).numpy()
    assert np.allclose(f, 1.0)
    # an exact prediction (sigma ~ 0): a few bad known seam pixels (3% off) are not smeared into the new region
    exact = known.copy()
    k2 = known.copy()
    k2[10:13, 29] *= 1.03
    f = seam_correction(exact, k2, ~new, new).numpy()
    assert np.allclose(f, 1.0)
    f = seam_correction(exact, k2, ~new, new, adaptive=False).numpy()
    assert f[11, 30] > 1.005


def test_blend_rejects_bad_aligned_depth():
    known = np.ones((8, 8))
    new = np.zeros((8, 8), bool)
    new[:, 4:] = True
    bad = np.ones((8, 8))
    bad[0, 6] = np.nan
    with pytest.raises(ValueError, match="finite"):
        blend_to_known(bad, known, ~new, new)


# ----------------------------------------------------------------------------- classical backends


def _cam(h: int = 48, w: int = 64, f: float = 60.0) -> Camera:
    return Camera(f, f, w / 2, h / 2, w, h)


def test_opencv_inpainter_fills_mask_and_keeps_known_pixels():
    rng = np.random.default_rng(0)
    img = rng.random((48, 64, 3)).astype(np.float32)
    mask = np.zeros((48, 64), bool)
    mask[20:28, 30:40] = True
    for method in ("telea", "ns"):
        out = OpenCVInpainter(OpenCVInpainter.Config(method=method)).inpaint(img, mask, _cam(), "")
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.array_equal(out[~mask], img[~mask])
        smooth = np.full_like(img, 0.3)
        smooth_out = OpenCVInpainter(OpenCVInpainter.Config(method=method)).inpaint(smooth, mask, _cam(), "")
        assert np.abs(smooth_out[mask] - 0.3).max() < 4 / 255  # a flat image is continued flat (8-bit)
    with pytest.raises(ValueError, match="empty canvas"):
        OpenCVInpainter().inpaint(img, np.ones((48, 64), bool), _cam(), "")


def test_opencv_fsr_without_contrib_names_the_package():
    import cv2

    if hasattr(cv2, "xphoto"):
        inp = OpenCVInpainter(OpenCVInpainter.Config(method="fsr"))
        img = np.full((32, 32, 3), 0.5, np.float32)
        m = np.zeros((32, 32), bool)
        m[10:14, 10:14] = True
        assert np.array_equal(inp.inpaint(img, m, None, "")[~m], img[~m])
    else:
        with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
            OpenCVInpainter(OpenCVInpainter.Config(method="fsr"))


def test_depth_completion_continues_a_plane_and_keeps_known_depth():
    disp = _plane_disparity()
    depth = 1.0 / disp
    known = np.ones_like(depth, bool)
    known[12:30, 20:44] = False
    img = np.full((48, 64, 3), 0.5, np.float32)
    out = DepthCompletion().estimate(img, _cam(), np.where(known, depth, 0), known)
    assert np.array_equal(out[known], depth[known].astype(np.float32))
    assert np.abs(out / depth - 1).max() < 1e-4


def test_depth_completion_fills_a_disocclusion_from_the_background():
    h, w = 40, 60
    depth = np.full((h, w), 5.0)  # far wall
    depth[:, :20] = 1.0  # near occluder on the left
    known = np.ones((h, w), bool)
    known[:, 20:26] = False  # the background it hid, now seen
    img = np.full((h, w, 3), 0.5, np.float32)
    out = DepthCompletion().estimate(img, _cam(h, w), np.where(known, depth, 0), known)
    assert np.abs(out[:, 20:26] - 5.0).max() < 1e-3  # background, not stretched towards the occluder
    plain = DepthCompletion(DepthCompletion.Config(background_bias=False)).estimate(
        img, _cam(h, w), np.where(known, depth, 0), known)
    assert plain[:, 21].mean() < 4.0  # without the bias the fill is pulled to the occluder
    with pytest.raises(ValueError, match="init-depth"):
        DepthCompletion().estimate(img, _cam(h, w))


def test_geometric_prior_is_ground_plane_and_far_wall():
    cam = _cam(64, 64, 50.0)
    d = GeometricPriorDepth(GeometricPriorDepth.Config(camera_height=1.5, wall_distance=8.0)).estimate(
        np.zeros((64, 64, 3)), cam)
    v = 60 + 0.5 - cam.cy
    assert d[60, 5] == pytest.approx(1.5 * 50.0 / v, rel=1e-5)
    assert np.all(d[:32] == 8.0)  # above the horizon: the wall
    assert np.all(d > 0) and np.all(d <= 8.0)
    assert np.all(np.diff(d[33:, 0]) <= 0)  # ground comes nearer towards the bottom


def test_backends_are_registered_by_name():
    from scenescape.backends import DEPTH, INPAINTERS, build_backend

    assert isinstance(build_backend(INPAINTERS, "opencv", {"method": "ns"}), OpenCVInpainter)
    assert isinstance(build_backend(DEPTH, "completion", {}), DepthCompletion)
    assert isinstance(build_backend(DEPTH, "prior", {"wall_distance": 3}), GeometricPriorDepth)
    with pytest.raises(ConfigError, match="radius"):
        build_backend(INPAINTERS, "opencv", {"radiuss": 2})


# ----------------------------------------------------------------------------- config


def test_scene_config_unknown_keys_name_the_nearest():
    with pytest.raises(ConfigError, match="inpaintr.*'inpainter'"):
        SceneConfig.load(None, ["inpaintr.name=opencv"])
    with pytest.raises(ConfigError, match="mask.dilat.*'dilate'"):
        SceneConfig.load(None, ["mask.dilat=2"])
    with pytest.raises(ConfigError, match="trajectory.parms.*'params'"):
        from scenescape.config import from_dict

        from_dict(SceneConfig, {"trajectory": {"name": "forward", "parms": {}}})
    with pytest.raises(ConfigError, match="first_frame"):
        SceneConfig.load(None, ["first_frame=magic"])
    with pytest.raises(ConfigError, match="frames"):
        SceneConfig(frames=0)


def test_scene_config_trajectory_forms_and_presets_load():
    from pathlib import Path

    from scenescape.trajectories import TrajectoryConfig

    assert SceneConfig(trajectory="forward").trajectory == TrajectoryConfig(name="forward")
    cfg = SceneConfig.load(None, ["trajectory.name=orbit", "trajectory.params={radius: 2.0}", "seed=5"])
    assert cfg.trajectory.params == {"radius": 2.0} and cfg.seed == 5
    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"offline.yaml", "cpu-tiny.yaml"} <= set(names)
    for p in root.glob("*.yaml"):
        c = SceneConfig.load(p)
        assert c.to_dict()["trajectory"]["name"]


# ----------------------------------------------------------------------------- composite and loop


def test_composite_keeps_known_pixels_exactly_and_feathers_inside_only():
    rng = np.random.default_rng(0)
    rendered = rng.random((32, 32, 3)).astype(np.float32)
    inpainted = rng.random((32, 32, 3)).astype(np.float32)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    valid = np.ones((32, 32), bool)
    valid[10:22, 10:22] = False
    out = composite(inpainted, rendered, valid, mask, feather=2)
    assert np.array_equal(out[~mask], rendered[~mask])
    assert np.array_equal(out[~valid], inpainted[~valid])
    ring = mask & valid
    assert not np.array_equal(out[ring], inpainted[ring])  # feathered towards the render


def _oracle_run(world: str, kind: str, size: int, frames: int, **cfg_kw):
    from scenescape.evaluation import (
        OracleDepth,
        OracleInpainter,
        default_camera,
        make_world,
        suggest_trajectory,
    )
    from scenescape.trajectories import build_trajectory

    w = make_world(world)
    cam0 = default_camera(world, size, size, 500.0 * size / 512)
    cams = build_trajectory(suggest_trajectory(world, kind, frames), cam0, frames)
    img0, dep0 = w.render(cam0)
    cfg = SceneConfig(width=size, height=size, focal=500.0 * size / 512, frames=frames, **cfg_kw)
    pipe = ScenePipeline(depth=OracleDepth(world=w), inpainter=OracleInpainter(world=w), config=cfg)
    return w, cams, pipe.run(cameras=cams, init_image=img0, init_depth=dep0, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("world,kind", [("room", "forward_yaw"), ("corridor", "backward")])
def test_oracle_pipeline_reaches_the_fidelity_bars(world, kind):
    """The loop (composite, alignment, seam correction) must not lose what the geometry core can do.

    At 192 px / 6 frames (the size the geometry tests use): the issue's coverage and floating bars, and
    depth abs-rel within the bar or within 5% of the plain geometric loop (``fuse_with_oracle``) on the
    same cameras (at this size the core itself sits near the 0.0015 bar on some paths; the 512 px
    figures are in benchmarks/RESULTS.md)."""
    from scenescape.evaluation import evaluate_mesh, fuse_with_oracle, held_out_cameras

    w, cams, res = _oracle_run(world, kind, 192, 6)
    assert len(res.frames) == 6 and len(res.masks) == 6 and len(res.depths) == 6
    assert all(m.any() for m in res.masks[1:]), "every frame after the first has new pixels"
    held = held_out_cameras(cams, n_perturbed=2)
    ev = evaluate_mesh(res.mesh, w, held, train_cameras=cams)["summary"]
    assert ev["coverage"]["median"] >= 0.998 and ev["coverage"]["min"] >= 0.995, ev["coverage"]
    assert ev["floating"]["median"] <= 0.001 and ev["floating"]["max"] <= 0.005, ev["floating"]
    core_mesh, _ = fuse_with_oracle(w, cams)
    core = evaluate_mesh(core_mesh, w, held, train_cameras=cams)["summary"]
    assert ev["abs_rel"]["median"] <= max(0.0015, 1.05 * core["abs_rel"]["median"]), (ev["abs_rel"], core["abs_rel"])
    assert ev["coverage"]["median"] >= core["coverage"]["median"] - 1e-3
    assert ev["psnr"]["median"] > 25
    # same geometry as the core loop, up to the tiny alignment/seam corrections of the oracle depth
    assert abs(res.mesh.num_faces - core_mesh.num_faces) <= 0.002 * core_mesh.num_faces


def test_pipeline_is_deterministic_and_from_config_builds_backends(tmp_path):
    from scenescape.evaluation import default_camera, make_world

    cfg = SceneConfig.load(None, ["width=64", "height=64", "focal=62.5", "frames=4", "scene_scale=1.0",
                                  "trajectory.name=forward_yaw", "trajectory.params={step: 0.05}"])
    cam0 = default_camera("room", 64, 64, 62.5)
    img, dep = make_world("room").render(cam0)
    a = ScenePipeline.from_config(cfg).run(init_image=img, init_depth=dep, start_camera=cam0, progress=False)
    b = ScenePipeline.from_config(cfg).run(init_image=img, init_depth=dep, start_camera=cam0, progress=False)
    assert len(a.frames) == 4
    for fa, fb in zip(a.frames, b.frames):
        assert np.array_equal(fa, fb)
    assert torch.equal(a.mesh.vertices, b.mesh.vertices) and torch.equal(a.mesh.faces, b.mesh.faces)
    # known pixels of every frame are the render of the mesh as it was before that frame (exactly)
    for m, f in zip(a.masks[1:], a.frames[1:]):
        assert m.any() and not m.all() and f.shape == (64, 64, 3)
    assert a.cameras[0] == cam0 and not math.isclose(float(a.cameras[-1].center[2]), float(cam0.center[2]))


def test_pipeline_input_errors_are_clear():
    pipe = ScenePipeline.from_config(SceneConfig(width=32, height=32, focal=30.0, frames=2))
    img = np.full((32, 32, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="prompt is needed"):
        pipe.run(prompt="", progress=False)  # the opencv inpainter would have to make frame 0
    with pytest.raises(ValueError, match="NaN"):
        pipe.run(init_image=img, init_depth=np.full((32, 32), np.nan), progress=False)
    with pytest.raises(ValueError, match="zero or negative"):
        pipe.run(init_image=img, init_depth=np.zeros((32, 32)), progress=False)
    with pytest.raises(ValueError, match="shape"):
        pipe.run(init_image=img, init_depth=np.ones((16, 32)), progress=False)
    with pytest.raises(ValueError, match="first_depth.name=prior"):
        pipe.run(init_image=img, progress=False)  # completion cannot make a first depth
    with pytest.raises(ValueError, match="RGB"):
        pipe.run(init_image=np.ones((32, 32, 2)), progress=False)


class _SpyInpainter:
    """Returns noise inside the mask and records what it was given (the render with the mask cut out)."""

    def __init__(self):
        self.calls = []

    def inpaint(self, image, mask, camera, prompt, seed=None, negative_prompt=None):
        image, mask = np.asarray(image), np.asarray(mask)
        self.calls.append((image.copy(), mask.copy(), seed))
        noise = np.random.default_rng(seed).random(image.shape).astype(np.float32)
        return np.where(mask[..., None], noise, image)


def test_known_pixels_stay_exactly_the_rendered_ones_and_seeds_are_per_frame():
    from scenescape.evaluation import default_camera, make_world

    cam0 = default_camera("room", 64, 64, 62.5)
    img, dep = make_world("room").render(cam0)
    spy = _SpyInpainter()
    cfg = SceneConfig.load(None, ["width=64", "height=64", "focal=62.5", "frames=4", "scene_scale=1.0", "seed=11",
                                  "trajectory.name=forward_yaw", "trajectory.params={step: 0.05}",
                                  "mask.opening=3", "mask.supersample=2", "mask.border_fix=true",
                                  "mask.border_pad=16"])
    res = ScenePipeline(depth=DepthCompletion(), inpainter=spy, config=cfg).run(
        init_image=img, init_depth=dep, start_camera=cam0, progress=False)
    assert len(spy.calls) == 3
    from scenescape.backends import seed_for_frame

    for i, (given, inpaint_mask, seed) in enumerate(spy.calls, start=1):
        new = res.masks[i]
        assert seed == seed_for_frame(11, i)
        assert np.array_equal(res.frames[i][~new], given[~new])  # exactly the render outside the new pixels
        assert (inpaint_mask <= new).all()  # opening: slivers are Telea-filled, not inpainted
        far = new & (composite_distance(new) > 3)
        assert np.allclose(res.frames[i][far], np.random.default_rng(seed).random(given.shape)[far], atol=1e-6)
        d = res.depths[i]
        assert np.isfinite(d).all() and (d > 0).all()


def composite_distance(mask):
    import cv2

    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
