"""Scene mode: the SceneScape warp-inpaint loop.

::

    from scenescape import ScenePipeline, SceneConfig
    pipe = ScenePipeline(depth=my_depth, inpainter=my_inpainter, config=SceneConfig(seed=3))
    result = pipe.run(prompt="a cozy library", cameras=cams, init_image=img, init_depth=depth)
    result.mesh, result.frames, result.depths, result.masks, result.cameras

The loop (per camera after the first):

1. render the mesh into the camera (optionally supersampled);
2. the disocclusion mask: pixels the mesh does not cover, dilated (``mask.dilate``), optionally
   cleaned by a morphological opening whose removed slivers are filled by OpenCV Telea instead of the
   inpainter (SceneScape), optionally plus SceneScape's floating-artifact border fix, plus (``mask.edge_ring``)
   the rendered pixels on the far side of a depth discontinuity (an occluder's mesh ends at its last pixel
   centre, so the background shows just outside its edge); they are inpainted, but get geometry (step 6)
   only where the new depth is nearer than the rendered one;
3. inpaint the masked pixels (per-frame seed, see :func:`scenescape.backends.seed_for_frame`);
4. composite: known pixels keep EXACTLY the rendered colours; inside the mask the inpainted colours
   are feathered towards the rendered ones over ``composite.feather`` pixels (only where the mesh
   rendered something; never outside the mask);
5. depth for the new pixels: the depth backend's estimate, aligned to the rendered depth on the known
   pixels (robust scale and shift, :func:`~scenescape.geometry.depth_align.align_depth`), then a
   smooth seam correction so it meets the old depth without a step
   (:func:`~scenescape.geometry.depth_align.blend_to_known`);
6. extend the mesh with the new pixels (stitched to the existing surface).

The first frame comes from the user's image (with its depth if given, otherwise from the depth
backend), from the text-to-image backend, or from the inpainter on an empty canvas with a full mask
(SceneScape's way); ``first_frame: auto`` picks the first of those that is available.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from scenescape.backends.base import DEPTH, INPAINTERS, TEXT_TO_IMAGE, BackendConfig, seed_for_frame
from scenescape.config import ConfigError, from_dict, load_config, to_dict
from scenescape.errors import InputError, RunError, ScenescapeError
from scenescape.geometry.camera import Camera
from scenescape.geometry.depth_align import align_depth, blend_to_known

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class MaskConfig:
    """How the inpainting mask of a new view is made."""

    dilate: int = 1
    """Grow the uncovered region by this many pixels (1: without it seams crack)."""
    supersample: int = 1
    """Render the mesh at this factor and downsample (SceneScape: 2)."""
    opening: int = 0
    """Kernel size of a morphological opening of the mask (0 = off; SceneScape: 3)."""
    sliver_fill: bool = True
    """With ``opening``: fill the slivers the opening removes with OpenCV Telea, not the inpainter."""
    border_fix: bool = False
    """SceneScape's floating-artifact fix: the previous frame padded by ``border_pad`` px is rendered into
    the new view; wherever its padding shows is added to the mask."""
    border_pad: int = 128
    edge_ring: int = 1
    """Also mask the rendered pixels within this many pixels on the far side of a rendered depth jump
    (``geometry.masks.disocclusion_mask(edge_ring=)``): they are inpainted, and get geometry only where the
    new depth is nearer than the render by ``edge_threshold`` (``geometry.masks.confirm_nearer``; 0 = off)."""
    edge_threshold: float = 0.1
    """Relative depth jump that counts as a discontinuity for ``edge_ring``."""

    def __post_init__(self) -> None:
        if self.dilate < 0 or self.opening < 0 or self.border_pad < 0 or self.edge_ring < 0:
            raise ConfigError("mask.dilate, mask.opening, mask.border_pad and mask.edge_ring must be >= 0")
        if not self.edge_threshold > 0:
            raise ConfigError(f"mask.edge_threshold must be > 0, got {self.edge_threshold}")
        if self.supersample < 1:
            raise ConfigError(f"mask.supersample must be >= 1, got {self.supersample}")


@dataclasses.dataclass
class AlignConfig:
    """How new depth is fitted to the known geometry."""

    space: Literal["depth", "disparity"] = "depth"
    """Fit ``scale * pred + shift`` to the known depth or to the known disparity (1 / depth).
    Use ``disparity`` for relative-disparity models (MiDaS, Depth Anything)."""
    prediction: Literal["depth", "disparity"] = "depth"
    """What the depth backend returns: z-depth (every built-in backend) or relative disparity."""
    seam: bool = True
    """Smooth correction so new depth meets old depth at the seam (Laplace equation in the new region)."""
    max_step: float = 0.1
    """Relative depth jump at the seam above which it is a real depth edge (left free)."""
    trim: float = 0.1
    """Fraction of the worst-fitting known pixels dropped in the final fit."""


@dataclasses.dataclass
class CompositeConfig:
    feather: int = 2
    """Width in pixels of the blend inside the mask between inpainted and rendered colours."""

    def __post_init__(self) -> None:
        if self.feather < 0:
            raise ConfigError(f"composite.feather must be >= 0, got {self.feather}")


@dataclasses.dataclass
class OutputConfig:
    fps: float = 10.0
    video: bool = True
    mesh_formats: list[str] = dataclasses.field(default_factory=lambda: ["ply", "glb"])
    depth_png: bool = True
    checkpoint: bool = True
    """Checkpoint after every frame (needed for --resume)."""
    async_write: bool = True
    """Write frames and checkpoints on a background thread (in order), overlapping the next frame."""

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ConfigError(f"output.fps must be > 0, got {self.fps}")
        for f in self.mesh_formats:
            if f.lstrip(".").lower() not in ("ply", "glb", "obj"):
                raise ConfigError(f"output.mesh_formats: unknown format '{f}' (use ply, glb, obj)")


def _default_trajectory() -> Any:
    from scenescape.trajectories import TrajectoryConfig

    return TrajectoryConfig(name="scenescape")


@dataclasses.dataclass
class SceneConfig:
    """Everything a scene run needs; YAML presets in ``configs/`` follow this shape.

    ``trajectory`` is a :class:`scenescape.trajectories.TrajectoryConfig` (``{name, params, frames}``);
    a plain string is a preset name or a trajectory file path. ``depth``, ``inpainter`` and
    ``text_to_image`` pick backends by registered name (``{name: opencv, options: {...}}``);
    ``text_to_image.name: ""`` means none.
    """

    seed: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    focal: float = 500.0
    """Focal length in pixels of the default camera (SceneScape: 500 at 512x512)."""
    frames: int = 24
    device: str = "auto"
    first_frame: Literal["auto", "text_to_image", "inpainter", "image"] = "auto"
    trajectory: Any = dataclasses.field(default_factory=_default_trajectory)
    scene_scale: float | None = None
    """Multiplies the trajectory's distances; None = the median depth of the first frame."""
    depth: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig("completion"))
    first_depth: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig(""))
    """Depth backend for a first frame that has no depth (e.g. ``prior`` for a photo offline, since
    ``completion`` needs known depth); empty = the ``depth`` backend."""
    inpainter: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig("opencv"))
    text_to_image: BackendConfig = dataclasses.field(default_factory=lambda: BackendConfig(""))
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    align: AlignConfig = dataclasses.field(default_factory=AlignConfig)
    composite: CompositeConfig = dataclasses.field(default_factory=CompositeConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        from scenescape.trajectories import TrajectoryConfig

        if isinstance(self.trajectory, (str, Path)):
            self.trajectory = TrajectoryConfig(name=str(self.trajectory))
        elif isinstance(self.trajectory, dict):
            self.trajectory = from_dict(TrajectoryConfig, self.trajectory, where="trajectory")
        elif not isinstance(self.trajectory, TrajectoryConfig):
            raise ConfigError(f"trajectory: expected a preset name, a file path or a mapping, got {self.trajectory!r}")
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"width and height must be > 0, got {self.width}x{self.height}")
        if not (self.focal > 0 and math.isfinite(self.focal)):
            raise ConfigError(f"focal must be a positive number of pixels, got {self.focal}")
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}")
        if self.scene_scale is not None and not self.scene_scale > 0:
            raise ConfigError(f"scene_scale must be > 0 (or null for automatic), got {self.scene_scale}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith(("cuda", "mps"))):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got '{self.device}'")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> SceneConfig:
        """Defaults, then a YAML preset, then ``key=value`` overrides (unknown keys are errors)."""
        return load_config(cls, path, list(overrides))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def camera(self) -> Camera:
        """The default first camera: ``focal`` px, principal point at the centre, at the origin."""
        return Camera(self.focal, self.focal, self.width / 2, self.height / 2, self.width, self.height)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SceneResult:
    """Output of :meth:`ScenePipeline.run`.

    Attributes:
        mesh: the final :class:`~scenescape.geometry.mesh.SceneMesh`.
        frames: one ``(H, W, 3)`` float32 image per camera (frames completed before a resume are
            re-read from their 8-bit PNGs).
        depths: ``(H, W)`` float32 z-depth per frame.
        masks: ``(H, W)`` bool per frame, True where pixels were inpainted (all True for frame 0).
        cameras: the cameras, one per frame.
        timings: seconds per stage, summed over frames.
        frame_times: seconds per frame.
        run_dir: the run folder, when one was written.
    """

    mesh: Any
    frames: list[np.ndarray]
    depths: list[np.ndarray]
    masks: list[np.ndarray]
    cameras: list[Camera]
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    frame_times: list[float] = dataclasses.field(default_factory=list)
    run_dir: Path | None = None

    @property
    def video_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "video.mp4"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu; a named device must be available (else :class:`InputError`)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from scenescape.backends.models import pick_device

    return pick_device(device)


