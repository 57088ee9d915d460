"""`scenescape evaluate`: measures of a run on the oracle backends' runs, damaged frames, ground truth."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from scenescape.evaluation import OracleDepth, OracleInpainter, default_camera, make_world, suggest_trajectory
from scenescape.evaluation.measures import evaluate_run, load_run
from scenescape.evaluation.measures.cameras import camera_control
from scenescape.evaluation.measures.consistency import consistency_3d, flow_consistency, reprojection_pair
from scenescape.evaluation.measures.style import seam_visibility, style_drift
from scenescape.pipelines import SceneConfig, ScenePipeline
from scenescape.trajectories import build_trajectory

SIZE, FRAMES = 128, 10


def _make_run(out, world="room", backends="oracle", size=SIZE, frames=FRAMES):
    w = make_world(world)
    cam0 = default_camera(w, size, size, 500.0 * size / 512)
    cams = build_trajectory(suggest_trajectory(w, "forward_yaw", frames), cam0, frames)
    img0, dep0 = w.render(cam0)
    cfg = SceneConfig(width=size, height=size, focal=cam0.fx, frames=frames, prompt="a room with pillars")
    if backends == "oracle":
        pipe = ScenePipeline(depth=OracleDepth(world=w), inpainter=OracleInpainter(world=w), config=cfg)
    else:
        from scenescape.backends.depth import DepthCompletion
        from scenescape.backends.inpaint import OpenCVInpainter

        pipe = ScenePipeline(depth=DepthCompletion(), inpainter=OpenCVInpainter(), config=cfg)
    pipe.run(cameras=cams, init_image=img0.numpy(), init_depth=dep0.numpy(), out_dir=out, progress=False)
    return out


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    return load_run(_make_run(tmp_path_factory.mktemp("eval") / "oracle"))


def _shift(img, px):
    m = np.float32([[1, 0, px], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def _blur(img, sigma):
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0 else img.copy()


def _foreign(img, fraction, cam):
    """The left ``fraction`` of the columns replaced by the corridor world's view."""
    other, _ = make_world("corridor", 5).render(cam)
    out = img.copy()
    k = int(round(fraction * img.shape[1]))
    out[:, :k] = other.numpy()[:, :k]
    return out


def _noise(shape):
    """A foreign texture: saturated, slightly smoothed colour noise."""
    return _blur(np.random.default_rng(0).random(shape).astype(np.float32), 1.0)


def _increasing(values, what):
    assert all(b > a for a, b in zip(values, values[1:])), f"{what} not increasing with the damage: {values}"


def test_run_loads_from_its_files(oracle_run):
    r = oracle_run
    assert r.frames.shape == (FRAMES, SIZE, SIZE, 3) and r.depths.shape == (FRAMES, SIZE, SIZE)
    assert r.masks[0].all() and not r.masks[1:].all() and r.masks[1:].any()
    assert r.prompt == "a room with pillars" and r.kind == "scene"
    # frames are the run's 8-bit PNGs: read back independently with imageio
    import imageio.v3 as iio

    png = iio.imread(r.path / "frames" / "0003.png")
    assert np.abs(png / 255.0 - r.frames[3]).max() < 1e-6


def test_oracle_run_is_consistent_and_its_cameras_recovered(oracle_run):
    r = oracle_run
    res = evaluate_run(r, measures=["consistency_3d", "photometric", "camera", "seams"])["measures"]
    c3 = res["consistency_3d"]["summary"]
    assert c3["depth_abs_rel"] < 1e-3 and c3["colour_l1"] < 0.01 and c3["covisible"] > 0.5
    ph = res["photometric"]["summary"]
    assert ph["epe"] < 1.0 and ph["fb_error"] < 1.0
    cam = res["camera"]["summary"]
    assert cam["pairs_failed"] == 0
    assert cam["rotation_error_deg"] < 1.0 and cam["rotation_error_deg_median"] < 1.0
    assert cam["translation_error_deg_median"] < 10.0
    assert 0.8 < res["seams"]["summary"]["seam_ratio"] < 1.2


def test_3d_consistency_agrees_with_the_true_depth_error(oracle_run):
    """Frame 4's depth made wrong by a known relative error: the measure reports that error for it."""
    r = oracle_run
    measured = []
    for e in (0.01, 0.03, 0.1, -0.1):
        d = r.depths.copy()
        d[4] *= 1.0 + e
        pf = consistency_3d(r.frames, d, r.cameras, offsets=(1,))["per_frame"]["depth_abs_rel"]
        measured.append(pf[4])
        assert 0.6 * abs(e) < pf[4] < 1.4 * abs(e), (e, pf[4])
        others = [v for i, v in enumerate(pf) if i not in (3, 4, 5)]
        assert max(others) < 0.2 * abs(e)
    _increasing(measured[:3], "3D depth error")


