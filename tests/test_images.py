"""Image loading: EXIF orientation, every PIL mode with its range kept, centre-crop (never stretch).
Files are written by independent writers (PIL, OpenCV) and read by scenescape.io.load_image."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from scenescape.errors import InputError
from scenescape.io import center_crop_box, load_image

RNG = np.random.default_rng(0)


def _quiet_load(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_image(path, **kw)


def test_16_bit_grey_png_keeps_its_range(tmp_path):
    import cv2

    g = (np.linspace(0, 65535, 24 * 16).reshape(16, 24)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), g)  # OpenCV writes a real 16-bit greyscale PNG
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode in ("I;16", "I")
    a = load_image(tmp_path / "g16.png")
    assert a.shape == (16, 24, 3) and a.dtype == np.float32
    assert np.allclose(a[..., 0], g / 65535.0, atol=1e-6) and np.array_equal(a[..., 0], a[..., 2])
    assert a.min() == 0.0 and a.max() == 1.0 and 0.4 < a.mean() < 0.6  # not all white


@pytest.mark.parametrize("mode, suffix", [("1", ".png"), ("L", ".png"), ("LA", ".png"), ("P", ".png"),
                                          ("RGB", ".png"), ("RGBA", ".png"), ("I;16", ".png"), ("I", ".tif"),
                                          ("F", ".tif"), ("CMYK", ".tif"), ("RGB", ".jpg")])
def test_every_mode_is_converted_with_its_range(tmp_path, mode, suffix):
    h, w = 12, 10
    if mode == "1":
        bits = RNG.random((h, w)) > 0.5
        im, expect = Image.fromarray(bits), bits.astype(np.float32)
    elif mode in ("L", "LA"):
        v = RNG.integers(0, 256, (h, w), dtype=np.uint8)
        im, expect = Image.fromarray(v, "L"), v / 255.0
        if mode == "LA":
            im.putalpha(Image.fromarray(np.full((h, w), 255, np.uint8)))
    elif mode == "P":
        rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        im = Image.fromarray(rgb).quantize(colors=16)
        expect = np.asarray(im.convert("RGB")) / 255.0
    elif mode in ("RGB", "RGBA"):
        rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if suffix == ".jpg":  # smooth, so that JPEG keeps it
            yy, xx = np.mgrid[0:h, 0:w]
            rgb = np.stack([xx * 20, yy * 20, 255 - xx * 20], -1).astype(np.uint8)
        im, expect = Image.fromarray(rgb), rgb / 255.0
        if mode == "RGBA":
            im.putalpha(255)
    elif mode == "I;16":
        v = RNG.integers(0, 65536, (h, w)).astype(np.uint16)
        im, expect = Image.fromarray(v), v / 65535.0  # uint16 -> mode I;16
    elif mode == "I":
        v = RNG.integers(0, 65536, (h, w)).astype(np.int32)
        im, expect = Image.fromarray(v, "I"), v / 65535.0
    elif mode == "F":
        v = RNG.random((h, w)).astype(np.float32)
        im, expect = Image.fromarray(v, "F"), v
    else:  # CMYK
        cmyk = RNG.integers(0, 256, (h, w, 4), dtype=np.uint8)
        im = Image.fromarray(cmyk, "CMYK")
        expect = np.asarray(im.convert("RGB")) / 255.0
    path = tmp_path / f"x{suffix}"
    im.save(path)
    with Image.open(path) as check:
        assert check.mode == mode or suffix == ".jpg" or (mode == "I;16" and check.mode in ("I;16", "I"))
    a = _quiet_load(path)
    assert a.shape == (h, w, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    if expect.ndim == 2:
        expect = np.repeat(expect[..., None], 3, axis=-1)
    tol = 0.08 if suffix == ".jpg" else 1e-6
    assert np.abs(a - expect).mean() <= tol, (mode, np.abs(a - expect).max())


def test_out_of_range_integer_and_float_images_are_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 70000, np.int32), "I").save(tmp_path / "big.tif")
    with pytest.raises(InputError, match="big.tif.*0-65535"):
        load_image(tmp_path / "big.tif")
    Image.fromarray(np.full((4, 4), 3.0, np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match=r"f.tif.*\[0, 1\]"):
        load_image(tmp_path / "f.tif")


def test_transparent_pixels_warn_when_alpha_is_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="transparent"):
        a = load_image(tmp_path / "a.png")
    assert np.allclose(a[..., 0], 200 / 255)


def test_exif_orientation_is_applied(tmp_path):
    # stored pixels: left half red, right half blue, 40 wide x 20 high; EXIF 6 = "rotate 90 degrees clockwise"
    px = np.zeros((20, 40, 3), np.uint8)
    px[:, :20, 0] = 255
    px[:, 20:, 2] = 255
    im = Image.fromarray(px)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    a = load_image(tmp_path / "phone.jpg")
    assert a.shape == (40, 20, 3)  # upright: portrait
    top, bottom = a[:18].mean(axis=(0, 1)), a[22:].mean(axis=(0, 1))
    assert top[0] > 0.9 and top[2] < 0.1 and bottom[2] > 0.9 and bottom[0] < 0.1  # red on top after a CW turn


def test_other_aspect_ratios_are_centre_cropped_never_stretched(tmp_path):
    # 80x40: red bands 20 px wide at both sides, blue centre 40x40 -> 32x32 is the blue centre only
    px = np.zeros((40, 80, 3), np.uint8)
    px[:, :20, 0] = px[:, 60:, 0] = 255
    px[:, 20:60, 2] = 255
    Image.fromarray(px).save(tmp_path / "wide.png")
    with pytest.warns(UserWarning, match="centre-cropped to 40x40 and resized to 32x32"):
        a = load_image(tmp_path / "wide.png", size=(32, 32))
    assert a.shape == (32, 32, 3) and a[..., 0].max() == 0 and a[..., 2].min() == 1.0
    # tall: the vertical centre is kept
    Image.fromarray(np.ascontiguousarray(px.transpose(1, 0, 2))).save(tmp_path / "tall.png")
    b = _quiet_load(tmp_path / "tall.png", size=(20, 20))
    assert b[..., 0].max() == 0 and b[..., 2].min() == 1.0
    # a wider target keeps the full width
    assert center_crop_box(80, 40, 160, 40) == (0, 10, 80, 20)
    assert center_crop_box(80, 40, 64, 32) == (0, 0, 80, 40)