def _np(x: Any, dtype: Any = np.float32) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def build_from_section(registry: Any, section: BackendConfig, device: torch.device | None, key: str | None = None) -> Any:
    """Build a backend from its config section; ``device`` is passed if the constructor takes it."""
    from scenescape.backends.base import build_backend

    cls = registry.get(section.name, key=key)
    takes_device = device is not None and "device" in _params(getattr(cls, "__init__", None))
    extra = {"device": device} if takes_device else {}
    return build_backend(registry, section.name, section.options, **extra)


def _validate_image(image: Any, cfg: SceneConfig, where: str) -> np.ndarray:
    a = _np(image)
    if a.ndim == 2:
        warnings.warn(f"{where} is greyscale; converting to RGB", stacklevel=3)
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"{where} must be an (H, W, 3) RGB image, got shape {a.shape}")
    if a.shape[2] == 4:
        warnings.warn(f"{where} has an alpha channel; dropping it", stacklevel=3)
        a = a[..., :3]
    if not np.isfinite(a).all():
        raise InputError(f"{where} contains NaN or infinite values")
    if a.max() > 1.0 + 1e-6:
        if a.max() <= 255.0:
            warnings.warn(f"{where} looks like 0-255 values; scaling to [0, 1]", stacklevel=3)
            a = a / 255.0
        else:
            raise InputError(f"{where} values must be in [0, 1] (float) or 0-255, max is {a.max()}")
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0), dtype=np.float32)


