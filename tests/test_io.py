"""Atomic I/O, images, depth files, video and file-name sanitising."""

import os

import numpy as np
import pytest

from scenescape import io


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    io.atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert p.read_text() == "old"
    assert [f for f in os.listdir(tmp_path) if f != "a.txt"] == []


def test_image_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((20, 30, 3)).astype(np.float32)
    io.save_image(tmp_path / "x.png", img)
    back = io.load_image(tmp_path / "x.png")
    assert back.shape == (20, 30, 3) and back.dtype == np.float32
    assert np.abs(back - img).max() <= 0.5 / 255 + 1e-6
    with pytest.warns(UserWarning, match="resized to 15x10"):
        r = io.load_image(tmp_path / "x.png", size=(15, 10))
    assert r.shape == (10, 15, 3)
    with pytest.raises(ValueError, match="does not exist"):
        io.load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot be read"):
        io.load_image(tmp_path / "bad.png")
    io.save_mask(tmp_path / "g.png", np.ones((4, 4), bool))
    g = io.load_image(tmp_path / "g.png")  # grey -> RGB, range kept
    assert g.shape == (4, 4, 3) and np.all(g == 1.0)


def test_load_depth_validation(tmp_path):
    d = np.full((4, 5), 2.0, np.float32)
    np.save(tmp_path / "ok.npy", d)
    assert np.array_equal(io.load_depth(tmp_path / "ok.npy", (4, 5)), d)
    with pytest.raises(ValueError, match="shape"):
        io.load_depth(tmp_path / "ok.npy", (5, 4))
    d2 = d.copy()
    d2[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", d2)
    with pytest.raises(ValueError, match="NaN"):
        io.load_depth(tmp_path / "nan.npy")
    d2[0, 0] = 0
    np.save(tmp_path / "zero.npy", d2)
    with pytest.raises(ValueError, match="zero or negative"):
        io.load_depth(tmp_path / "zero.npy")


def test_video_round_trip(tmp_path):
    frames = [np.full((32, 48, 3), i / 5, np.float32) for i in range(5)]
    io.write_video(tmp_path / "v.mp4", frames, fps=5)
    back = io.read_video(tmp_path / "v.mp4")
    assert back.shape == (5, 32, 48, 3)
    assert abs(back[4].mean() / 255 - 0.8) < 0.03 and back[0].mean() < 5
    with pytest.raises(ValueError, match="no frames"):
        io.write_video(tmp_path / "e.mp4", [])
    assert not (tmp_path / "e.mp4").exists()


@pytest.mark.parametrize("text,expected", [
    ("A cosy Living-room, at night!", "a-cosy-living-room-at-night"),
    ("../../etc/passwd", "etc-passwd"),
    ("", "run"),
    ("...", "run"),
    ("con", "run"),
    ("日本の部屋", "run"),
])
def test_slugify(text, expected):
    assert io.slugify(text) == expected
    assert "/" not in io.slugify(text) and not io.slugify(text).startswith(".")
