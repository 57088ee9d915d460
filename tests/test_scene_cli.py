"""CLI: `scenescape demo`, `generate`, `render`, `export`; every bad input gives one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scenescape.cli import cli
from scenescape.io import read_video, save_image, save_npy, write_json
from scenescape.io.meshes import load_mesh

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "cpu-tiny.yaml")


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _text(res) -> str:
    return res.output  # click >= 8.2: stdout and stderr interleaved


def _error_lines(res) -> list[str]:
    return [line for line in _text(res).splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 64x64 start frame (image.png, depth.npy, camera.json) from the synthetic room."""
    from scenescape.evaluation import default_camera, make_world

    d = tmp_path_factory.mktemp("photo")
    cam = default_camera("room", 64, 64, 62.5)
    img, dep = make_world("room").render(cam)
    save_image(d / "image.png", img.numpy())
    save_npy(d / "depth.npy", dep.numpy())
    write_json(d / "camera.json", cam.to_dict())
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, photo):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    res = invoke("generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", photo / "depth.npy",
                 "--out", out, "--quiet", "seed=3")
    assert res.exit_code == 0, _text(res)
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- happy paths


def test_demo_writes_every_output(tmp_path):

    out = tmp_path / "demo"
    res = invoke("demo", "--out", out, "--frames", 4, "--size", 64)
    assert res.exit_code == 0, _text(res)
    text = _text(res)
    assert f"video: {out / 'video.mp4'}" in text and f"mesh: {out / 'mesh.glb'}" in text
    for i in range(4):
        for rel in (f"frames/{i:04d}.png", f"depth/{i:04d}.npy", f"depth/{i:04d}.png", f"masks/{i:04d}.png"):
            assert (out / rel).is_file(), rel
    d = np.load(out / "depth" / "0002.npy")
    assert d.shape == (64, 64) and np.isfinite(d).all() and (d > 0).all()
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["seed"] == 0 and cfg["width"] == 64 and cfg["inpainter"]["name"] == "opencv"
    cams = json.loads((out / "cameras.json").read_text())["cameras"]
    assert len(cams) == 4 and len(cams[0]["world_to_camera"]) == 4
    tr = json.loads((out / "transforms.json").read_text())
    assert len(tr["frames"]) == 4 and tr["frames"][1]["file_path"] == "frames/0001.png"
    assert "transform_matrix" in tr["frames"][0] and tr["frames"][0]["fl_x"] == pytest.approx(62.5)
    video = read_video(out / "video.mp4")
    assert video.shape == (4, 64, 64, 3)
    mesh = load_mesh(out / "mesh.glb")
    ply = load_mesh(out / "mesh.ply")
    assert mesh.num_faces == ply.num_faces > 64 * 64
    assert float(mesh.colors.std()) > 0.02  # vertex colours, not a uniform grey
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 0 and man["frames"] == 4 and "torch" in man["versions"]
    assert man["backends"]["depth"]["name"] == "completion" and man["timings_s"]["render"] > 0
    assert len(man["frame_times_s"]) == 4


def test_generate_from_photo_with_overrides(tiny_run):
    import yaml

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert cfg["seed"] == 3 and cfg["frames"] == 4
    assert len(list((tiny_run / "frames").glob("*.png"))) == 4
    masks = [np.asarray(__import__("imageio.v3").v3.imread(p)) for p in sorted((tiny_run / "masks").glob("*.png"))]
    assert masks[0].min() == 255 and 0 < (masks[2] > 0).mean() < 0.5  # frame 0 all new; later frames partly


def test_generate_photo_without_depth_uses_the_prior(tmp_path, photo):
    out = tmp_path / "r"
    res = invoke("generate", "--config", TINY, "--image", photo / "image.png", "--out", out, "--quiet",
                 "frames=2")
    assert res.exit_code == 0, _text(res)
    man = json.loads((out / "manifest.json").read_text())
    assert man["backends"]["first_depth"]["name"] == "prior"
    # the CLI says that the prior is a layout guess and how to give real depth
    warn = [ln for ln in _text(res).splitlines() if ln.startswith("warning:") and "layout prior" in ln]
    assert len(warn) == 1 and "--init-depth" in warn[0] and "depth model" in warn[0]
    res = invoke("generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", photo / "depth.npy",
                 "--out", tmp_path / "r2", "--quiet", "frames=2")
    assert res.exit_code == 0 and "layout prior" not in _text(res)  # with depth: no such warning