def _validate_depth(depth: Any, shape: tuple[int, int], where: str = "init_depth") -> np.ndarray:
    d = _np(depth).squeeze()
    if d.shape != tuple(shape):
        raise InputError(f"{where} has shape {d.shape}, but the image is {tuple(shape)} (H, W)")
    if not np.isfinite(d).all():
        raise InputError(f"{where} contains NaN or infinite values")
    if (d <= 0).any():
        raise InputError(f"{where} contains zero or negative depths ({int((d <= 0).sum())} pixels)")
    return np.ascontiguousarray(d, dtype=np.float32)


def composite(inpainted: np.ndarray, rendered: np.ndarray, rendered_valid: np.ndarray, mask: np.ndarray,
              feather: int) -> np.ndarray:
    """Known pixels keep ``rendered`` exactly; inside ``mask`` the inpainted colours, feathered.

    Inside the mask, at distance ``d`` (1 = touching a known pixel) from the known region, the result
    is ``a * inpainted + (1 - a) * rendered`` with ``a = d / (feather + 1)`` (capped at 1), but only
    where the mesh rendered a colour (``rendered_valid``); elsewhere it is the inpainted colour.
    All arrays ``(H, W, 3)`` / ``(H, W)``.
    """
    out = np.where(mask[..., None], inpainted, rendered).astype(np.float32)
    if feather > 0 and mask.any() and (~mask).any():
        import cv2

        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        a = np.clip(dist / (feather + 1.0), 0.0, 1.0)
        band = mask & rendered_valid & (a < 1.0)
        if band.any():
            aa = a[band][:, None]
            out[band] = aa * inpainted[band] + (1.0 - aa) * rendered[band]
    return out


