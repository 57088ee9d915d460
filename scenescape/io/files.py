"""File I/O shared by every mode: atomic writes, images, depth maps, video, JSON.

Every writer here is atomic: it writes a temporary file in the destination folder and renames it
over the target (``os.replace``), so a crash or ``kill -9`` never leaves a half-written output.
Images are float32 ``(H, W, 3)`` arrays in ``[0, 1]`` in memory and 8-bit PNG on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import InputError

PathLike = str | os.PathLike


_UMASK: int | None = None
KILL_ENV = "SCENESCAPE_DEBUG_KILL_AT_WRITE"
"""Testing hook: ``N`` sends SIGKILL to this process right after the N-th atomic write of the process
lands (``N:tmp``: after its temporary file is written, before the rename; ``N:INT``: SIGINT instead), so
tests can interrupt a run at every write boundary without timing. Unset in normal use."""
_writes = 0
_writes_lock = threading.Lock()


def _file_mode() -> int:
    """``0o666`` minus the umask: what ``open()`` would give a new file (``mkstemp`` gives ``0o600``)."""
    global _UMASK
    if _UMASK is None:
        with _writes_lock:
            old = os.umask(0o022)
            os.umask(old)
            _UMASK = old
    return 0o666 & ~_UMASK


def atomic_write_count() -> int:
    """How many atomic writes this process has completed (tests use it to enumerate write boundaries)."""
    return _writes


def _write_boundary(before_rename: bool) -> None:
    global _writes
    spec = os.environ.get(KILL_ENV)
    if before_rename and not spec:
        return
    with _writes_lock:
        if not before_rename:
            _writes += 1
        n = _writes + (1 if before_rename else 0)
    if not spec:
        return
    parts = spec.split(":")
    if ("tmp" in parts[1:]) == before_rename and n == int(parts[0]):
        import signal

        os.kill(os.getpid(), signal.SIGINT if "INT" in parts[1:] else signal.SIGKILL)


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path``.

    ``suffix`` defaults to the target's suffix, so writers that pick a format by extension work. The
    file gets the usual permissions (``0o666`` minus the umask, e.g. ``0644``) and is fsynced before
    the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _file_mode())
        _write_boundary(before_rename=True)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _write_boundary(before_rename=False)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    try:
        import torch

        if isinstance(o, torch.Tensor):
            return o.detach().cpu().tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path: PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_json_file(path: PathLike, what: str) -> Any:
    """A user's JSON file (``what``: e.g. "camera file"), or an :class:`InputError` that names it: missing,
    unreadable, or not valid JSON (with the parser's line and column)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} '{p}' does not exist")
    try:
        return json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise InputError(f"{what} '{p}' is not valid JSON: {e}") from e


def to_numpy(x: Any) -> np.ndarray:
    """Torch tensor or array-like -> numpy array (on the CPU, detached)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def image_to_uint8(image: Any) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] -> uint8 (rounded, clipped)."""
    a = to_numpy(image).astype(np.float32)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_image(path: PathLike, image: Any) -> None:
    """Write a float ``(H, W, 3)`` image in [0, 1] (or uint8) as PNG/JPEG, atomically."""
    import imageio.v3 as iio

    a = to_numpy(image)
    if a.dtype != np.uint8:
        a = image_to_uint8(a)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, a)


def save_mask(path: PathLike, mask: Any) -> None:
    """Write a boolean ``(H, W)`` mask as an 8-bit PNG (255 = True)."""
    import imageio.v3 as iio

    a = (to_numpy(mask).astype(bool).astype(np.uint8)) * 255
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, a)


def center_crop_box(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, w, h)``: the largest centred box of a ``width x height`` image with the target's aspect ratio."""
    if width * target_height > height * target_width:  # too wide
        w = max(1, min(width, round(height * target_width / target_height)))
        return (width - w) // 2, 0, w, height
    h = max(1, min(height, round(width * target_height / target_width)))
    return 0, (height - h) // 2, width, h


