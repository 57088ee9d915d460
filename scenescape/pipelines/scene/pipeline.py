"""Scene mode: the SceneScape warp-inpaint loop over a camera trajectory.

::

    from scenescape import ScenePipeline, SceneConfig
    pipe = ScenePipeline(depth=my_depth, inpainter=my_inpainter, config=SceneConfig(seed=3))
    result = pipe.run(prompt="a cozy library", cameras=cams, init_image=img, init_depth=depth)
    result.mesh, result.frames, result.depths, result.masks, result.cameras

The first frame comes from the user's image (with its depth if given, otherwise from the depth
backend), from the text-to-image backend, or from the inpainter on an empty canvas with a full mask
(SceneScape's way); ``first_frame: auto`` picks the first of those that is available. Every later frame
is one :func:`~scenescape.pipelines.scene.step.warp_inpaint_step` (render, mask, inpaint, composite,
depth, align, extend). A run folder (:mod:`scenescape.pipelines.runs`) gets each frame and a checkpoint
as it is made (:mod:`scenescape.pipelines.scene.persist`), so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scenescape.backends.base import (
    DEPTH,
    INPAINTERS,
    TEXT_TO_IMAGE,
    DepthEstimator,
    Inpainter,
    TextToImage,
    seed_for_frame,
)
from scenescape.config import apply_overrides, from_dict
from scenescape.devices import pick_device
from scenescape.errors import InputError, RunError, ScenescapeError
from scenescape.geometry.camera import Camera
from scenescape.geometry.mesh import SceneMesh
from scenescape.io import read_json
from scenescape.pipelines.runs import RunFolder
from scenescape.pipelines.scene.config import SceneConfig
from scenescape.pipelines.scene.inputs import to_numpy, validate_depth, validate_image
from scenescape.pipelines.scene.persist import FrameWriter, describe_backend, finish_run
from scenescape.pipelines.scene.step import (
    call_depth,
    call_inpainter,
    timed,
    to_depth_space,
    warp_inpaint_step,
)
from scenescape.registry import check_plugins
from scenescape.trajectories import build_trajectory, load_trajectory_file

STAGES = ("render", "mask", "inpaint", "depth", "align", "extend", "write", "checkpoint")


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
        candidates: with ``inpainter.candidates > 1``, per frame after the first ``{"frame", "chosen",
            "candidates": [{"seed", "score", "clip", "seam"}, ...]}``.
    """

    mesh: Any
    frames: list[np.ndarray]
    depths: list[np.ndarray]
    masks: list[np.ndarray]
    cameras: list[Camera]
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    frame_times: list[float] = dataclasses.field(default_factory=list)
    run_dir: Path | None = None
    candidates: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def video_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "video.mp4"


