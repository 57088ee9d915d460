"""Reading a run folder for evaluation: frames, depth, inpainting masks, cameras and the prompt.

A scene run (``scenescape generate`` / ``demo``, see :mod:`scenescape.pipelines.runs`) has
``frames/NNNN.png``, ``depth/NNNN.npy``, ``masks/NNNN.png`` and ``cameras.json``. An object run
(``scenescape object``) has ``video.mp4`` (RGB | normals side by side) and its orbit cameras follow
from its ``config.yaml``; only the measures that need no depth apply to it.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera


@dataclasses.dataclass
class RunData:
    """Everything the measures read from one run.

    Attributes:
        frames: ``(N, H, W, 3)`` float32 sRGB in [0, 1].
        cameras: ``N`` cameras (OpenCV, ``world_to_camera``).
        depths: ``(N, H, W)`` float32 z-depth (0 = unknown), or None (object runs).
        masks: ``(N, H, W)`` bool, True where the frame was inpainted, or None.
        prompt: the run's prompt ("" if none).
        kind: ``"scene"`` or ``"object"``.
        path: the run folder (None for runs built in memory).
    """

    frames: np.ndarray
    cameras: list[Camera]
    depths: np.ndarray | None = None
    masks: np.ndarray | None = None
    prompt: str = ""
    kind: str = "scene"
    path: Path | None = None

    def __post_init__(self) -> None:
        f = np.asarray(self.frames, np.float32)
        if f.ndim != 4 or f.shape[-1] != 3:
            raise InputError(f"frames must be (N, H, W, 3), got shape {f.shape}")
        self.frames = f
        n, h, w = f.shape[:3]
        if len(self.cameras) != n:
            raise InputError(f"{n} frames but {len(self.cameras)} cameras")
        for i, c in enumerate(self.cameras):
            if (c.height, c.width) != (h, w):
                raise InputError(f"camera {i} is {c.width}x{c.height} but the frames are {w}x{h}")
        if self.depths is not None:
            self.depths = np.asarray(self.depths, np.float32)
            if self.depths.shape != (n, h, w):
                raise InputError(f"depths must be {(n, h, w)}, got {self.depths.shape}")
        if self.masks is not None:
            self.masks = np.asarray(self.masks, bool)
            if self.masks.shape != (n, h, w):
                raise InputError(f"masks must be {(n, h, w)}, got {self.masks.shape}")

    @property
    def n(self) -> int:
        return int(self.frames.shape[0])

    def replace(self, **kw: Any) -> RunData:
        return dataclasses.replace(self, **kw)


def _prompt_of(path: Path) -> str:
    from scenescape.io import read_json

    for name in ("manifest.json", "summary.json"):
        f = path / name
        if f.is_file():
            try:
                p = read_json(f).get("prompt")
            except Exception:
                p = None
            if isinstance(p, str):
                return p
    cfg = path / "config.yaml"
    if cfg.is_file():
        import yaml

        try:
            data = yaml.safe_load(cfg.read_text()) or {}
        except Exception:
            data = {}
        if isinstance(data.get("prompt"), str):
            return data["prompt"]
    return ""


def load_run(path: str | Path, max_frames: int | None = None) -> RunData:
    """Read a scene or object run folder (see the module docstring).

    A scene run that stopped early is evaluated on the frames it has (with a warning). Raises
    :class:`~scenescape.errors.InputError` naming what is missing.
    """
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"run folder '{p}' does not exist")
    if (p / "frames").is_dir() and (p / "cameras.json").is_file():
        return _load_scene_run(p, max_frames)
    if _is_object_run(p):
        return _load_object_run(p, max_frames)
    raise InputError(f"'{p}' is not a scenescape run folder: a scene run has frames/ and cameras.json, "
                     "an object run manifest.json (or checkpoint.pt) and video.mp4")


def _is_object_run(p: Path) -> bool:
    from scenescape.io import read_json

    if (p / "checkpoint.pt").is_file():
        return True
    for name in ("manifest.json", ".scenescape-run.json"):
        try:
            data = read_json(p / name)
        except Exception:
            continue
        if isinstance(data, dict) and "object" in (data.get("scenescape"), data.get("mode")):
            return True
    return False


def _load_scene_run(p: Path, max_frames: int | None) -> RunData:
    import imageio.v3 as iio

    from scenescape.io import load_image, read_json
    from scenescape.io.world import cameras_from_file_json

    try:
        cams = cameras_from_file_json(read_json(p / "cameras.json"))  # library frame (the file is Z-up)
    except Exception as e:
        raise InputError(f"'{p / 'cameras.json'}' cannot be read ({type(e).__name__}: {e})") from e
    n = 0
    while n < len(cams) and (p / "frames" / f"{n:04d}.png").is_file():
        n += 1
    if n == 0:
        raise InputError(f"run '{p}' has no frames (frames/0000.png is missing)")
    if n < len(cams):
        warnings.warn(f"run '{p}' has {n} of its {len(cams)} frames (unfinished?); evaluating those", stacklevel=3)
    if max_frames is not None:
        n = min(n, int(max_frames))
    frames = np.stack([load_image(p / "frames" / f"{i:04d}.png") for i in range(n)])
    depths = None
    if all((p / "depth" / f"{i:04d}.npy").is_file() for i in range(n)):
        depths = np.stack([np.load(p / "depth" / f"{i:04d}.npy", allow_pickle=False) for i in range(n)])
    masks = None
    if all((p / "masks" / f"{i:04d}.png").is_file() for i in range(n)):
        ms = []
        for i in range(n):
            m = iio.imread(p / "masks" / f"{i:04d}.png")
            ms.append((m if m.ndim == 2 else m[..., 0]) > 127)
        masks = np.stack(ms)
    return RunData(frames=frames, cameras=list(cams[:n]), depths=depths, masks=masks, prompt=_prompt_of(p),
                   kind="scene", path=p)


def _load_object_run(p: Path, max_frames: int | None) -> RunData:
    from scenescape.io import read_video

    video = p / "video.mp4"
    if not video.is_file():
        raise InputError(f"object run '{p}' has no video.mp4 (was it exported? rerun `scenescape object` to the end)")
    from scenescape.pipelines.object.export import orbit_cameras
    from scenescape.pipelines.object.pipeline import ObjectConfig

    try:
        cfg = ObjectConfig.load(p / "config.yaml")
    except Exception as e:
        raise InputError(f"object run '{p}': config.yaml cannot be read ({e})") from e
    o, c = cfg.output, cfg.camera
    vid = read_video(video).astype(np.float32) / 255.0
    size = int(o.video_size)
    if vid.shape[1] < size or vid.shape[2] < size:
        raise InputError(f"object run '{p}': video.mp4 is {vid.shape[2]}x{vid.shape[1]}, smaller than "
                         f"output.video_size {size}")
    rgb = vid[:, :size, :size]  # the RGB half of RGB | normals
    cams = orbit_cameras(c.eval_radius, c.eval_elevation, c.eval_fov, size, vid.shape[0])
    if max_frames is not None:
        rgb, cams = rgb[:max_frames], cams[:max_frames]
    return RunData(frames=rgb, cameras=list(cams), prompt=_prompt_of(p), kind="object", path=p)