def fit_to_size(array: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Centre-crop ``array`` ``(H, W[, C])`` to the aspect ratio of ``size`` = ``(width, height)``, then
    resize to it (area interpolation, or nearest for depth). Never stretches."""
    import cv2

    h, w = array.shape[:2]
    x0, y0, cw, ch = center_crop_box(w, h, *size)
    a = array[y0:y0 + ch, x0:x0 + cw]
    if (cw, ch) != tuple(size):
        a = cv2.resize(a, tuple(size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    return np.ascontiguousarray(a, dtype=np.float32)


def _pil_to_float(im: Any, p: Path) -> np.ndarray:
    """A PIL image of any mode -> float32 ``(H, W, 3)`` in [0, 1], keeping the range of its mode."""
    import warnings

    mode = im.mode
    if mode == "1":
        a = np.asarray(im, dtype=np.float32)
    elif mode in ("L", "LA", "La"):
        if mode != "L":
            warnings.warn(f"image '{p}' has an alpha channel; dropping it", stacklevel=3)
        a = np.asarray(im.getchannel(0), dtype=np.float32) / 255.0
    elif mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        raw = np.asarray(im).astype(np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise InputError(f"image '{p}' is a 32-bit integer image with values {raw.min()}..{raw.max()}; integer "
                             "images are read as 16-bit (0-65535): save it as an 8- or 16-bit PNG")
        a = raw.astype(np.float32) / 65535.0
    elif mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise InputError(f"image '{p}' (32-bit float) contains NaN or infinite values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise InputError(f"image '{p}' is a 32-bit float image with values {a.min():g}..{a.max():g}; float images "
                             "must hold values in [0, 1]")
    else:
        if mode in ("P", "PA"):
            im = im.convert("RGBA")
            mode = "RGBA"
        if mode in ("RGBA", "RGBa", "LA") and np.asarray(im.getchannel("A")).min() < 255:
            warnings.warn(f"image '{p}' has transparent pixels; dropping the alpha channel", stacklevel=3)
        if mode != "RGB":
            if mode not in ("RGBA", "RGBX", "RGBa"):
                warnings.warn(f"image '{p}' is {mode}, converting to RGB", stacklevel=3)
            im = im.convert("RGB")
        a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return np.ascontiguousarray(a[..., :3], dtype=np.float32)


_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _read_image(p: Path, keep_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb (H, W, 3) float32 in [0, 1], alpha (H, W) float32 in [0, 1] or None)`` of an image file, the
    EXIF orientation applied; alpha only with ``keep_alpha`` (else it is dropped with a warning)."""
    import warnings

    if not p.is_file():
        raise InputError(f"image '{p}' does not exist (check the --image path)")
    try:
        from PIL import Image, ImageOps

        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            alpha = None
            if keep_alpha and (im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)):
                rgba = im.convert("RGBA") if im.mode in ("P", "PA") else im
                alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
                with warnings.catch_warnings():  # the alpha is kept, not dropped
                    warnings.simplefilter("ignore")
                    a = _pil_to_float(rgba, p)
            else:
                a = _pil_to_float(im, p)
    except InputError:
        raise
    except Exception as e:  # PIL raises many kinds of errors for bad files
        raise InputError(f"image '{p}' cannot be read as an image ({type(e).__name__}: {e})") from e
    return a, (None if alpha is None else np.ascontiguousarray(alpha))


