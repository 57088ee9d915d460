"""Object mode: optimise a NeRF by score distillation (SDS or SJC) from a text prompt.

``ObjectPipeline(config).run(prompt, out_dir)`` trains, checkpoints, and exports a mesh and an
orbit video. Everything random (cameras, ray jitter, shading, lights, backgrounds, diffusion
timesteps and noise) is drawn from one ``torch.Generator`` seeded by ``config.seed``; its state is
in the checkpoint, so an interrupted run resumed with ``resume=True`` reproduces the uninterrupted
run step for step (on the same device).

Run folder::

    .scenescape-run.json  marker (run id, mode, version, command); .scenescape-run.lock (see runs.py)
    config.yaml        resolved config (with the seed)
    inputs/            prompt.json, index.json (written last at creation)
    checkpoint.pt      weights, optimiser, generator state, step, losses (torch.load(..., weights_only=True));
                       ``guidance``: the rule's own state (VSD's LoRA and its optimiser)
    reference.png, reference_mask.png, textual_inversion/   image to object (``image.path`` set)
    validation/        step_XXXXXX.png (a strip of fixed validation views)
    mesh.glb/.obj/.ply marching-cubes mesh with vertex colours
    video.mp4          orbit video: RGB | normals (or depth)
    mesh_checkpoint.pt, refined.glb/.obj/.ply, validation/mesh_step_XXXXXX.png
                       Magic3D stage 2 (``mesh.steps > 0``, see :mod:`.mesh_stage`)
    manifest.json      prompt, seed, steps, versions, timings, files, not_written (written last)

The folder is made by :class:`scenescape.pipelines.runs.RunFolder`, as in scene mode (marker, lock,
``--overwrite`` only of a marked folder, ``--resume RUN``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from scenescape.backends.base import GUIDANCE, BackendConfig
from scenescape.backends.guidance.base import SJC_LATENT_ENERGY, latent_energy
from scenescape.config import ConfigError, from_dict, load_config, to_dict
from scenescape.errors import InputError, RunError
from scenescape.fields.nerf import AnalyticField, Background, BackgroundConfig, FieldConfig, NeRFField
from scenescape.fields.volume import RenderConfig, RenderOutput, orbit_camera, render_cameras
from scenescape.geometry.camera import Camera
from scenescape.io import atomic_path, read_json, save_image, slugify, write_json
from scenescape.pipelines.object.image import ImageConfig

CHECKPOINT = "checkpoint.pt"
FORMAT = "scenescape-object-v1"


def _check_range(name: str, rng: tuple[float, float]) -> None:
    if rng[0] > rng[1]:
        raise InputError(f"{name} range must be [min, max] with min <= max, got {list(rng)}")


@dataclass
class CameraConfig:
    """Training camera distribution (uniform in each range) and the evaluation orbit."""

    radius: tuple[float, float] = (1.6, 2.0)
    elevation: tuple[float, float] = (-10.0, 60.0)
    """Degrees above the horizon (world up is -y)."""
    azimuth: tuple[float, float] = (-180.0, 180.0)
    """Degrees; 0 = front (+z)."""
    fov: tuple[float, float] = (40.0, 60.0)
    """Field of view in degrees."""
    eval_radius: float = 1.8
    eval_elevation: float = 15.0
    eval_fov: float = 50.0

    def __post_init__(self) -> None:
        if min(self.radius) <= 0 or self.eval_radius <= 0:
            raise InputError(f"camera.radius must be > 0, got {list(self.radius)} (eval_radius {self.eval_radius})")
        for fov in (*self.fov, self.eval_fov):
            if not 0 < fov < 180:
                raise InputError(f"camera.fov must be in (0, 180) degrees, got {fov}")
        for e in (*self.elevation, self.eval_elevation):
            if not -90 <= e <= 90:
                raise InputError(f"camera.elevation must be in [-90, 90] degrees, got {e}")
        _check_range("camera.radius", self.radius)
        _check_range("camera.elevation", self.elevation)
        _check_range("camera.azimuth", self.azimuth)
        _check_range("camera.fov", self.fov)


@dataclass
class PromptConfig:
    """View-dependent prompts: ``"<prompt>, <view> view"`` by azimuth and elevation (DreamFusion)."""

    view_dependent: bool = True
    front_azimuth: float = 45.0
    """|azimuth| below this is the front."""
    back_azimuth: float = 135.0
    """|azimuth| above this is the back."""
    overhead_elevation: float = 60.0
    template: str = "{prompt}, {view} view"

    def __post_init__(self) -> None:
        if not 0 <= self.front_azimuth <= self.back_azimuth <= 180:
            raise InputError("prompt: need 0 <= front_azimuth <= back_azimuth <= 180")
        if "{prompt}" not in self.template or "{view}" not in self.template:
            raise InputError("prompt.template must contain {prompt} and {view}")


@dataclass
class ShadingConfig:
    """Albedo only for the first ``albedo_steps``, then a random shading per step."""

    albedo_steps: int = 2000
    probs: tuple[float, float, float] = (0.2, 0.4, 0.4)
    """Probabilities of (albedo, lambertian, textureless) after ``albedo_steps``."""
    ambient: float = 0.1
    light_distance: tuple[float, float] = (0.8, 1.5)
    """Light position = ``normalize(camera centre + light_jitter N(0, I)) * U(light_distance)`` (threestudio's
    DreamFusion strategy): about 30 degrees off the camera at the default orbit, so shading shows shape."""
    light_jitter: float = 1.0

    def __post_init__(self) -> None:
        if any(p < 0 for p in self.probs) or sum(self.probs) <= 0:
            raise InputError(f"shading.probs must be >= 0 with a positive sum, got {list(self.probs)}")
        if not 0 <= self.ambient <= 1:
            raise InputError(f"shading.ambient must be in [0, 1], got {self.ambient}")
        _check_range("shading.light_distance", self.light_distance)
        if min(self.light_distance) <= 0 or self.light_jitter < 0:
            raise InputError(f"shading.light_distance must be > 0 and light_jitter >= 0, got "
                             f"{list(self.light_distance)}, {self.light_jitter}")


@dataclass
class OptimConfig:
    lr: float = 1e-2
    """Adam learning rate of the field (geometry and albedo)."""
    lr_background: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    warmup_steps: int = 0
    final_lr_factor: float = 0.1
    """lr at the last step / lr (cosine and exponential schedules)."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.lr_background < 0:
            raise InputError(f"optim.lr must be > 0 and lr_background >= 0, got {self.lr}, {self.lr_background}")
        if not 0 < self.final_lr_factor <= 1:
            raise InputError(f"optim.final_lr_factor must be in (0, 1], got {self.final_lr_factor}")

    def factor(self, step: int, total: int) -> float:
        """Learning-rate multiplier at ``step`` (a pure function: resume needs no scheduler state)."""
        f = 1.0
        if self.warmup_steps > 0 and step < self.warmup_steps:
            f = (step + 1) / self.warmup_steps
        p = min(step / max(total - 1, 1), 1.0)
        if self.schedule == "cosine":
            f *= self.final_lr_factor + (1 - self.final_lr_factor) * 0.5 * (1 + math.cos(math.pi * p))
        elif self.schedule == "exponential":
            f *= self.final_lr_factor ** p
        return f