def test_generate_with_explicit_camera_file(tmp_path, photo):
    from scenescape.geometry.camera import Camera

    cam0 = Camera.from_dict(json.loads((photo / "camera.json").read_text()))
    cams = [cam0.to_dict()]
    for k in (1, 2):
        pose = cam0.world_to_camera.clone()
        pose[2, 3] -= 0.05 * k  # move forward
        cams.append(cam0.with_pose(pose).to_dict())
    traj = tmp_path / "cams.json"
    write_json(traj, {"cameras": cams})
    out = tmp_path / "r"
    res = invoke("generate", "--config", TINY, "--image", photo / "image.png", "--init-depth", photo / "depth.npy",
                 "--trajectory", traj, "--out", out, "--quiet")
    assert res.exit_code == 0, _text(res)
    from scenescape.io.world import cameras_from_file_json

    saved = cameras_from_file_json(json.loads((out / "cameras.json").read_text()))  # file: Z-up world
    assert len(saved) == 3 and np.allclose(saved[2].world_to_camera, cams[2]["world_to_camera"], atol=1e-6)


def test_render_and_export(tmp_path, tiny_run):

    video = tmp_path / "again.mp4"
    res = invoke("render", tiny_run / "mesh.ply", "--trajectory", "forward", "--frames", 3, "-o", video, "--quiet")
    assert res.exit_code == 0, _text(res)
    frames = read_video(video)
    assert frames.shape == (3, 64, 64, 3) and frames[0].std() > 5
    obj = tmp_path / "scene.obj"
    res = invoke("export", tiny_run / "mesh.ply", obj)
    assert res.exit_code == 0, _text(res)
    a, b = load_mesh(tiny_run / "mesh.ply"), load_mesh(obj)
    assert a.num_faces == b.num_faces and np.allclose(a.vertices.numpy(), b.vertices.numpy(), atol=1e-5)
    res = invoke("export", tiny_run / "mesh.ply", obj)
    assert res.exit_code != 0 and "--overwrite" in _error_lines(res)[0]
    res = invoke("export", tiny_run / "mesh.ply", tmp_path / "scene.stl")
    assert res.exit_code != 0 and ".ply, .glb or .obj" in _error_lines(res)[0]


# ----------------------------------------------------------------------------- bad input


def _bad(*args: str, match: str) -> str:
    res = invoke(*args)
    assert res.exit_code not in (0, None), _text(res)
    errs = _error_lines(res)
    assert len(errs) == 1, _text(res)
    assert match in errs[0], errs[0]
    return errs[0]


def test_unknown_config_key_names_the_nearest(tmp_path, photo):
    err = _bad("generate", "--config", TINY, "--image", photo / "image.png", "--out", tmp_path / "r",
               "mask.dilat=2", match="mask.dilat")
    assert "'dilate'" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\ninpaintr: {name: opencv}\n")
    err = _bad("generate", "--config", cfg, "--image", photo / "image.png", "--out", tmp_path / "r",
               match="inpaintr")
    assert "'inpainter'" in err
    assert not (tmp_path / "r").exists()  # nothing was written


def test_missing_or_unreadable_image(tmp_path):
    _bad("generate", "--config", TINY, "--image", tmp_path / "nope.png", "--out", tmp_path / "r",
         match="does not exist")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    _bad("generate", "--config", TINY, "--image", bad, "--out", tmp_path / "r", match="cannot be read")
    assert not (tmp_path / "r").exists()