def test_3d_consistency_is_occlusion_aware():
    """A point hidden behind an occluder in the neighbour is left out; a point seen through is an error."""
    w = make_world("room")
    cam = default_camera(w, 96, 96, 90.0)
    from scenescape.geometry.camera import Camera

    cam_j = cam.with_pose(Camera.look_at_pose((0.4, 0.0, 0.3), (0.2, 0.0, 3.0)))
    img_i, dep_i = w.render(cam)
    img_j, dep_j = w.render(cam_j)
    r = reprojection_pair(img_i, dep_i, cam, img_j, dep_j, cam_j)
    from scenescape.geometry.projection import unproject

    # independent: the world's own ray casting decides which of frame i's points camera j sees
    pts = unproject(dep_i, cam).double().reshape(-1, 3)
    true_hidden = ~w.visible_from(pts, cam_j.center.double(), rel_tol=1e-3).reshape(96, 96)
    inside = (r["uv"][..., 0] > 1) & (r["uv"][..., 0] < 95) & (r["uv"][..., 1] > 1) & (r["uv"][..., 1] < 95)
    hid = true_hidden & inside
    assert hid.float().mean() > 0.02  # the test sees real occlusions
    # all but contact edges (a box's foot on the floor: both depths within the tolerance) are left out
    assert int((r["covisible"] & hid).sum()) <= 0.01 * int(hid.sum())
    seen = r["covisible"] & ~hid
    assert float(r["depth_error"][seen].max()) < 0.01 and float(r["depth_error"][seen].median()) < 1e-4


@pytest.mark.parametrize("damage", ["shift", "blur", "foreign"])
def test_3d_colour_error_grows_with_damage(oracle_run, damage):
    r = oracle_run
    levels = {"shift": (0, 1, 2, 4), "blur": (0, 0.7, 1.5, 3), "foreign": (0, 0.2, 0.5, 1.0)}[damage]
    vals = []
    for lv in levels:
        f = r.frames.copy()
        f[5] = {"shift": _shift, "blur": _blur}[damage](f[5], lv) if damage != "foreign" else _foreign(f[5], lv, r.cameras[5])
        vals.append(consistency_3d(f[3:8], r.depths[3:8], r.cameras[3:8], offsets=(1,))["per_frame"]["colour_l1"][2])
    _increasing(vals, f"3D colour error ({damage})")


@pytest.mark.parametrize("damage", ["shift", "foreign"])
def test_photometric_error_grows_with_damage(oracle_run, damage):
    r = oracle_run
    levels = {"shift": (0, 1.5, 3, 6), "foreign": (0, 0.25, 0.5, 1.0)}[damage]
    vals = []
    for lv in levels:
        f = r.frames[3:7].copy()
        f[2] = _shift(f[2], lv) if damage == "shift" else _foreign(f[2], lv, r.cameras[5])
        res = flow_consistency(f, r.cameras[3:7], r.depths[3:7])["per_frame"]
        vals.append(res["epe"][2])
    _increasing(vals, f"flow EPE ({damage})")


def test_camera_error_grows_with_shifted_frames(oracle_run):
    """Shifting a frame sideways by s px looks like a yaw of atan(s / f)."""
    r = oracle_run
    vals = []
    for s in (0, 2, 4, 8):
        f = r.frames.copy()
        f[6] = _shift(f[6], s)
        pf = camera_control(f, r.cameras, r.depths)["per_frame"]["rotation_error_deg"]
        vals.append(pf[6])
    _increasing(vals, "rotation error")
    assert vals[-1] > 0.5 * np.degrees(np.arctan(8 / r.cameras[0].fx))


@pytest.mark.parametrize("damage", ["blur", "foreign"])
def test_style_drift_grows_with_damage(oracle_run, damage):
    r = oracle_run
    levels = {"blur": (0, 1, 2, 4), "foreign": (0, 0.25, 0.5, 1.0)}[damage]
    vals = []
    for lv in levels:
        f = r.frames[:4].copy()
        f[3] = _blur(f[3], lv) if damage == "blur" else (1 - lv) * f[3] + lv * _noise(f[3].shape)
        pf = style_drift(f)["per_frame"]
        vals.append(pf["style_drift"][3] + (pf["colour_drift"][3] if damage == "foreign" else 0.0))
    _increasing(vals, f"style drift ({damage})")
    if damage == "foreign":  # a foreign view is a jump in the step-to-step colour change too
        f = r.frames[:4].copy()
        f[3] = _noise(f[3].shape)
        assert style_drift(f)["per_frame"]["colour_step"][3] > 3 * style_drift(r.frames[:4])["per_frame"]["colour_step"][3]