@dataclass
class LossConfig:
    """Regularisers. The orientation weight ramps linearly ``orientation_start -> orientation_end``
    over ``orientation_ramp_steps`` from step 0 (both 0 disables it; normals are then computed only for
    shaded steps); sparsity = mean opacity; entropy = binary entropy of the opacity (pushes pixels to
    empty or solid); emptiness = SJC's emptiness loss,
    ``emptiness * (E / 4) * sum(log(1 + emptiness_scale w)) / emptiness_samples`` with the sum over every
    sample weight ``w`` of every ray of a render (averaged over the batch), multiplied by
    ``emptiness_multiplier`` from ``emptiness_step`` (a fraction of the run) on; ``E`` is the score
    model's ``latent_energy``.

    Scale (so that ``emptiness: 1e4`` means what it means in SJC, ``run_sjc.py``): SJC takes
    ``1e4 * mean(log(1 + 10 w))`` over the samples of its one 64x64 render -- 4,096 rays x about 277
    samples (step 0.01 through its [-1, 1]^3 box, cameras at radius 1.5; padded samples count) -- next to
    a score gradient ``(D - y) / sigma`` *summed* over the rendered latent image. A mean shrinks each
    ray's pull as the render grows, so 1e4 with our own mean over 24x24 renders x 64 samples pulled each
    ray ~31x harder than in SJC. Here the sum over our rays is divided by SJC's sample count
    (``emptiness_samples``), so each ray and sample is pulled as in SJC at any render size (one ray per
    latent pixel, as in SJC and our 64x64 SD presets). And the score's pull on a ray's opacity,
    ``sum_c (D_c - y_c) (colour_c - bg_c) / sigma``, is a product of two latent differences, so the
    weight is scaled by the score model's per-pixel latent energy ``E`` (sum of channel variances)
    relative to SJC's space, SD's 4 unit-variance latent channels (``SJC_LATENT_ENERGY``): the analytic
    model's [-1, 1] RGB pixels have ``E = 1``, so it gets a quarter of SJC's weight."""

    orientation_start: float = 10.0
    orientation_end: float = 1000.0
    orientation_ramp_steps: int = 5000
    sparsity: float = 0.0
    entropy: float = 0.0
    emptiness: float = 0.0
    emptiness_scale: float = 10.0
    emptiness_step: float = 0.5
    emptiness_multiplier: float = 20.0
    emptiness_samples: float = 4096.0 * 277  # a float, as the config file reads it back
    """SJC's normaliser: the number of sample weights its mean runs over (64x64 rays x ~277 samples)."""

    def __post_init__(self) -> None:
        for name in ("orientation_start", "orientation_end", "sparsity", "entropy", "emptiness", "emptiness_scale",
                     "emptiness_multiplier"):
            if getattr(self, name) < 0:
                raise InputError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.emptiness_samples <= 0:
            raise InputError(f"loss.emptiness_samples must be > 0, got {self.emptiness_samples}")
        if not 0 <= self.emptiness_step <= 1:
            raise InputError(f"loss.emptiness_step is a fraction of the run in [0, 1], got {self.emptiness_step}")

    def orientation(self, step: int) -> float:
        p = min(step / self.orientation_ramp_steps, 1.0) if self.orientation_ramp_steps > 0 else 1.0
        return self.orientation_start + p * (self.orientation_end - self.orientation_start)

    def emptiness_weight(self, step: int, total: int) -> float:
        if self.emptiness <= 0:
            return 0.0
        return self.emptiness * (self.emptiness_multiplier if step >= self.emptiness_step * total else 1.0)