def load_image_alpha(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """An image file as ``(rgb, alpha)``: ``rgb`` float32 ``(H, W, 3)`` in [0, 1] read as :func:`load_image`
    reads it (EXIF orientation, every PIL mode), ``alpha`` float32 ``(H, W)`` in [0, 1], or None when the
    file has no alpha channel (image to object takes its mask from it)."""
    return _read_image(Path(path), keep_alpha=True)


def load_image(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as float32 ``(H, W, 3)`` in [0, 1].

    The EXIF orientation is applied (a phone photo comes out upright). Every PIL mode is converted with
    its range kept: 1-bit and 8-bit (``L``, ``P``, ``RGB``, ``CMYK``, ...) by /255, 16-bit (``I;16``, or
    ``I`` within 0-65535) by /65535, float (``F``) as is (must be in [0, 1]); grey becomes RGB and alpha is
    dropped (with a warning when some pixels are transparent). ``size`` is ``(width, height)``: an image of
    another size is centre-cropped to that aspect ratio and then resized (never stretched), with a
    warning. Errors name the file.
    """
    import warnings

    p = Path(path)
    a, _ = _read_image(p, keep_alpha=False)
    if size is not None and (a.shape[1], a.shape[0]) != tuple(size):
        h, w = a.shape[:2]
        x0, y0, cw, ch = center_crop_box(w, h, *size)
        how = f"centre-cropped to {cw}x{ch} and resized" if (cw, ch) != (w, h) else "resized"
        warnings.warn(f"image '{p}' is {w}x{h}, {how} to {size[0]}x{size[1]}", stacklevel=2)
        a = fit_to_size(a, tuple(size))
    return np.ascontiguousarray(a)


def save_npy(path: PathLike, array: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, to_numpy(array))


def load_depth(path: PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a z-depth map from ``.npy`` (float) or 16-bit PNG (millimetres); validate it.

    ``shape`` is ``(H, W)``. Raises ``ValueError`` naming the file for a missing file, non-finite
    or non-positive values, or a wrong shape.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"depth file '{p}' does not exist (check the --init-depth path)")
    try:
        if p.suffix.lower() == ".npy":
            d = np.load(p, allow_pickle=False)
        elif p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                d = z[z.files[0]]
        else:
            import imageio.v3 as iio

            d = iio.imread(p).astype(np.float32) / 1000.0
    except Exception as e:
        raise InputError(f"depth file '{p}' cannot be read ({type(e).__name__}: {e})") from e
    d = np.asarray(d)
    if d.dtype.kind not in "fiu" or (p.suffix.lower() in (".npy", ".npz") and d.dtype.kind != "f"):
        kind = {"c": "complex", "b": "boolean", "U": "text", "S": "bytes", "O": "object"}.get(d.dtype.kind, str(d.dtype))
        raise InputError(f"depth file '{p}' holds {kind} values ({d.dtype}); it must hold floating-point z-depth "
                         "(save it with depth.astype(np.float32); integer millimetres belong in a 16-bit PNG)")
    d = d.astype(np.float32).squeeze()
    if d.ndim != 2:
        raise InputError(f"depth file '{p}' must hold a 2-D (H, W) array, got shape {d.shape}")
    if shape is not None and d.shape != tuple(shape):
        raise InputError(f"depth file '{p}' has shape {d.shape}, but the image is {tuple(shape)} (H, W)")
    if not np.all(np.isfinite(d)):
        raise InputError(f"depth file '{p}' contains NaN or infinite values")
    if np.any(d <= 0):
        raise InputError(f"depth file '{p}' contains zero or negative depths ({int((d <= 0).sum())} pixels)")
    return d


def depth_color_range(depth: Any, mask: Any = None) -> tuple[float, float]:
    """``(near, far)`` z-depth limits of :func:`colorize_depth`'s scale for this depth map: the 1st and
    99th percentiles of its inverse depth over valid (> 0) pixels; ``(1, 1)`` when nothing is valid."""
    d = to_numpy(depth).astype(np.float32)
    valid = d > 0 if mask is None else to_numpy(mask).astype(bool) & (d > 0)
    if not valid.any():
        return 1.0, 1.0
    lo, hi = np.percentile(1.0 / d[valid], [1, 99])
    return float(1.0 / hi), float(1.0 / max(lo, 1e-12))


def colorize_depth(depth: Any, mask: Any = None, depth_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(H, W)`` depth -> ``(H, W, 3)`` uint8 false-colour image (near bright, far dark; 0 = black).

    The colours are linear in inverse depth (turbo colour map) between ``depth_range = (near, far)``
    (clipped outside); ``None`` = :func:`depth_color_range` of this map (a scale per image). Pass one
    range for every frame of a sequence so a colour means the same depth in all of them.
    """
    import cv2

    d = to_numpy(depth).astype(np.float32)
    valid = d > 0 if mask is None else to_numpy(mask).astype(bool) & (d > 0)
    out = np.zeros((*d.shape, 3), np.uint8)
    if valid.any():
        inv = np.zeros_like(d)
        inv[valid] = 1.0 / d[valid]
        near, far = depth_range if depth_range is not None else depth_color_range(d, valid)
        if not (np.isfinite(near) and np.isfinite(far) and 0 < near <= far):
            raise InputError(f"depth_range must be (near, far) with 0 < near <= far, got {depth_range}")
        lo, hi = 1.0 / far, 1.0 / near
        norm = np.clip((inv - lo) / max(hi - lo, 1e-8), 0, 1)
        col = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
        out[valid] = col[valid]
    return out


def write_video(path: PathLike, frames: Iterable[Any], fps: float = 10.0, quality: int = 8) -> None:
    """Write frames (each ``(H, W, 3)`` float [0, 1] or uint8) as an H.264 MP4, atomically.

    Uses the ffmpeg binary shipped by ``imageio-ffmpeg`` (``yuv420p`` so browsers and players open it).
    Odd sizes are padded to even by the encoder's macro-block alignment.
    """
    import imageio_ffmpeg

    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise InputError("write_video: no frames to write") from None
    first = _frame_u8(first)
    h, w = first.shape[:2]
    pad_w, pad_h = w + (w % 2), h + (h % 2)
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (pad_w, pad_h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=quality,
            macro_block_size=1, ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in _chain([first], it):
            f = _frame_u8(frame)
            if f.shape[:2] != (h, w):
                writer.close()
                raise InputError(f"write_video: frame size {f.shape[:2]} differs from the first {(h, w)}")
            if (pad_h, pad_w) != (h, w):
                f = np.pad(f, ((0, pad_h - h), (0, pad_w - w), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(f))
        writer.close()


def _chain(a: Iterable, b: Iterable) -> Iterator:
    yield from a
    yield from b


def _frame_u8(frame: Any) -> np.ndarray:
    a = to_numpy(frame)
    if a.dtype != np.uint8:
        a = image_to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return a[..., :3]


def read_video(path: PathLike) -> np.ndarray:
    """Read an MP4 into ``(T, H, W, 3)`` uint8 (for tests and re-export)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8)


def write_gif(path: PathLike, frames: Iterable[Any], fps: float = 10.0) -> None:
    from PIL import Image

    ims = [Image.fromarray(_frame_u8(f)) for f in frames]
    with atomic_path(path) as tmp:
        ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str, max_len: int = 48, default: str = "run") -> str:
    """Safe file/folder name from free text (a prompt): ASCII letters, digits, ``._-`` only.

    No path separators, no leading dots, never empty, never a reserved name.
    """
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    t = _SAFE.sub("-", t.strip().lower()).strip("-._")
    t = t[:max_len].strip("-._")
    if not t or t.upper() in {"CON", "PRN", "AUX", "NUL"} or re.fullmatch(r"(COM|LPT)\d", t.upper()):
        t = default
    return t