def _telea(image: np.ndarray, mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    import cv2

    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.inpaint(u8, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------

STAGES = ("render", "mask", "inpaint", "depth", "align", "extend", "write", "checkpoint")


class _Persist:
    """Writes each finished frame and then its checkpoint, in that order, on one background thread
    (``output.async_write``) so that PNG encoding and mesh saving overlap the next frame's work.

    A checkpoint for frame ``i`` is only written after frame ``i``'s files, so a resume never points past
    what is on disk. Errors surface at the next call or at :meth:`close`.
    """

    def __init__(self, pipe: ScenePipeline, run: Any, asynchronous: bool):
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.pipe = pipe
        self.run = run
        self.lock = threading.Lock()
        self.timings = {"write": 0.0, "checkpoint": 0.0}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="scenescape-writer") if asynchronous else None
        self.futures: list[Any] = []

    def submit(self, i: int, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, mesh: Any,
               state: dict[str, Any], extra: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._check()
        snap = (mesh.vertices.clone(), mesh.faces.clone(), mesh.colors.clone())  # the mesh as of frame i
        job = (i, image, depth, mask, snap, state, extra)
        if self.pool is None:
            self._write(*job)
        else:
            self.futures.append(self.pool.submit(self._write, *job))

    def _write(self, i: int, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, snap: tuple, state: dict,
               extra: dict) -> None:
        from scenescape.geometry.mesh import SceneMesh

        cfg = self.pipe.config
        t = time.perf_counter()
        self.run.save_frame(i, image, depth, mask, depth_png=cfg.output.depth_png)
        t2 = time.perf_counter()
        if cfg.output.checkpoint:
            mesh = SceneMesh(*snap, device=snap[0].device)
            with self.lock:
                state = dict(state, timings={**state["timings"], **self.timings})
            self.run.save_checkpoint(i, mesh, state, extra)
        t3 = time.perf_counter()
        with self.lock:
            self.timings["write"] += t2 - t
            self.timings["checkpoint"] += t3 - t2

    def _check(self) -> None:
        done = [f for f in self.futures if f.done()]
        for f in done:
            f.result()  # re-raise a writer error here
        self.futures = [f for f in self.futures if not f.done()]

    def close(self) -> None:
        if self.pool is not None:
            try:
                for f in self.futures:
                    f.result()
            finally:
                self.pool.shutdown(wait=True)
                self.futures = []


class ScenePipeline:
    """The SceneScape loop over any depth / inpainter / text-to-image backends.

    Args:
        depth: an object with ``estimate(image, camera, known_depth=None, known_mask=None) -> (H, W)``.
        inpainter: an object with ``inpaint(image, mask, camera, prompt) -> (H, W, 3)``. If it also
            accepts ``seed=`` (and ``negative_prompt=``), the per-frame seed is passed.
        text_to_image: optional, ``generate(prompt, width, height, seed) -> (H, W, 3)``.
        config: a :class:`SceneConfig` (its backend sections are ignored when objects are given).
    """

    def __init__(self, depth: Any = None, inpainter: Any = None, text_to_image: Any = None,
                 config: SceneConfig | None = None, first_depth: Any = None):
        self.config = config if config is not None else SceneConfig()
        self.device = resolve_device(self.config.device)
        self.depth = depth
        self.first_depth = first_depth
        self.inpainter = inpainter
        self.text_to_image = text_to_image
        for name, obj, meth in (("depth", depth, "estimate"), ("first_depth", first_depth, "estimate"),
                                ("inpainter", inpainter, "inpaint"),
                                ("text_to_image", text_to_image, "generate")):
            if obj is not None and not callable(getattr(obj, meth, None)):
                raise TypeError(f"{name} backend {type(obj).__name__} has no '{meth}' method")

    @classmethod
    def from_config(cls, config: SceneConfig | dict | str | Path, overrides: Sequence[str] = ()) -> ScenePipeline:
        """Build the backends named in the config (``config`` may be a dict or a YAML path)."""
        if isinstance(config, (str, Path)):
            cfg = SceneConfig.load(config, overrides)
        elif isinstance(config, dict):
            cfg = from_dict(SceneConfig, config)
        else:
            cfg = config
        if overrides and not isinstance(config, (str, Path)):
            from scenescape.config import apply_overrides

            cfg = apply_overrides(cfg, list(overrides))
        # "auto": each model backend picks its own device (cuda, then mps, then cpu); the geometry runs on
        # cuda or cpu. A named device is passed to every backend whose options do not name one.
        device = None if cfg.device == "auto" else resolve_device(cfg.device)
        from scenescape.registry import check_plugins

        check_plugins(cfg)  # a 'module:Class' backend only with the user's consent (names the key)
        depth = build_from_section(DEPTH, cfg.depth, device) if cfg.depth.name else None
        inpainter = build_from_section(INPAINTERS, cfg.inpainter, device) if cfg.inpainter.name else None
        t2i = build_from_section(TEXT_TO_IMAGE, cfg.text_to_image, device) if cfg.text_to_image.name else None
        first = build_from_section(DEPTH, cfg.first_depth, device) if cfg.first_depth.name else None
        return cls(depth=depth, inpainter=inpainter, text_to_image=t2i, config=cfg, first_depth=first)

    # ------------------------------------------------------------------ public
    def build_cameras(self, start: Camera | None = None, scene_scale: float | None = None,
                      frames: int | None = None) -> list[Camera]:
        """Cameras of the configured trajectory from ``start`` (default: :meth:`SceneConfig.camera`)."""
        from scenescape.trajectories import build_trajectory

        cfg = self.config
        start = start if start is not None else cfg.camera()
        scale = cfg.scene_scale if cfg.scene_scale is not None else scene_scale
        return build_trajectory(cfg.trajectory, start, frames if frames is not None else cfg.frames, scale)

    def run(self, prompt: str | None = None, cameras: Sequence[Camera] | None = None, init_image: Any = None,
            init_depth: Any = None, out_dir: str | Path | None = None, resume: bool = False,
            progress: bool = True, overwrite: bool = False, start_camera: Camera | None = None,
            on_frame: Any = None, command: list[str] | None = None) -> SceneResult:
        """Run the loop.

        Args:
            prompt: text for the generative backends (default ``config.prompt``).
            cameras: one camera per frame; default: the configured trajectory from ``start_camera``
                (or the default camera), scaled by the first frame's median depth.
            init_image: optional ``(H, W, 3)`` start image in [0, 1] (or 0-255; greyscale/RGBA are
                converted with a warning).
            init_depth: optional ``(H, W)`` z-depth of ``init_image`` (finite, > 0).
            out_dir: write a run folder there (see :mod:`scenescape.pipelines.runs`).
            resume: continue the run in ``out_dir`` from its last checkpoint (its saved cameras and
                inputs are used; passing different ones is an error).
            overwrite: replace an existing run folder ``out_dir``.
            progress: show a tqdm progress bar with per-frame timings.
            on_frame: optional callback ``on_frame(index, seconds)`` after each frame.
            command: the command line, recorded in the run folder's marker.
        """
        cfg = self.config
        prompt = cfg.prompt if prompt is None else str(prompt)
        if out_dir is None and resume:
            raise InputError("resume=True needs out_dir (the run folder to continue)")
        if resume and overwrite:
            raise InputError("choose either resume or overwrite, not both")
        run = None
        if out_dir is not None and resume:
            from scenescape.pipelines.runs import RunFolder

            run = RunFolder.open_existing(out_dir)
        timings = {k: 0.0 for k in STAGES}

        # ---- inputs (a resume uses the saved ones) --------------------------------------------
        if run is not None and resume:
            init_image, init_depth, cameras, start_camera = self._resume_inputs(run, init_image, init_depth,
                                                                                  cameras, start_camera)
        if init_image is not None:
            init_image = _validate_image(init_image, cfg, "init_image")
        if init_depth is not None:
            if init_image is None:
                raise InputError("init_depth was given without init_image; pass the image the depth belongs to")
            init_depth = _validate_depth(init_depth, init_image.shape[:2])
        cams = list(cameras) if cameras is not None else self._explicit_cameras()
        if cams is not None:
            if not cams:
                raise InputError("cameras is empty; pass at least one Camera")
            for i, c in enumerate(cams):
                if not isinstance(c, Camera):
                    raise InputError(f"cameras[{i}] is a {type(c).__name__}, not a Camera")
        first = cams[0] if cams else (start_camera if start_camera is not None else None)
        if first is None:
            if init_image is not None and init_image.shape[:2] != (cfg.height, cfg.width):
                h, w = init_image.shape[:2]
                cam0 = Camera(cfg.focal * w / cfg.width, cfg.focal * w / cfg.width, w / 2, h / 2, w, h)
            else:
                cam0 = cfg.camera()
        else:
            cam0 = first
        if init_image is not None and init_image.shape[:2] != (cam0.height, cam0.width):
            raise InputError(f"init_image is {init_image.shape[1]}x{init_image.shape[0]} but the first camera is "
                             f"{cam0.width}x{cam0.height}; resize the image or set width/height")
        mode = self._first_frame_mode(init_image)
        if mode in ("text_to_image", "inpainter") and not prompt.strip():
            raise InputError(f"a prompt is needed to make the first frame with the {mode.replace('_', '-')} backend; "
                             "give PROMPT (or prompt: in the config), or start from an image (--image)")
        if self.depth is None and (cams is None or len(cams) > 1):
            raise InputError("no depth backend configured for the new pixels; set depth.name "
                             "(completion, prior, transformers)")
        if cams is not None and len(cams) > 1 and self.inpainter is None:
            raise InputError("no inpainter configured; set inpainter.name (opencv, diffusers, oracle)")

        if cams is None and cfg.trajectory is not None:  # a dry run: bad trajectory params fail before writing
            try:
                dry = self.build_cameras(cam0, scene_scale=cfg.scene_scale or 1.0)
            except InputError as e:
                raise InputError(f"trajectory '{cfg.trajectory.name}' with params {dict(cfg.trajectory.params)}: {e}"
                                 ) from e
            if not all(np.isfinite(c.world_to_camera.detach().cpu().numpy()).all() for c in dry):
                raise InputError(f"trajectory '{cfg.trajectory.name}' with params {dict(cfg.trajectory.params)} gives "
                                 "non-finite camera poses; check its numbers (NaN or infinite)")

        if out_dir is not None and not resume:  # everything validated: only now is the folder made
            from scenescape.pipelines.runs import RunFolder

            run = RunFolder.begin(out_dir, mode="scene", config=dataclasses.replace(cfg, prompt=prompt),  # resolved
                                  inputs={"image.npy": init_image, "depth.npy": init_depth, "camera.json": cam0},
                                  overwrite=overwrite, command=command)

        # ---- state: fresh or from the checkpoint ----------------------------------------------
        frames: list[np.ndarray] = []
        depths: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        frame_times: list[float] = []
        mesh = None
        prev: dict[str, Any] = {}
        start_index = 0
        ck = run.load_checkpoint() if (run is not None and resume) else None
        if ck is not None:
            done, mesh, state, extra = ck
            mesh = mesh.to(self.device) if hasattr(mesh, "to") else mesh
            cams = run.load_cameras()
            if cams is None:
                raise RunError(f"run '{run.path}' has a checkpoint but no cameras.json: it is corrupt")
            for i in range(done + 1):
                img, dep, msk = run.load_frame(i)
                frames.append(img)
                depths.append(dep)
                masks.append(msk)
            frame_times = [float(t) for t in state.get("frame_times", [])]
            for k, v in (state.get("timings") or {}).items():
                timings[k] = float(v)
            prev = {k: v for k, v in extra.items()}
            start_index = done + 1
        if run is not None and resume:  # everything verified: a folder killed while being created is completed
            run.complete_creation()

        bar = None
        t_loop = time.perf_counter()
        persist = _Persist(self, run, cfg.output.async_write)
        try:
            if start_index == 0:
                t0 = time.perf_counter()
                image0, depth0 = self._first_frame(mode, prompt, cam0, init_image, init_depth, timings)
                from scenescape.geometry.mesh import SceneMesh

                t1 = time.perf_counter()
                mesh = SceneMesh.from_rgbd(torch.as_tensor(image0, device=self.device),
                                           torch.as_tensor(depth0, device=self.device), cam0)
                timings["extend"] += time.perf_counter() - t1
                if cams is None:
                    scale = float(np.median(depth0))
                    cams = self.build_cameras(cam0, scene_scale=scale)
                m0 = np.ones(depth0.shape, bool)
                frames.append(image0)
                depths.append(depth0)
                masks.append(m0)
                prev = {"image": image0, "depth": depth0}
                if run is not None:
                    run.save_cameras(cams)
                frame_times.append(time.perf_counter() - t0)
                persist.submit(0, image0, depth0, m0, mesh, self._state(timings, frame_times), self._extra(prev))
                if on_frame is not None:
                    on_frame(0, frame_times[-1])
                start_index = 1
            assert cams is not None
            if progress and len(cams) > 1:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(cams), initial=start_index, desc="frames", unit="frame", dynamic_ncols=True)
            for i in range(start_index, len(cams)):
                t0 = time.perf_counter()
                image, depth, mask, mesh = self._step(i, cams[i], cams[i - 1], mesh, prompt, prev, timings)
                frames.append(image)
                depths.append(depth)
                masks.append(mask)
                prev = {"image": image, "depth": depth}
                frame_times.append(time.perf_counter() - t0)
                persist.submit(i, image, depth, mask, mesh, self._state(timings, frame_times), self._extra(prev))
                if on_frame is not None:
                    on_frame(i, frame_times[-1])
                if bar is not None:
                    bar.set_postfix(frame_s=f"{frame_times[-1]:.2f}", new_px=int(mask.sum()))
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            persist.close()  # everything finished is on disk (also when the loop raised)
        for k, v in persist.timings.items():
            timings[k] = timings.get(k, 0.0) + v

        result = SceneResult(mesh=mesh, frames=frames, depths=depths, masks=masks, cameras=list(cams),
                             timings=timings, frame_times=frame_times, run_dir=run.path if run else None)
        if run is not None:
            self._finish_run(run, result, prompt, time.perf_counter() - t_loop)
            run.close()  # the folder's lock
        return result

    # ------------------------------------------------------------------ internals
    def _resume_inputs(self, run: Any, init_image: Any, init_depth: Any, cameras: Any,
                       start_camera: Any) -> tuple[Any, Any, Any, Any]:
        img, dep = run.load_inputs()
        if init_image is not None and (img is None or not np.array_equal(_np(init_image), img)):
            raise RunError(f"resume: init_image differs from the one run '{run.path}' started with")
        saved = run.load_cameras()
        if cameras is not None and saved is not None and list(cameras) != saved[:len(cameras)]:
            raise RunError(f"resume: the cameras differ from those of run '{run.path}'")
        cam_file = run.path / "inputs" / "camera.json"
        if start_camera is None and cam_file.is_file():
            from scenescape.io import read_json

            start_camera = Camera.from_dict(read_json(cam_file))
        return img, dep, (saved if saved is not None else cameras), start_camera

    def _explicit_cameras(self) -> list[Camera] | None:
        """The cameras of a trajectory file that lists explicit cameras (None for presets/segments)."""
        from scenescape.trajectories import load_trajectory_file, looks_like_path

        name = self.config.trajectory.name
        if not looks_like_path(name):
            return None
        items = load_trajectory_file(name)
        if not all(isinstance(c, Camera) for c in items):
            return None
        n = self.config.frames
        if n > len(items):
            raise InputError(f"trajectory file '{name}' has {len(items)} cameras but frames={n}")
        return list(items[:n])

    def _first_frame_mode(self, init_image: Any) -> str:
        mode = self.config.first_frame
        if mode == "auto":
            if init_image is not None:
                return "image"
            if self.text_to_image is not None:
                return "text_to_image"
            if self.inpainter is not None:
                return "inpainter"
            raise InputError("nothing can make the first frame: pass an image (--image), or configure "
                             "text_to_image or an inpainter")
        if mode == "image" and init_image is None:
            raise InputError("first_frame is 'image' but no image was given (--image PATH)")
        if mode == "text_to_image" and self.text_to_image is None:
            raise InputError("first_frame is 'text_to_image' but no text_to_image backend is configured")
        if mode == "inpainter" and self.inpainter is None:
            raise InputError("first_frame is 'inpainter' but no inpainter is configured")
        return mode

    def _seed(self, frame: int, stream: int = 0) -> int:
        s = seed_for_frame(self.config.seed, frame, stream)
        torch.manual_seed(s)
        return s

    def _call_inpaint(self, image: np.ndarray, mask: np.ndarray, cam: Camera, prompt: str, seed: int) -> np.ndarray:
        fn = self.inpainter.inpaint
        kwargs: dict[str, Any] = {}
        params = _params(fn)
        if "seed" in params:
            kwargs["seed"] = seed
        if "negative_prompt" in params and self.config.negative_prompt:
            kwargs["negative_prompt"] = self.config.negative_prompt
        out = fn(image, mask, cam, prompt, **kwargs)
        out = _np(out)
        if out.shape != image.shape:
            raise ScenescapeError(f"inpainter returned shape {out.shape}, expected {image.shape}")
        if not np.isfinite(out).all():
            raise ScenescapeError("inpainter returned NaN or infinite values")
        return np.clip(out, 0.0, 1.0)

    def _estimate_depth(self, image: np.ndarray, cam: Camera, known_depth: Any, known_mask: Any,
                        estimator: Any = None) -> np.ndarray:
        est = estimator if estimator is not None else self.depth
        d = _np(est.estimate(image, cam, known_depth, known_mask), np.float32)
        if d.shape != image.shape[:2]:
            raise ScenescapeError(f"depth backend returned shape {d.shape}, expected {image.shape[:2]}")
        if not np.isfinite(d).all():
            raise ScenescapeError(f"depth backend {type(est).__name__} returned NaN or infinite depth")
        return d

    def _first_frame(self, mode: str, prompt: str, cam: Camera, init_image: Any, init_depth: Any,
                     timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        t0 = time.perf_counter()
        seed = self._seed(0)
        h, w = cam.height, cam.width
        if mode == "image":
            image = init_image
        elif mode == "text_to_image":
            kwargs = {"negative_prompt": cfg.negative_prompt} if (
                cfg.negative_prompt and "negative_prompt" in _params(self.text_to_image.generate)) else {}
            image = _validate_image(self.text_to_image.generate(prompt, w, h, seed, **kwargs), cfg, "text_to_image output")
            if image.shape[:2] != (h, w):
                raise ScenescapeError(f"text_to_image returned {image.shape[1]}x{image.shape[0]}, expected {w}x{h}")
        else:  # inpainter on an empty canvas with a full mask (SceneScape)
            canvas = np.zeros((h, w, 3), np.float32)
            image = self._call_inpaint(canvas, np.ones((h, w), bool), cam, prompt, seed)
        timings["inpaint"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if init_depth is not None:
            depth = init_depth
        else:
            est = self.first_depth if self.first_depth is not None else self.depth
            depth = self._estimate_depth(image, cam, None, None, estimator=est)
            if self.config.align.prediction == "disparity":
                depth = 1.0 / np.maximum(depth, 1e-6 * max(float(depth.max()), 1e-12))
            depth = _validate_depth(depth, image.shape[:2], where=f"depth from {type(self.depth).__name__}")
        timings["depth"] += time.perf_counter() - t0
        return image.astype(np.float32), depth.astype(np.float32)

    def _mask(self, render: Any, mesh: Any, cam: Camera, prev_cam: Camera,
              prev: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(mask, base)``: the inpainting mask and the part of it that is new whatever the depth
        (``mask & ~base`` is the ``edge_ring`` band: geometry only where the new depth is nearer)."""
        from scenescape.geometry.masks import disocclusion_mask

        mcfg = self.config.mask
        base = _np(disocclusion_mask(render.mask, dilate=mcfg.dilate), bool)
        if mcfg.border_fix and "depth" in prev:
            base |= self._border_mask(prev, prev_cam, cam)
        mask = base
        if mcfg.edge_ring:
            mask = base | _np(disocclusion_mask(render.mask, dilate=mcfg.dilate, depth=render.depth,
                                                edge_ring=mcfg.edge_ring, edge_threshold=mcfg.edge_threshold), bool)
        return mask, base

    def _border_mask(self, prev: dict[str, Any], prev_cam: Camera, cam: Camera) -> np.ndarray:
        """SceneScape's floating-artifact fix: where the padding of the previous view shows."""
        from scenescape.geometry.mesh import SceneMesh
        from scenescape.geometry.raster import render_mesh

        pad = self.config.mask.border_pad
        d = np.pad(_np(prev["depth"]), pad, mode="edge")
        flag = np.ones((*d.shape, 3), np.float32)
        flag[pad:pad + prev_cam.height, pad:pad + prev_cam.width] = 0.0
        pcam = prev_cam.cropped(-pad, -pad, prev_cam.width + 2 * pad, prev_cam.height + 2 * pad)
        tmp = SceneMesh.from_rgbd(torch.as_tensor(flag, device=self.device), torch.as_tensor(d, device=self.device), pcam)
        r = render_mesh(tmp, cam)
        return _np(r.mask, bool) & (_np(r.image)[..., 0] > 0.5)

    def _step(self, i: int, cam: Camera, prev_cam: Camera, mesh: Any, prompt: str, prev: dict[str, Any],
              timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        from scenescape.geometry.raster import render_mesh

        cfg = self.config
        seed = self._seed(i)
        t = time.perf_counter()
        render = render_mesh(mesh, cam, supersample=cfg.mask.supersample)
        rimg = _np(render.image)
        rdepth = _np(render.depth)
        rvalid = _np(render.mask, bool)
        t2 = time.perf_counter()
        timings["render"] += t2 - t
        t = t2

        new_mask, base_mask = self._mask(render, mesh, cam, prev_cam, prev)
        inpaint_mask = new_mask
        base = np.where(new_mask[..., None], 0.0, rimg).astype(np.float32)
        if cfg.mask.opening > 1 and new_mask.any():
            import cv2

            k = np.ones((cfg.mask.opening, cfg.mask.opening), np.uint8)
            opened = cv2.morphologyEx(new_mask.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)
            slivers = new_mask & ~opened
            if cfg.mask.sliver_fill and slivers.any():
                filled = _telea(base, new_mask)
                base[slivers] = filled[slivers]
                inpaint_mask = opened
        t2 = time.perf_counter()
        timings["mask"] += t2 - t
        t = t2

        if not new_mask.any():
            # nothing new to see: the frame is the render, the mesh is unchanged
            return rimg.astype(np.float32), np.where(rvalid, rdepth, 0).astype(np.float32), new_mask, mesh
        if inpaint_mask.any():
            inpainted = self._call_inpaint(base, inpaint_mask, cam, prompt, seed)
        else:
            inpainted = base
        known = ~new_mask
        image = composite(inpainted, rimg, rvalid, new_mask, cfg.composite.feather)
        image[known] = rimg[known]
        t2 = time.perf_counter()
        timings["inpaint"] += t2 - t
        t = t2

        known_mask = rvalid & known & (rdepth > 0)
        pred = self._estimate_depth(image, cam, np.where(known_mask, rdepth, 0.0).astype(np.float32), known_mask)
        t2 = time.perf_counter()
        timings["depth"] += t2 - t
        t = t2
        acfg = cfg.align
        if acfg.prediction == "disparity" and acfg.space == "depth":
            pred = 1.0 / np.maximum(pred, 1e-6 * max(float(pred.max()), 1e-12))
        elif acfg.prediction == "depth" and acfg.space == "disparity":
            pred = 1.0 / np.maximum(pred, 1e-12)
        if known_mask.sum() >= 16:
            aligned, _, _ = align_depth(pred, rdepth, known_mask, space=acfg.space, trim=acfg.trim)
            depth = blend_to_known(aligned, rdepth, known_mask, new_mask, seam=acfg.seam, max_step=acfg.max_step)
        else:
            warnings.warn(f"frame {i}: fewer than 16 known pixels, new depth is used without alignment",
                          stacklevel=2)
            depth = pred if acfg.space == "depth" else 1.0 / np.maximum(pred, 1e-12)
            depth = _validate_depth(depth, pred.shape, where=f"frame {i} depth")
        depth = _np(depth)
        geo_mask = new_mask
        if not np.array_equal(new_mask, base_mask):
            from scenescape.geometry.masks import confirm_nearer

            # the edge band gets geometry only where the new surface is nearer than the rendered one
            geo_mask = _np(confirm_nearer(new_mask, base_mask, rdepth, depth, cfg.mask.edge_threshold), bool)
        t2 = time.perf_counter()
        timings["align"] += t2 - t
        t = t2

        if geo_mask.any():
            mesh.extend_from_rgbd(torch.as_tensor(image, device=self.device),
                                  torch.as_tensor(depth, device=self.device),
                                  cam, torch.as_tensor(geo_mask, device=self.device), render=render)
        timings["extend"] += time.perf_counter() - t
        out_depth = np.where(geo_mask, depth, np.where(rvalid, rdepth, depth)).astype(np.float32)
        return image.astype(np.float32), out_depth, new_mask, mesh

    def _state(self, timings: dict[str, float], frame_times: list[float]) -> dict[str, Any]:
        """Loop state stored with a checkpoint (copies: the loop goes on while it is written)."""
        return {"timings": dict(timings), "frame_times": list(frame_times), "seed": self.config.seed}

    def _extra(self, prev: dict[str, Any]) -> dict[str, Any]:
        return {"depth": prev["depth"]} if self.config.mask.border_fix else {}

    def _finish_run(self, run: Any, result: SceneResult, prompt: str, loop_s: float) -> None:
        from scenescape.pipelines.runs import package_versions

        cfg = self.config
        t = time.perf_counter()
        run.save_cameras(result.cameras)
        run.save_transforms(result.cameras)
        if cfg.output.video:
            run.write_video(len(result.frames), cfg.output.fps)
        t_video = time.perf_counter() - t
        t = time.perf_counter()
        run.write_mesh(result.mesh, cfg.output.mesh_formats)
        t_mesh = time.perf_counter() - t
        result.timings["video"] = t_video
        result.timings["mesh_export"] = t_mesh
        manifest = {
            "scenescape": "scene",
            "prompt": prompt,
            "seed": cfg.seed,
            "frames": len(result.frames),
            "size": [cfg.width, cfg.height],
            "device": str(self.device),
            "backends": {
                "depth": _describe(self.depth, cfg.depth),
                "first_depth": _describe(self.first_depth, cfg.first_depth),
                "inpainter": _describe(self.inpainter, cfg.inpainter),
                "text_to_image": _describe(self.text_to_image, cfg.text_to_image),
            },
            "versions": package_versions(),
            "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
            "frame_times_s": [round(x, 4) for x in result.frame_times],
            "loop_s": round(loop_s, 3),
            "mesh": {"vertices": int(_count(result.mesh, "vertices")), "faces": int(_count(result.mesh, "faces"))},
            "outputs": sorted(p.name for p in run.path.iterdir() if not p.name.startswith(".")),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        run.write_manifest(manifest)


def _params(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def _describe(obj: Any, section: BackendConfig) -> dict[str, Any] | None:
    if obj is None:
        return None
    out: dict[str, Any] = {"class": f"{type(obj).__module__}:{type(obj).__qualname__}"}
    if section.name:
        out["name"] = section.name
        out["options"] = dict(section.options)
    for attr in ("model_id", "model_name", "model"):
        v = getattr(obj, attr, None)
        if isinstance(v, str):
            out["model"] = v
            break
    return out


def _count(mesh: Any, attr: str) -> int:
    v = getattr(mesh, attr, None)
    return 0 if v is None else len(v)


__all__ = [
    "AlignConfig", "CompositeConfig", "MaskConfig", "OutputConfig", "SceneConfig", "ScenePipeline", "SceneResult",
    "composite",
]