@dataclass
class OutputConfig:
    val_every: int = 500
    """Save validation renders every N steps (0 = never)."""
    val_views: int = 4
    checkpoint_every: int = 500
    """Write checkpoint.pt every N steps (and always at the end)."""
    export: bool = True
    video_frames: int = 60
    video_size: int = 128
    video_fps: float = 20.0
    video_extra: Literal["normals", "depth"] = "normals"
    mesh_resolution: int = 128
    mesh_threshold: float | None = None
    """Density iso-level for marching cubes (None = automatic)."""
    mesh_min_component: float = 0.05
    """Drop connected components with fewer faces than this fraction of the largest."""
    mesh_formats: list[str] = field(default_factory=lambda: ["glb", "obj", "ply"])

    def __post_init__(self) -> None:
        if self.val_every < 0 or self.checkpoint_every < 0:
            raise InputError("output.val_every and output.checkpoint_every must be >= 0")
        if self.video_frames < 1 or self.video_size < 8:
            raise InputError("output.video_frames must be >= 1 and output.video_size >= 8")
        if self.mesh_resolution < 8:
            raise InputError(f"output.mesh_resolution must be >= 8, got {self.mesh_resolution}")
        bad = [f for f in self.mesh_formats if f not in ("glb", "obj", "ply")]
        if bad:
            raise InputError(f"output.mesh_formats: unknown format(s) {bad}; use glb, obj, ply")


@dataclass
class MeshStageConfig:
    """Magic3D's second stage (``steps > 0`` enables it): a DMTet mesh extracted from the stage-1 NeRF is
    refined with SDS on renders of ``resolution`` pixels by the differentiable rasteriser
    (:mod:`scenescape.pipelines.object.mesh_stage`)."""

    steps: int = 0
    """Stage-2 steps after the ``steps`` of stage 1 (0 = NeRF only)."""
    tet_resolution: int = 128
    """Cells per axis of the tetrahedral grid (6 tetrahedra per cell)."""
    resolution: int = 512
    max_deform: float = 0.45
    """Vertex deformation limit in cells."""
    threshold: float | None = None
    """Stage-1 density iso-level of the initial surface. None: the level whose mesh silhouettes match the
    stage-1 NeRF's (opacity > 0.5) on ``init_views`` views, or with ``init_views: 0`` output.mesh_threshold
    or Otsu's split (a density iso-level sits inside the NeRF's rendered silhouette, so those start small)."""
    init_views: int = 8
    """Views (two rings around the evaluation orbit) for the silhouette-matched iso-level; 0 = off."""
    init_size: int = 64
    """Render size (pixels) of those views."""
    lr_sdf: float = 1e-3
    """Adam step of the SDF, a signed distance in world units (1e-3: about 0.3 px per step at 512x512)."""
    lr_deform: float = 1e-2
    lr_color: float = 1e-3
    normal_consistency: float = 10000.0
    """Weight of mean(1 - cos) between the normals of faces sharing an edge (threestudio's refine stage)."""
    albedo_steps: int = 0
    """Albedo-only stage-2 steps before random shading (``shading.probs``)."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise InputError(f"mesh.steps must be >= 0, got {self.steps}")
        if self.init_views < 0 or self.init_size < 8:
            raise InputError(f"mesh.init_views must be >= 0 and mesh.init_size >= 8 pixels, got "
                             f"{self.init_views} and {self.init_size}")
        if self.tet_resolution < 4:
            raise InputError(f"mesh.tet_resolution must be >= 4, got {self.tet_resolution}")
        if self.resolution < 8:
            raise InputError(f"mesh.resolution must be >= 8 pixels, got {self.resolution}")
        if not 0 <= self.max_deform < 0.5:
            raise InputError(f"mesh.max_deform must be in [0, 0.5) cells (tetrahedra must not invert), got "
                             f"{self.max_deform}")
        if min(self.lr_sdf, self.lr_deform, self.lr_color) < 0 or self.normal_consistency < 0:
            raise InputError("mesh learning rates and mesh.normal_consistency must be >= 0")


@dataclass
class GuidanceConfig(BackendConfig):
    """The score model: ``name`` (``stable_diffusion``, ``analytic`` or ``package.module:Class``) and
    its ``options`` (validated against the backend's ``Config``, e.g. ``mode`` -- the rule: ``sds``, ``sjc``,
    ``csd``, ``nfsd``, ``vsd`` -- ``guidance_scale``, ``guidance_scale_end``, ``model``)."""

    name: str = "stable_diffusion"


@dataclass
class ObjectConfig:
    """Everything an object run needs; YAML presets live in ``configs/object/``."""

    seed: int = 0
    steps: int = 10000
    batch_size: int = 1
    resolution: int = 64
    """Training render size (square, pixels)."""
    device: str = "auto"
    progress: bool = True
    analytic_shape: Literal["pair", "snowman"] = "pair"
    """The known object of ``guidance.name=analytic`` (see :class:`AnalyticField`)."""
    analytic_softness: float = 0.015
    """Its density ``analytic_peak * sigmoid(-sdf / analytic_softness)``: the default is a soft surface with
    a ~0.04-unit halo; ``0.004`` with peak ``300`` is a hard surface (the Magic3D stage-2 check)."""
    analytic_peak: float = 60.0
    analytic_detail: float = 0.0
    """Amplitude of a fine 3D texture on its albedo (period ``analytic_detail_period``; 0 = smooth albedo)."""
    analytic_detail_period: float = 0.1
    nerf: FieldConfig = field(default_factory=FieldConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    """Image-to-object (RealFusion): the photo, its mask, the reference camera and losses, textual
    inversion. ``image.path`` empty = text mode."""
    mesh: MeshStageConfig = field(default_factory=MeshStageConfig)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.analytic_softness <= 0 or self.analytic_peak <= 0:
            raise InputError(f"analytic_softness and analytic_peak must be > 0, got {self.analytic_softness} and "
                             f"{self.analytic_peak}")
        if self.resolution < 8:
            raise InputError(f"resolution must be >= 8 pixels, got {self.resolution}")
        if min(self.camera.radius) <= self.render.radius * 0.5:
            raise InputError(f"camera.radius {list(self.camera.radius)} puts the camera deep inside the scene "
                             f"sphere (render.radius {self.render.radius}); use a radius > {self.render.radius}")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> ObjectConfig:
        return load_config(cls, path, overrides)


def view_name(azimuth: float, elevation: float, cfg: PromptConfig) -> str:
    """``front``/``side``/``back``/``overhead`` for a camera (degrees)."""
    if elevation > cfg.overhead_elevation:
        return "overhead"
    a = abs((azimuth + 180.0) % 360.0 - 180.0)
    if a < cfg.front_azimuth:
        return "front"
    if a > cfg.back_azimuth:
        return "back"
    return "side"


def view_prompt(prompt: str, azimuth: float, elevation: float, cfg: PromptConfig) -> str:
    if not cfg.view_dependent:
        return prompt
    return cfg.template.format(prompt=prompt, view=view_name(azimuth, elevation, cfg))


@dataclass
class CameraSample:
    cameras: list[Camera]
    azimuth: list[float]
    elevation: list[float]
    radius: list[float]


def _uniform(rng: tuple[float, float], n: int, g: torch.Generator) -> list[float]:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return (rng[0] + (rng[1] - rng[0]) * u).tolist()


def sample_cameras(cfg: ObjectConfig, g: torch.Generator, n: int | None = None) -> CameraSample:
    """``n`` random training cameras (radius, elevation, azimuth, fov uniform in the configured ranges)."""
    n = n or cfg.batch_size
    r = _uniform(cfg.camera.radius, n, g)
    el = _uniform(cfg.camera.elevation, n, g)
    az = _uniform(cfg.camera.azimuth, n, g)
    fov = _uniform(cfg.camera.fov, n, g)
    cams = [orbit_camera(r[i], el[i], az[i], fov[i], cfg.resolution) for i in range(n)]
    return CameraSample(cams, az, el, r)


def sample_lights(cfg: ShadingConfig, centers: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Light positions ``(B, 3)`` for camera centres ``(B, 3)``: ``normalize(c + jitter N(0, I)) * U(distance)``."""
    b = centers.shape[0]
    dist = torch.tensor(_uniform(cfg.light_distance, b, g), dtype=torch.float32)[:, None]
    ldir = centers.float() + cfg.light_jitter * torch.randn(b, 3, generator=g)
    return torch.nn.functional.normalize(ldir, dim=-1) * dist