@pytest.mark.parametrize("damage", ["offset", "foreign"])
def test_seam_visibility_grows_with_damage(oracle_run, damage):
    r = oracle_run
    i = next(k for k in range(1, FRAMES) if np.isfinite(seam_visibility(r.frames[k:k + 1], r.masks[k:k + 1],
                                                                         r.depths[k:k + 1])["per_frame"]["seam_ratio"][0]))
    levels = {"offset": (0, 0.03, 0.1, 0.3), "foreign": (0, 0.25, 0.5, 1.0)}[damage]
    vals = []
    for lv in levels:
        f = r.frames[i].copy()
        m = r.masks[i]
        if damage == "offset":
            f[m] = np.clip(f[m] + lv, 0, 1)
        else:
            other, _ = make_world("corridor", 5).render(r.cameras[i])
            f[m] = (1 - lv) * f[m] + lv * other.numpy()[m]
        vals.append(seam_visibility(f[None], m[None], r.depths[i:i + 1])["per_frame"]["seam_ratio"][0])
    _increasing(vals, f"seam ratio ({damage})")


@pytest.mark.slow
def test_evaluate_cli_writes_json_and_self_contained_report(oracle_run, tmp_path):
    pytest.importorskip("matplotlib")
    js, rep = tmp_path / "m.json", tmp_path / "r.html"
    p = subprocess.run([sys.executable, "-m", "scenescape", "evaluate", str(oracle_run.path), "--json", str(js),
                        "--report", str(rep), "--measures", "consistency_3d,style,seams"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "3D consistency: depth abs-rel" in p.stdout
    data = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["frames"] == FRAMES and set(data["measures"]) == {"consistency_3d", "style", "seams"}
    assert len(data["measures"]["consistency_3d"]["per_frame"]["colour_l1"]) == FRAMES
    page = rep.read_text()
    assert page.count("data:image/png;base64,") == 3 and "data:image/jpeg;base64," in page
    assert "src=\"http" not in page and "<link" not in page  # nothing outside the file
    pngs = sorted(x.name for x in (tmp_path / "r_plots").iterdir())
    assert pngs == ["consistency_3d.png", "seams.png", "style.png"]
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "r_plots" / "style.png").ndim == 3


def test_evaluate_cli_errors(tmp_path):
    from click.testing import CliRunner

    from scenescape.cli import cli
    from scenescape.errors import InputError
    from scenescape.evaluation.measures import RunData
    from scenescape.geometry.camera import Camera

    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path)])
    assert r.exit_code == 2 and "error:" in r.output and "not a scenescape run folder" in r.output
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    cam = Camera(20.0, 20.0, 8.0, 8.0, 16, 16)
    data = RunData(frames=np.zeros((2, 16, 16, 3), np.float32), cameras=[cam, cam])
    with pytest.raises(InputError, match="unknown measure"):
        evaluate_run(data, measures=["nope"])
    with pytest.raises(InputError, match="3 cameras"):
        RunData(frames=np.zeros((2, 16, 16, 3), np.float32), cameras=[cam, cam, cam])


@pytest.mark.slow
def test_object_run_is_evaluated_where_measures_apply(tmp_path):
    """An object run (config.yaml + video.mp4 of RGB | normals): its orbit cameras come from the config."""
    from scenescape.config import apply_overrides, save_yaml
    from scenescape.io import write_json, write_video
    from scenescape.pipelines.object.export import orbit_cameras
    from scenescape.pipelines.object.pipeline import ObjectConfig

    cfg = apply_overrides(ObjectConfig(), ["output.video_frames=36"])
    save_yaml(cfg, tmp_path / "config.yaml")
    write_json(tmp_path / "manifest.json", {"scenescape": "object", "prompt": "a chair"})
    c, o = cfg.camera, cfg.output
    cams = orbit_cameras(c.eval_radius, c.eval_elevation, c.eval_fov, o.video_size, o.video_frames)
    w = make_world("room")
    write_video(tmp_path / "video.mp4", [np.concatenate([w.render(k)[0].numpy()] * 2, axis=1) for k in cams], fps=20)
    r = load_run(tmp_path)
    assert r.kind == "object" and r.frames.shape == (36, 128, 128, 3) and r.prompt == "a chair"
    assert r.cameras[5] == cams[5]
    res = evaluate_run(r)
    assert set(res["measures"]) == {"photometric", "camera", "style"}
    assert {"consistency_3d", "seams"} <= set(res["skipped"])
    assert res["measures"]["camera"]["summary"]["rotation_error_deg_median"] < 3.0
    assert set(res["measures"]["photometric"]["summary"]) == {"fb_error", "fb_outliers"}