def test_grey_and_wrong_size_images_are_centre_cropped_with_a_warning(tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray((np.random.default_rng(0).random((50, 80)) * 255).astype(np.uint8), "L").save(grey)
    out = tmp_path / "r"
    res = invoke("generate", "--config", TINY, "--image", grey, "--out", out, "--quiet", "frames=2")
    assert res.exit_code == 0, _text(res)
    text = _text(res)
    assert "warning:" in text and "centre-cropped to 50x50 and resized to 64x64" in text
    assert np.load(out / "depth" / "0000.npy").shape == (64, 64)
    saved = np.load(out / "inputs" / "image.npy")  # grey -> RGB (equal channels), the centre 50x50, not stretched
    assert saved.shape == (64, 64, 3) and np.array_equal(saved[..., 0], saved[..., 2])


def test_bad_depth_files(tmp_path, photo):
    img = photo / "image.png"
    for name, arr, match in (
        ("nan.npy", np.full((64, 64), np.nan, np.float32), "NaN"),
        ("zero.npy", np.zeros((64, 64), np.float32), "zero or negative"),
        ("shape.npy", np.ones((32, 64), np.float32), "shape"),
    ):
        p = tmp_path / name
        np.save(p, arr)
        _bad("generate", "--config", TINY, "--image", img, "--init-depth", p, "--out", tmp_path / "r", match=match)
    _bad("generate", "--config", TINY, "--image", img, "--init-depth", tmp_path / "none.npy", "--out",
         tmp_path / "r", match="does not exist")
    assert not (tmp_path / "r").exists()


def test_empty_prompt_where_one_is_needed(tmp_path):
    _bad("generate", "--config", TINY, "--out", tmp_path / "r", match="prompt is needed")
    # with a prompt, classical inpainting still cannot invent a first frame: it says what to do
    _bad("generate", "a quiet library", "--config", TINY, "--out", tmp_path / "r2", match="--image")
    assert not (tmp_path / "r").exists()


def test_trajectory_file_with_a_malformed_camera(tmp_path, photo):
    cam = json.loads((photo / "camera.json").read_text())
    broken = dict(cam)
    del broken["fy"]
    traj = tmp_path / "t.json"
    write_json(traj, {"cameras": [cam, broken]})
    err = _bad("generate", "--config", TINY, "--image", photo / "image.png", "--trajectory", traj,
               "--out", tmp_path / "r", match="camera 1")
    assert "fy" in err
    _bad("generate", "--config", TINY, "--image", photo / "image.png", "--trajectory", "fowrard",
         "--out", tmp_path / "r", match="forward")
    assert not (tmp_path / "r").exists()


def test_existing_output_folder_is_an_error_that_loses_nothing(tmp_path, photo):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    _bad("generate", "--config", TINY, "--image", photo / "image.png", "--out", out,
         match="not a scenescape run folder (it holds precious.txt")
    _bad("generate", "--config", TINY, "--image", photo / "image.png", "--out", out, "--overwrite",
         match="not a scenescape run folder")
    assert (out / "precious.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1
    _bad("demo", "--out", out, "--frames", 2, "--size", 32, match="already exists")
    assert len(list(out.iterdir())) == 1


def test_corrupt_checkpoint_on_resume_is_a_clear_error(tmp_path, tiny_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = _snapshot(run)
    state = run / "checkpoint" / "state.json"
    state.write_text('{"version": 1, "frame": ')  # torn write
    _bad("generate", "--resume", run, match="corrupt")
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if "state.json" not in k} == \
        {k: v for k, v in before.items() if "state.json" not in k}
    # a mesh file that does not match its checksum
    state.write_bytes(before["checkpoint/state.json"])
    mesh = next((run / "checkpoint").glob("mesh-*.npz"))
    data = bytearray(mesh.read_bytes())
    data[len(data) // 2] ^= 0xFF
    mesh.write_bytes(bytes(data))
    _bad("generate", "--resume", run, match="checksum")
    assert (run / "frames" / "0003.png").read_bytes() == before["frames/0003.png"]
    _bad("generate", "--resume", tmp_path / "nowhere", match="does not exist")
    res = invoke("generate", "--resume", run, "--frames", 9)
    assert res.exit_code != 0 and "--resume continues" in _text(res)


def test_demo_start_frame_from_samples_matches_the_synthetic_fallback():
    """An installed package (no samples/) renders the same start frame the checkout ships."""
    import scenescape.cli.scene as scene_cli

    if scene_cli.find_demo_samples() is None:
        pytest.skip("samples/demo is not in this checkout")
    img, depth, cam, source = scene_cli.demo_start_frame(512)
    assert "samples" in source
    orig = scene_cli.find_demo_samples
    try:
        scene_cli.find_demo_samples = lambda: None  # as from an installed wheel
        img2, depth2, cam2, source2 = scene_cli.demo_start_frame(512)
    finally:
        scene_cli.find_demo_samples = orig
    assert "synthetic" in source2 and cam == cam2
    assert np.abs(img - img2).max() <= 1 / 255 + 1e-6  # the PNG is 8-bit
    assert np.allclose(depth, depth2, rtol=1e-6)


def test_depth_pngs_share_one_colour_scale(tiny_run):
    """depth/NNNN.png use the run's one scale (fixed from frame 0, stored in depth/colour_scale.json)."""
    import imageio.v3 as iio

    from scenescape.io import colorize_depth, depth_color_range, read_json

    scale = read_json(tiny_run / "depth" / "colour_scale.json")
    d0 = np.load(tiny_run / "depth" / "0000.npy")
    assert (scale["near"], scale["far"]) == pytest.approx(depth_color_range(d0))
    pngs = sorted((tiny_run / "depth").glob("*.png"))
    assert len(pngs) == 4
    for p in pngs:
        d = np.load(p.with_suffix(".npy"))
        expect = colorize_depth(d, depth_range=(scale["near"], scale["far"]))
        assert np.array_equal(iio.imread(p)[..., :3], expect), p.name
    # a per-frame scale would differ on the last frame: the run's scale is not the frame's own
    d3 = np.load(pngs[-1].with_suffix(".npy"))
    if depth_color_range(d3) != pytest.approx((scale["near"], scale["far"])):
        assert not np.array_equal(iio.imread(pngs[-1])[..., :3], colorize_depth(d3))


def test_colorize_depth_fixed_range_maps_equal_depths_to_equal_colours():
    from scenescape.io import colorize_depth

    a = np.full((4, 4), 2.0, np.float32)
    b = a.copy()
    b[0, 0] = 20.0  # a far pixel changes a per-image scale, not a fixed one
    fixed = (1.0, 10.0)
    assert np.array_equal(colorize_depth(a, depth_range=fixed)[1:, 1:], colorize_depth(b, depth_range=fixed)[1:, 1:])
    near = colorize_depth(np.full((2, 2), 1.0, np.float32), depth_range=fixed)[0, 0]
    far = colorize_depth(np.full((2, 2), 10.0, np.float32), depth_range=fixed)[0, 0]
    assert not np.array_equal(near, far)
    with pytest.raises(ValueError, match="depth_range"):
        colorize_depth(a, depth_range=(5.0, 1.0))


def test_render_presets_stay_where_the_run_saw(tmp_path):
    """`render --trajectory orbit --frames 90` (the README's example) keeps the view on the saved scene."""
    from scenescape.cli.scene import fit_preset_to_run
    from scenescape.geometry.raster import render_mesh
    from scenescape.io import read_json
    from scenescape.io.world import cameras_from_file_json
    from scenescape.trajectories import TrajectoryConfig, build_trajectory

    run = tmp_path / "demo"
    assert invoke("demo", "--out", run, "--frames", 6, "--size", 64, "--quiet").exit_code == 0
    res = invoke("render", run / "mesh.ply", "--trajectory", "orbit", "--frames", 90, "-o", tmp_path / "o.mp4")
    assert res.exit_code == 0, _text(res)
    assert "orbit shortened" in _text(res) and "angle_step=" in _text(res)
    assert read_video(tmp_path / "o.mp4").shape[0] == 90

    cams = cameras_from_file_json(read_json(run / "cameras.json"))  # library frame, as the mesh
    mesh = load_mesh(run / "mesh.ply")
    w2c = cams[0].world_to_camera
    z = (mesh.vertices @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
    scale = float(z[z > 0].median())  # what render uses

    def coverage(spec) -> float:
        path = build_trajectory(spec, cams[0], 90, scale)
        return float(np.mean([render_mesh(mesh, c).mask.float().mean().item() for c in path[::10]]))

    fitted = fit_preset_to_run("orbit", 90, cams, scale)
    assert set(fitted) == {"angle_step", "radius"} and abs(fitted["angle_step"]) < 0.02 and fitted["radius"] < 1
    assert coverage(TrajectoryConfig("orbit", fitted)) > 0.97           # on the scene all the way
    assert coverage("orbit") < coverage(TrajectoryConfig("orbit", fitted)) - 0.1  # the raw preset leaves it
    walk = fit_preset_to_run("forward", 90, cams, scale)
    centres = np.stack([np.linalg.inv(c.world_to_camera.double().numpy())[:3, 3] for c in cams])
    reach = float(np.linalg.norm(centres - centres[0], axis=1).max())
    assert walk["step"] * scale * 89 == pytest.approx(max(reach, 0.05 * scale), rel=1e-6)  # no further than the run