def silhouette_iou(a: torch.Tensor, b: torch.Tensor, level: float = 0.5) -> float:
    """IoU of the silhouettes ``opacity > level`` of two opacity maps (any equal shapes)."""
    ma, mb = a > level, b > level
    union = (ma | mb).sum().item()
    return 1.0 if union == 0 else (ma & mb).sum().item() / union


def eval_cameras(cfg: ObjectConfig, n: int, size: int | None = None, offset: float = 0.0,
                 elevation: float | None = None) -> list[Camera]:
    """``n`` cameras evenly around the evaluation orbit (azimuth ``offset + 360 k / n``)."""
    el = cfg.camera.eval_elevation if elevation is None else elevation
    return [orbit_camera(cfg.camera.eval_radius, el, offset + 360.0 * k / n - 180.0, cfg.camera.eval_fov,
                         size or cfg.resolution) for k in range(n)]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


class AnalyticTarget:
    """Renders the known :class:`AnalyticField` for the cameras of a training step (deterministic,
    with the step's shading, lights and background) -- the target of :class:`AnalyticGuidance`."""

    def __init__(self, render_cfg: RenderConfig, device: Any = "cpu", samples: int = 128, shape: str = "pair",
                 softness: float = 0.015, peak: float = 60.0, detail: float = 0.0, detail_period: float = 0.1):
        self.field = AnalyticField(peak=peak, softness=softness, shape=shape, detail=detail,  # type: ignore[arg-type]
                                   detail_period=detail_period).to(device)
        self.background = Background(BackgroundConfig(kind="solid"))
        self.cfg = dataclasses.replace(render_cfg, num_samples=samples, num_importance=samples // 2)

    @torch.no_grad()
    def render(self, cameras: list[Camera], shading: str = "albedo", lights: Any = None, ambient: float = 0.1,
               background: Any = None) -> torch.Tensor:
        out = render_cameras(self.field, self.background, cameras, self.cfg, shading=shading,  # type: ignore[arg-type]
                             lights=lights, ambient=ambient, bg_colors=background, perturb=False)
        return out.rgb

    def __call__(self, step_info: dict[str, Any]) -> torch.Tensor:
        bg = step_info.get("background")
        if bg is None:
            bg = torch.ones(len(step_info["cameras"]), 3)
        return self.render(step_info["cameras"], step_info.get("shading", "albedo"), step_info.get("lights"),
                           step_info.get("ambient", 0.1), bg)


@dataclass
class ObjectResult:
    out_dir: Path
    checkpoint: Path
    steps: int
    losses: list[float]
    files: dict[str, str]
    field: NeRFField
    background: Background
    seconds: float
    not_written: dict[str, str] = field(default_factory=dict)
    """Documented outputs that were not written (``"mesh"``, ``"video"``) -> why, and how to get them."""
    mesh_stage: Any = None
    """The :class:`~scenescape.pipelines.object.mesh_stage.MeshStage` when stage 2 ran."""


def _canonical(obj: Any) -> Any:
    """A copy whose strings are interned: pickle shares equal strings by identity, so without this the same
    state (one built by a run, one loaded from a checkpoint) pickles to different bytes."""
    import sys

    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def _atomic_torch_save(obj: Any, path: Path) -> None:
    # through a file object: torch names the archive's records after a path's file name, and the temporary
    # name is random -- the same state must give the same bytes
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(_canonical(obj), fh)


def load_checkpoint(path: str | os.PathLike, max_steps: int | None = None) -> dict[str, Any]:
    """Load ``checkpoint.pt`` safely (``weights_only=True``) and check its fields; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise RunError(f"checkpoint '{p}' does not exist")
    fix = "start again with --overwrite or another --out"
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunError(f"checkpoint '{p}' cannot be read ({type(e).__name__}: {first[:200]}); it is corrupt: {fix}") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise RunError(f"checkpoint '{p}' is not a scenescape object checkpoint")
    step, losses = ck.get("step"), ck.get("losses")
    problem = None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        problem = f"'step' must be an integer >= 0, got {step!r}"
    elif max_steps is not None and step > max_steps:
        problem = f"it is at step {step}, past the configured steps={max_steps}"
    elif not isinstance(losses, list) or len(losses) != step or not all(
            isinstance(x, float) and math.isfinite(x) for x in losses):
        problem = f"'losses' must list {step} finite numbers"
    elif not all(isinstance(ck.get(k), dict) for k in ("field", "background", "optimizer", "config")):
        problem = "field, background, optimizer or config is missing"
    elif not isinstance(ck.get("generator"), torch.Tensor) or ck["generator"].dtype != torch.uint8:
        problem = "the random generator state is missing"
    if problem:
        raise RunError(f"checkpoint '{p}' is invalid: {problem}; {fix}")
    return ck


class ObjectPipeline:
    """Text (or any score model) -> NeRF -> mesh + orbit video.

    Args:
        config: :class:`ObjectConfig` (defaults if None).
        guidance: an object with ``step(images, prompts, step_info) -> loss`` to use instead of the
            configured backend (tests inject score models this way).
    """

    def __init__(self, config: ObjectConfig | None = None, guidance: Any = None):
        self.config = config or ObjectConfig()
        self._guidance = guidance
        self.extra_losses: list[Callable[[int, NeRFField, Background, torch.Generator],
                                         tuple[torch.Tensor, dict[str, float]]]] = []
        """Extra terms added to each step's loss: ``(step, field, background, generator) -> (loss, stats)``
        (image-to-object adds the reconstruction loss at the reference view)."""
        from scenescape.backends.models import pick_device

        self.device = pick_device(self.config.device)

    # ------------------------------------------------------------------ building blocks
    def build_models(self) -> tuple[NeRFField, Background]:
        torch.manual_seed(self.config.seed)  # parameter initialisation
        fld = NeRFField(self.config.nerf).to(self.device)
        fld.set_progress(0)
        bg = Background(self.config.background).to(self.device)
        return fld, bg

    def build_guidance(self) -> Any:
        if self._guidance is not None:
            return self._guidance
        gcfg = self.config.guidance
        extra: dict[str, Any] = {}
        if getattr(GUIDANCE.get(gcfg.name), "wants_known_target", False):
            # a guidance scored against a known object (the analytic checks; any class may declare it)
            extra["target"] = AnalyticTarget(self.config.render, self.device, shape=self.config.analytic_shape,
                                             softness=self.config.analytic_softness, peak=self.config.analytic_peak,
                                             detail=self.config.analytic_detail,
                                             detail_period=self.config.analytic_detail_period)
        self._guidance = gcfg.build(GUIDANCE, **extra)
        return self._guidance

    def _optimizer(self, fld: NeRFField, bg: Background) -> torch.optim.Optimizer:
        o = self.config.optim
        groups = [{"params": list(fld.parameters()), "lr": o.lr, "base_lr": o.lr}]
        bgp = list(bg.parameters())
        if bgp:
            groups.append({"params": bgp, "lr": o.lr_background, "base_lr": o.lr_background})
        return torch.optim.Adam(groups, betas=o.betas, eps=o.eps)

    # ------------------------------------------------------------------ training
    def run(self, prompt: str, out_dir: str | os.PathLike | None = None, *, resume: bool = False,
            overwrite: bool = False, stop_after: int | None = None, export: bool | None = None,
            callback: Callable[[int, dict[str, float]], None] | None = None,
            command: list[str] | None = None) -> ObjectResult:
        """Optimise the NeRF for ``prompt``; write checkpoints, validation renders and (optionally) exports.

        Args:
            out_dir: run folder (default ``runs/object-<slug of prompt>``), made with the same machinery as
                scene mode (:class:`~scenescape.pipelines.runs.RunFolder`): an existing folder needs
                ``resume=True`` (continue it) or ``overwrite=True`` (replace it; only a scenescape run folder).
            resume: continue from ``out_dir/checkpoint.pt`` (same config and prompt; ``steps`` and ``output``
                may change). A folder killed before its first checkpoint restarts from step 0.
            stop_after: stop (with a checkpoint) after this many total steps -- simulates an interruption.
            export: write mesh and video at the end (default ``config.output.export``).
            command: the command line, recorded in the run marker.
        """
        from scenescape.pipelines.runs import RunFolder
        from scenescape.registry import check_plugins

        cfg = self.config
        if cfg.image.path:  # image to object: the prompt holds the learned token
            from scenescape.pipelines.object.image import image_prompt

            prompt = image_prompt(prompt, cfg.image)
        prompt = check_prompt(prompt)
        if resume and overwrite:
            raise InputError("choose either resume or overwrite, not both")
        out = Path(out_dir) if out_dir is not None else Path("runs") / f"object-{slugify(prompt, default='object')}"
        check_plugins(cfg)
        # ---- everything is validated and loaded before anything is written --------------------------
        fld, bg = self.build_models()
        opt = self._optimizer(fld, bg)
        g = torch.Generator().manual_seed(cfg.seed)
        start, losses = 0, []
        run = RunFolder.open_existing(out, mode="object") if resume else None
        try:
            ck = None
            if run is not None:
                saved_prompt = _saved_prompt(run.path)
                if saved_prompt != prompt:
                    raise RunError(f"cannot resume: the run in '{out}' was for prompt {saved_prompt!r}, not {prompt!r}")
                ck_path = out / CHECKPOINT
                if ck_path.exists():
                    ck = load_checkpoint(ck_path, max_steps=cfg.steps)
                    self._check_resume(ck, prompt)
                    fld.load_state_dict(ck["field"])
                    bg.load_state_dict(ck["background"])
                    opt.load_state_dict(ck["optimizer"])
                    g.set_state(ck["generator"])
                    start, losses = int(ck["step"]), list(ck["losses"])
            guidance = self.build_guidance()  # bad guidance options fail before anything is written
            if ck is not None and start and "guidance" in ck and hasattr(guidance, "load_state_dict"):
                guidance.load_state_dict(ck["guidance"])  # e.g. VSD's LoRA and its optimiser
            if cfg.image.path:
                from scenescape.pipelines.object.image import reference_view

                reference_view(cfg.image, cfg.render)  # a bad photo, mask or camera fails before anything is written
            if run is None:
                run = RunFolder.begin(out, mode="object", config=cfg, inputs={"prompt.json": {"prompt": prompt}},
                                      overwrite=overwrite, command=command)
            else:
                run.complete_creation()
                if to_dict(cfg) != _read_config(run.path):
                    from scenescape.config import save_yaml

                    save_yaml(cfg, run.config_path)  # e.g. more steps: the folder describes the run it holds
            if cfg.image.path and not any(getattr(f, "is_reference_loss", False) for f in self.extra_losses):
                from scenescape.pipelines.object.image import setup_image_run

                self.extra_losses.append(setup_image_run(cfg, out, guidance, self.device, cfg.progress))
            return self._train(prompt, run, fld, bg, opt, g, guidance, start, losses, stop_after, export, callback,
                               resume)
        finally:
            if run is not None:
                run.close()

    def _train(self, prompt: str, run: Any, fld: NeRFField, bg: Background, opt: torch.optim.Optimizer,
               g: torch.Generator, guidance: Any, start: int, losses: list[float], stop_after: int | None,
               export: bool | None, callback: Any, resume: bool = False) -> ObjectResult:
        from scenescape.pipelines.runs import package_versions

        cfg = self.config
        out = run.path
        ck_path = out / CHECKPOINT
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        t0 = time.time()
        timings = {"train": 0.0, "validation": 0.0, "checkpoint": 0.0, "export": 0.0}
        bar = None
        if cfg.progress and end > start:
            from tqdm import tqdm

            bar = tqdm(total=end - start, desc="object", unit="step", dynamic_ncols=True)
        fld.train()
        bg.train()
        for step in range(start, end):
            t = time.perf_counter()
            stats = self.train_step(step, prompt, fld, bg, opt, guidance, g)
            losses.append(stats["loss"])
            timings["train"] += time.perf_counter() - t
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4g}")
            if callback is not None:
                callback(step, stats)
            done = step + 1
            t = time.perf_counter()
            if cfg.output.val_every and done % cfg.output.val_every == 0:
                self.save_validation(fld, bg, out / "validation" / f"step_{done:06d}.png")
            t2 = time.perf_counter()
            timings["validation"] += t2 - t
            if cfg.output.checkpoint_every and done % cfg.output.checkpoint_every == 0 and done != end:
                self._save(ck_path, done, prompt, fld, bg, opt, g, losses)
            timings["checkpoint"] += time.perf_counter() - t2
        if bar is not None:
            bar.close()
        t = time.perf_counter()
        if end > start or not ck_path.exists():
            self._save(ck_path, end, prompt, fld, bg, opt, g, losses)
        timings["checkpoint"] += time.perf_counter() - t
        files: dict[str, str] = {"checkpoint": str(ck_path), "config": str(run.config_path)}
        do_export = cfg.output.export if export is None else export
        not_written: dict[str, str] = {}
        if do_export and end == cfg.steps and (end > start or not (out / "video.mp4").exists()):
            from scenescape.pipelines.object.export import export_run_outputs

            t = time.perf_counter()
            files.update(export_run_outputs(fld, bg, cfg, out, not_written))
            timings["export"] = time.perf_counter() - t
        elif not (do_export and end == cfg.steps):
            why = (f"the run stopped at step {end} of {cfg.steps}; continue it with --resume"
                   if end < cfg.steps else "output.export is false")
            for name in ("mesh", "video"):
                not_written[name] = f"{why} (write them now with `scenescape object --export {out}`)"
        mesh_stage = None
        if cfg.mesh.steps > 0 and end == cfg.steps and (stop_after is None or stop_after > cfg.steps):
            # Magic3D stage 2: a DMTet mesh from the stage-1 field, refined at mesh.resolution
            from scenescape.pipelines.object.mesh_stage import run_mesh_stage

            t = time.perf_counter()
            mesh_stage, end, losses2, files2 = run_mesh_stage(self, prompt, out, fld, bg, guidance, resume,
                                                              stop_after, do_export, callback)
            timings["mesh_stage"] = time.perf_counter() - t
            losses = losses + losses2
            files.update(files2)
        seconds = time.time() - t0
        total = cfg.steps + cfg.mesh.steps
        if end == total:
            run.write_manifest({
                "scenescape": "object", "prompt": prompt, "seed": cfg.seed, "steps": end, "target_steps": total,
                "resumed_from_step": start, "device": str(self.device),
                "guidance": cfg.guidance.name, "mode": cfg.guidance.options.get("mode", "sds"),
                "final_loss": losses[-1] if losses else None, "versions": package_versions(),
                "timings_s": {k: round(v, 4) for k, v in timings.items()}, "seconds": round(seconds, 3),
                "seconds_per_step": round(timings["train"] / max(end - start, 1), 5),
                "files": {k: Path(v).name for k, v in files.items()}, "not_written": not_written,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
        return ObjectResult(out, ck_path, end, losses, files, fld, bg, seconds, not_written, mesh_stage)

    def train_step(self, step: int, prompt: str, fld: NeRFField, bg: Background, opt: torch.optim.Optimizer,
                   guidance: Any, g: torch.Generator) -> dict[str, float]:
        """One optimisation step; every random draw comes from ``g`` in a fixed order."""
        cfg = self.config
        fld.set_progress(step)
        f = cfg.optim.factor(step, cfg.steps)
        for grp in opt.param_groups:
            grp["lr"] = grp["base_lr"] * f
        sample = sample_cameras(cfg, g)
        b = len(sample.cameras)
        prompts = [view_prompt(prompt, a, e, cfg.prompt) for a, e in zip(sample.azimuth, sample.elevation)]
        if step < cfg.shading.albedo_steps:
            shading = "albedo"
            _ = torch.rand(1, generator=g)
        else:
            shading = pick_shading(cfg.shading.probs, torch.rand(1, generator=g, dtype=torch.float64).item())
        lights = sample_lights(cfg.shading, torch.stack([c.center for c in sample.cameras]), g)
        bg_colors = sample_backgrounds(cfg.background, b, g)
        # The orientation penalty ramps from step 0 (threestudio); normals are computed only at samples with
        # significant weight (render.normal_weight_threshold).
        w_orient = cfg.loss.orientation(step)
        need_normals = w_orient > 0
        w_empty = cfg.loss.emptiness_weight(step, cfg.steps)
        r = render_cameras(fld, bg, sample.cameras, cfg.render, shading=shading, lights=lights,  # type: ignore[arg-type]
                           ambient=cfg.shading.ambient, bg_colors=bg_colors, generator=g, perturb=True,
                           need_normals=need_normals, device=self.device,
                           emptiness_scale=cfg.loss.emptiness_scale if w_empty > 0 else None)
        info = {"step": step, "max_steps": cfg.steps, "generator": g, "cameras": sample.cameras,
                "azimuth": sample.azimuth, "elevation": sample.elevation, "shading": shading, "lights": lights,
                "ambient": cfg.shading.ambient, "background": bg_colors}
        loss_g = guidance.step(r.rgb, prompts, info)
        loss = loss_g
        extra_stats: dict[str, float] = {}
        for fn in self.extra_losses:
            l_x, s_x = fn(step, fld, bg, g)
            loss = loss + l_x
            extra_stats.update(s_x)
        if need_normals:
            loss = loss + w_orient * r.orientation
        if cfg.loss.sparsity > 0:
            loss = loss + cfg.loss.sparsity * r.opacity.mean()
        if cfg.loss.entropy > 0:
            o = r.opacity.clamp(1e-5, 1 - 1e-5)
            loss = loss + cfg.loss.entropy * (-(o * o.log() + (1 - o) * (1 - o).log())).mean()
        if w_empty > 0 and r.emptiness is not None:
            w_empty *= latent_energy(guidance) / SJC_LATENT_ENERGY
            loss = loss + w_empty * r.emptiness / cfg.loss.emptiness_samples
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach()), "guidance": float(loss_g.detach()),
                "opacity": float(r.opacity.detach().mean()), "orientation_weight": w_orient if need_normals else 0.0,
                "orientation": float(r.orientation.detach()), "emptiness_weight": w_empty,
                "grid_levels": float(cfg.nerf.grid_levels(step)), **extra_stats,
                **getattr(guidance, "last_stats", {})}

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def render_views(self, fld: NeRFField, bg: Background, cameras: list[Camera]) -> RenderOutput:
        """Deterministic albedo renders (evaluation background: the configured colour or the MLP)."""
        was = fld.training
        fld.eval()
        try:
            bgc = None
            if self.config.background.kind != "mlp":
                bgc = torch.tensor(self.config.background.color).expand(len(cameras), 3)
            return render_cameras(fld, bg, cameras, self.config.render, shading="albedo", bg_colors=bgc,
                                  perturb=False, device=self.device)
        finally:
            fld.train(was)

    def save_validation(self, fld: NeRFField, bg: Background, path: Path) -> None:
        n = max(self.config.output.val_views, 1)
        r = self.render_views(fld, bg, eval_cameras(self.config, n))
        save_image(path, torch.cat(list(r.rgb.cpu()), dim=1))

    def _save(self, path: Path, step: int, prompt: str, fld: NeRFField, bg: Background,
              opt: torch.optim.Optimizer, g: torch.Generator, losses: list[float]) -> None:
        state = getattr(self._guidance, "state_dict", None)
        extra = {"guidance": state()} if callable(state) else {}
        _atomic_torch_save({
            **extra, "format": FORMAT, "step": step, "prompt": prompt, "config": to_dict(self.config),
            "field": {k: v.detach().cpu() for k, v in fld.state_dict().items()},
            "background": {k: v.detach().cpu() for k, v in bg.state_dict().items()},
            "optimizer": opt.state_dict(), "generator": g.get_state(), "losses": [float(x) for x in losses],
        }, path)

    def _check_resume(self, ck: dict[str, Any], prompt: str) -> None:
        if ck.get("prompt") != prompt:
            raise RunError(f"cannot resume: the run was for prompt {ck.get('prompt')!r}, not {prompt!r}")
        saved = dict(ck["config"])
        now = to_dict(self.config)
        ignore = {"steps", "progress", "output", "mesh"}  # stage 2 checks its own settings
        diff = sorted(k for k in set(saved) | set(now) if k not in ignore and saved.get(k) != now.get(k))
        if diff:
            raise RunError(f"cannot resume: the config differs from the saved run in {diff}; "
                           "resume with the run's config.yaml (only steps and output may change)")


RESUME_KEYS = ("steps", "progress", "output.")
"""Config keys ``scenescape object --resume RUN`` may change (everything else is the run's)."""


def pick_shading(probs: Any, u: float) -> str:
    """``"albedo" | "lambertian" | "textureless"`` for a uniform draw ``u`` in [0, 1) and the weights ``probs``."""
    p = torch.tensor(probs, dtype=torch.float64)
    x = torch.tensor([u * p.sum().item()], dtype=torch.float64)
    return ("albedo", "lambertian", "textureless")[int(torch.searchsorted(torch.cumsum(p, 0), x).clamp(max=2))]


def sample_backgrounds(bg: Any, b: int, g: torch.Generator) -> torch.Tensor | None:
    """``(b, 3)`` background colours of a training step (``random_solid``: drawn from ``g``; ``solid``: the
    configured colour), or None for the MLP background."""
    if bg.kind == "random_solid":
        return torch.rand(b, 3, generator=g)
    if bg.kind == "solid":
        return torch.tensor(bg.color, dtype=torch.float32).expand(b, 3)
    return None


def check_prompt(prompt: Any) -> str:
    """A usable prompt (stripped) or an :class:`InputError` saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt must be a non-empty text, e.g. \"a ceramic mug\"")
    if "\x00" in prompt:
        raise InputError("prompt contains a NUL character; remove it")
    return prompt.strip()


def _saved_prompt(run_dir: Path) -> str:
    f = run_dir / "inputs" / "prompt.json"
    try:
        prompt = read_json(f)["prompt"]
        assert isinstance(prompt, str)
    except Exception as e:
        raise RunError(f"cannot resume: '{f}' is missing or corrupt ({type(e).__name__})") from e
    return prompt


def _read_config(run_dir: Path) -> dict[str, Any]:
    from scenescape.config import load_yaml

    return load_yaml(run_dir / "config.yaml")


def resume_run(run_dir: str | os.PathLike, overrides: list[str] | None = None, **run_kwargs: Any) -> ObjectResult:
    """Continue the object run in ``run_dir`` from its saved config, prompt and checkpoint
    (``scenescape object --resume RUN``). ``overrides`` may set only ``steps``, ``progress`` and ``output.*``."""
    from scenescape.config import merge_dicts, overrides_to_dict
    from scenescape.pipelines.runs import RunFolder

    items = list(overrides or [])
    bad = [o for o in items if not o.split("=", 1)[0].strip().startswith(RESUME_KEYS)]
    if bad:
        raise ConfigError(f"--resume continues with the run's saved config; only steps, progress and output.* may "
                          f"be changed, got {bad}")
    run = RunFolder.open_existing(run_dir, mode="object")  # marker, lock, creation complete
    try:
        try:
            data = merge_dicts(_read_config(run.path), overrides_to_dict(items))
            cfg = from_dict(ObjectConfig, data)
        except ConfigError as e:
            raise RunError(f"cannot resume: the run's config '{run.config_path}' is invalid: {e}") from e
        prompt = _saved_prompt(run.path)
        return ObjectPipeline(cfg).run(prompt, run.path, resume=True, **run_kwargs)
    finally:
        run.close()


def load_run(run_dir: str | os.PathLike) -> tuple[ObjectPipeline, NeRFField, Background, dict[str, Any]]:
    """Rebuild the pipeline, field and background of a run folder from its checkpoint."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputError(f"run folder '{run}' does not exist")
    ck = load_checkpoint(run / CHECKPOINT)
    try:
        cfg = from_dict(ObjectConfig, ck["config"])
    except ConfigError as e:
        raise RunError(f"checkpoint '{run / CHECKPOINT}' has an incompatible config: {e}") from e
    pipe = ObjectPipeline(dataclasses.replace(cfg, device="cpu" if not torch.cuda.is_available() else cfg.device))
    fld, bg = pipe.build_models()
    try:
        fld.load_state_dict(ck["field"])
        bg.load_state_dict(ck["background"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"checkpoint '{run / CHECKPOINT}' does not fit its config ({type(e).__name__}: "
                       f"{str(e).splitlines()[0]})") from e
    fld.set_progress(int(ck["step"]))
    fld.eval()
    return pipe, fld, bg, ck


def export_run(run_dir: str | os.PathLike, overrides: list[str] | None = None,
               not_written: dict[str, str] | None = None) -> dict[str, str]:
    """Re-export mesh and video of a run folder from its checkpoint (``scenescape object --export``).

    ``overrides`` are ``output.*`` keys (e.g. ``output.mesh_threshold=15``). With ``not_written`` (a
    dict), a mesh that cannot be extracted is reported there instead of raising (the video is still written).
    """
    from scenescape.config import apply_overrides
    from scenescape.pipelines.object.export import export_run_outputs
    from scenescape.pipelines.runs import RunFolder

    bad = [o for o in (overrides or []) if not o.split("=", 1)[0].strip().startswith("output.")]
    if bad:
        raise ConfigError(f"--export accepts only output.* overrides, got {bad}")
    pipe, fld, bg, ck = load_run(run_dir)
    cfg = pipe.config
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    run = RunFolder.open_existing(run_dir, mode="object")  # the lock: no export while a run works there
    try:
        files = export_run_outputs(fld, bg, cfg, run.path, not_written)
        manifest = run.path / "manifest.json"
        if manifest.exists():
            data = read_json(manifest)
            data.setdefault("files", {}).update({k: Path(v).name for k, v in files.items()})
            data["not_written"] = dict(not_written or {})
            write_json(manifest, data)
    finally:
        run.close()
    return files