class ScenePipeline:
    """The SceneScape loop over any depth / inpainter / text-to-image backends.

    Args:
        depth: an object with ``estimate(image, camera, known_depth=None, known_mask=None) -> (H, W)``.
        inpainter: an :class:`~scenescape.backends.base.Inpainter`:
            ``inpaint(image, mask, camera, prompt, seed=None, negative_prompt=None) -> (H, W, 3)``.
        text_to_image: optional :class:`~scenescape.backends.base.TextToImage`:
            ``generate(prompt, width, height, seed, negative_prompt=None) -> (H, W, 3)``.
        config: a :class:`SceneConfig` (its backend sections are ignored when objects are given).
    """

    def __init__(self, depth: DepthEstimator | None = None, inpainter: Inpainter | None = None,
                 text_to_image: TextToImage | None = None, config: SceneConfig | None = None,
                 first_depth: DepthEstimator | None = None):
        self.config = config if config is not None else SceneConfig()
        self.device = pick_device(self.config.device, allow_mps=False)
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
            cfg = apply_overrides(cfg, list(overrides))
        # "auto": each model backend picks its own device (cuda, then mps, then cpu); the geometry runs on
        # cuda or cpu. A named device is passed to every backend whose options do not name one.
        device = None if cfg.device == "auto" else pick_device(cfg.device)
        check_plugins(cfg)  # a 'module:Class' backend only with the user's consent (the error names the key)
        depth = cfg.depth.build(DEPTH, device=device) if cfg.depth.name else None
        inpainter = cfg.inpainter.build(INPAINTERS, device=device) if cfg.inpainter.name else None
        t2i = cfg.text_to_image.build(TEXT_TO_IMAGE, device=device) if cfg.text_to_image.name else None
        first = cfg.first_depth.build(DEPTH, device=device) if cfg.first_depth.name else None
        return cls(depth=depth, inpainter=inpainter, text_to_image=t2i, config=cfg, first_depth=first)

    # ------------------------------------------------------------------ public
    def build_cameras(self, start: Camera | None = None, scene_scale: float | None = None,
                      frames: int | None = None) -> list[Camera]:
        """Cameras of the configured trajectory from ``start`` (default: :meth:`SceneConfig.camera`)."""
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
            run = RunFolder.open_existing(out_dir)
        timings = {k: 0.0 for k in STAGES}

        # ---- inputs (a resume uses the saved ones) --------------------------------------------
        if run is not None and resume:
            init_image, init_depth, cameras, start_camera = self._resume_inputs(run, init_image, init_depth,
                                                                                  cameras, start_camera)
        if init_image is not None:
            init_image = validate_image(init_image, "init_image")
        if init_depth is not None:
            if init_image is None:
                raise InputError("init_depth was given without init_image; pass the image the depth belongs to")
            init_depth = validate_depth(init_depth, init_image.shape[:2])
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

        if cams is None:  # a dry run: bad trajectory params fail before anything is written
            tcfg = cfg.trajectory
            what = f"trajectory file '{tcfg.file}'" if tcfg.file else f"trajectory '{tcfg.name}' with params {tcfg.params}"
            try:
                dry = self.build_cameras(cam0, scene_scale=cfg.scene_scale or 1.0)
            except InputError as e:
                raise InputError(f"{what}: {e}") from e
            if not all(np.isfinite(c.world_to_camera.detach().cpu().numpy()).all() for c in dry):
                raise InputError(f"{what} gives non-finite camera poses; check its numbers (NaN or infinite)")

        if out_dir is not None and not resume:  # everything validated: only now is the folder made
            run = RunFolder.begin(out_dir, mode="scene", config=dataclasses.replace(cfg, prompt=prompt),  # resolved
                                  inputs={"image.npy": init_image, "depth.npy": init_depth, "camera.json": cam0},
                                  overwrite=overwrite, command=command)

        # ---- state: fresh or from the checkpoint ----------------------------------------------
        frames: list[np.ndarray] = []
        depths: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        frame_times: list[float] = []
        chosen: list[dict[str, Any]] = []
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
            chosen = list(state.get("candidates") or [])
            for k, v in (state.get("timings") or {}).items():
                timings[k] = float(v)
            prev = {k: v for k, v in extra.items()}
            start_index = done + 1
        if run is not None and resume:  # everything verified: a folder killed while being created is completed
            run.complete_creation()

        bar = None
        t_loop = time.perf_counter()
        persist = FrameWriter(run, cfg.output)
        scorer = self._candidate_scorer(prompt)
        try:
            if start_index == 0:
                t0 = time.perf_counter()
                image0, depth0 = self._first_frame(mode, prompt, cam0, init_image, init_depth, timings)
                with timed(timings, "extend"):
                    mesh = SceneMesh.from_rgbd(torch.as_tensor(image0, device=self.device),
                                               torch.as_tensor(depth0, device=self.device), cam0,
                                               **dataclasses.asdict(cfg.mesh.options()))
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
                persist.submit(0, image0, depth0, m0, mesh, self._state(timings, frame_times, chosen),
                               self._extra(prev))
                if on_frame is not None:
                    on_frame(0, frame_times[-1])
                start_index = 1
            self._release_first_frame_models()  # frame 0 exists (made now, or read back on resume)
            assert cams is not None
            if progress and len(cams) > 1:
                bar = tqdm(total=len(cams), initial=start_index, desc="frames", unit="frame", dynamic_ncols=True)
            for i in range(start_index, len(cams)):
                t0 = time.perf_counter()
                step = warp_inpaint_step(
                    mesh, cams[i], depth=self.depth, inpainter=self.inpainter, prompt=prompt, seed=self._seed(i),
                    negative_prompt=cfg.negative_prompt, mask=cfg.mask, align=cfg.align, composite_cfg=cfg.composite,
                    mesh_cfg=cfg.mesh, prev_cam=cams[i - 1], prev_depth=prev.get("depth"), timings=timings, frame=i,
                    seeds=self._candidate_seeds(i), scorer=scorer)
                image, depth, mask = step.image, step.depth, step.mask
                if step.candidates is not None:
                    chosen.append({"frame": i, "chosen": step.chosen, "candidates": step.candidates})
                frames.append(image)
                depths.append(depth)
                masks.append(mask)
                prev = {"image": image, "depth": depth}
                frame_times.append(time.perf_counter() - t0)
                persist.submit(i, image, depth, mask, mesh, self._state(timings, frame_times, chosen),
                               self._extra(prev))
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
                             timings=timings, frame_times=frame_times, run_dir=run.path if run else None,
                             candidates=chosen)
        if run is not None:
            self._finish_run(run, result, prompt, time.perf_counter() - t_loop)
            run.close()  # the folder's lock
        return result

    # ------------------------------------------------------------------ internals
    def _resume_inputs(self, run: Any, init_image: Any, init_depth: Any, cameras: Any,
                       start_camera: Any) -> tuple[Any, Any, Any, Any]:
        img, dep = run.load_inputs()
        if init_image is not None and (img is None or not np.array_equal(to_numpy(init_image), img)):
            raise RunError(f"resume: init_image differs from the one run '{run.path}' started with")
        saved = run.load_cameras()
        if cameras is not None and saved is not None and list(cameras) != saved[:len(cameras)]:
            raise RunError(f"resume: the cameras differ from those of run '{run.path}'")
        cam_file = run.path / "inputs" / "camera.json"
        if start_camera is None and cam_file.is_file():
            start_camera = Camera.from_dict(read_json(cam_file))
        return img, dep, (saved if saved is not None else cameras), start_camera

    def _explicit_cameras(self) -> list[Camera] | None:
        """The cameras of a trajectory file that lists explicit cameras (None for presets/segments)."""
        name = self.config.trajectory.file
        if not name:
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

    def _first_frame(self, mode: str, prompt: str, cam: Camera, init_image: Any, init_depth: Any,
                     timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        h, w = cam.height, cam.width
        with timed(timings, "inpaint"):
            seed = self._seed(0)
            if mode == "image":
                image = init_image
            elif mode == "text_to_image":
                out = self.text_to_image.generate(prompt, w, h, seed, negative_prompt=cfg.negative_prompt or None)
                image = validate_image(out, "text_to_image output")
                if image.shape[:2] != (h, w):
                    raise ScenescapeError(f"text_to_image returned {image.shape[1]}x{image.shape[0]}, expected {w}x{h}")
            else:  # inpainter on an empty canvas with a full mask (SceneScape)
                canvas = np.zeros((h, w, 3), np.float32)
                image = call_inpainter(self.inpainter, canvas, np.ones((h, w), bool), cam, prompt, seed,
                                       cfg.negative_prompt)
        with timed(timings, "depth"):
            if init_depth is not None:
                depth = init_depth
            else:
                est = self.first_depth if self.first_depth is not None else self.depth
                depth = to_depth_space(call_depth(est, image, cam), cfg.align.prediction, "depth")
                depth = validate_depth(depth, image.shape[:2], where=f"depth from {type(est).__name__}")
        return image.astype(np.float32), depth.astype(np.float32)

    def _release_first_frame_models(self) -> None:
        """Let the text-to-image backend drop its weights: it makes frame 0 only.

        Backends with a ``release()`` method (the diffusers one) free their model here, and since they load
        on first use, a run resumed past frame 0 never loads it; the object itself stays (the run's manifest
        describes it, and a later :meth:`run` loads the weights again). Not when the same object serves as
        the inpainter or a depth backend too.
        """
        t2i = self.text_to_image
        release = getattr(t2i, "release", None)
        if callable(release) and all(t2i is not other for other in (self.inpainter, self.depth, self.first_depth)):
            release()

    def _state(self, timings: dict[str, float], frame_times: list[float],
               candidates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Loop state stored with a checkpoint (copies: the loop goes on while it is written)."""
        out: dict[str, Any] = {"timings": dict(timings), "frame_times": list(frame_times), "seed": self.config.seed}
        if candidates:
            out["candidates"] = [dict(c) for c in candidates]
        return out

    def _candidate_seeds(self, frame: int) -> list[int] | None:
        """Seeds of the inpainting candidates of ``frame`` (None: one, the frame's seed)."""
        from scenescape.pipelines.scene.candidates import CANDIDATE_STREAM

        k = int(getattr(self.config.inpainter, "candidates", 1))
        if k <= 1:
            return None
        return [seed_for_frame(self.config.seed, frame, 0)] + [
            seed_for_frame(self.config.seed, frame, CANDIDATE_STREAM + j) for j in range(1, k)]

    def _candidate_scorer(self, prompt: str) -> Any:
        """The :class:`~scenescape.pipelines.scene.candidates.CandidateScorer` (None with one candidate)."""
        icfg = self.config.inpainter
        if int(getattr(icfg, "candidates", 1)) <= 1:
            return None
        from scenescape.pipelines.scene.candidates import CandidateScorer

        clip = None
        if icfg.clip and icfg.clip_weight > 0:
            if not prompt.strip():
                raise InputError("inpainter.clip scores candidates against the prompt, but there is none; give a "
                                 "prompt or set inpainter.clip_weight=0")
            if getattr(self, "_clip", None) is None or self._clip.model_id != icfg.clip:
                from scenescape.backends.clip import ClipScorer

                self._clip = ClipScorer(icfg.clip, device=self.config.device)
            clip = self._clip
        return CandidateScorer(clip=clip, prompt=prompt, clip_weight=icfg.clip_weight, seam_weight=icfg.seam_weight)

    def _extra(self, prev: dict[str, Any]) -> dict[str, Any]:
        return {"depth": prev["depth"]} if self.config.mask.border_fix else {}

    def _finish_run(self, run: RunFolder, result: SceneResult, prompt: str, loop_s: float) -> None:
        backends = {
            "depth": describe_backend(self.depth, self.config.depth),
            "first_depth": describe_backend(self.first_depth, self.config.first_depth),
            "inpainter": describe_backend(self.inpainter, self.config.inpainter),
            "text_to_image": describe_backend(self.text_to_image, self.config.text_to_image),
        }
        finish_run(run, result, self.config, prompt, str(self.device), backends, loop_s)


__all__ = ["STAGES", "ScenePipeline", "SceneResult"]
