"""Typed configuration of scene mode (:class:`SceneConfig` and its sections); YAML presets in ``configs/``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from scenescape.backends.base import BackendConfig
from scenescape.config import ConfigError, from_dict, load_config, to_dict
from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.triangulate import TriangulationOptions
from scenescape.trajectories import TrajectoryConfig


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
    open_kernel: int = 0
    """``geometry.masks.disocclusion_mask(open_kernel=)``: an opening before dilation that drops specks from
    the mask altogether (they get neither inpainting nor geometry); unlike ``opening``. 0 = off."""
    close_kernel: int = 0
    """``disocclusion_mask(close_kernel=)``: a closing at the end that merges nearby holes. 0 = off."""
    fill: bool = False
    """``disocclusion_mask(fill=)``: also mask the holes the mask encloses."""

    def disocclusion_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`scenescape.geometry.masks.disocclusion_mask` without the edge ring."""
        return {"dilate": self.dilate, "open_kernel": self.open_kernel, "close_kernel": self.close_kernel,
                "fill": self.fill}

    def __post_init__(self) -> None:
        if min(self.dilate, self.opening, self.border_pad, self.edge_ring, self.open_kernel, self.close_kernel) < 0:
            raise ConfigError("mask.dilate, mask.opening, mask.border_pad, mask.edge_ring, mask.open_kernel and "
                              "mask.close_kernel must be >= 0")
        if not self.edge_threshold > 0:
            raise ConfigError(f"mask.edge_threshold must be > 0, got {self.edge_threshold}")
        if self.supersample < 1:
            raise ConfigError(f"mask.supersample must be >= 1, got {self.supersample}")


@dataclasses.dataclass
class AlignConfig:
    """How new depth is fitted to the known geometry."""

    mode: Literal["robust", "none"] = "robust"
    """``robust``: scale and shift fitted to the known pixels, then the seam correction; ``none``: the depth
    backend's output is used as it is (a metric, exact backend such as the evaluation oracle)."""
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
class MeshConfig:
    """Which triangles of a new patch are kept (:class:`scenescape.geometry.triangulate.TriangulationOptions`)."""

    max_rel_jump: float = 0.1
    """Drop a triangle whose depths span more than this relative jump (a depth edge)."""
    min_cos: float = 0.04
    """Drop a triangle seen at a grazing angle: ``|normal . ray| < min_cos``."""
    min_depth: float = 0.0
    """Depths at or below this are invalid."""

    def options(self) -> TriangulationOptions:
        try:
            return TriangulationOptions.from_kwargs(**dataclasses.asdict(self))
        except InputError as e:
            raise ConfigError(f"mesh: {e}") from e


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


def _default_trajectory() -> TrajectoryConfig:
    return TrajectoryConfig(name="scenescape")


@dataclasses.dataclass
class SceneConfig:
    """Everything a scene run needs; YAML presets in ``configs/`` follow this shape.

    ``trajectory`` is a :class:`scenescape.trajectories.TrajectoryConfig` (``{name, params, frames, file}``);
    a plain string is a preset name, or a trajectory file when written as a path (``.json``/``.yaml``
    suffix or a ``/``). ``depth``, ``inpainter`` and
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
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    align: AlignConfig = dataclasses.field(default_factory=AlignConfig)
    composite: CompositeConfig = dataclasses.field(default_factory=CompositeConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if isinstance(self.trajectory, (str, Path)):
            self.trajectory = TrajectoryConfig.parse(self.trajectory)
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


__all__ = ["AlignConfig", "CompositeConfig", "MaskConfig", "MeshConfig", "OutputConfig", "SceneConfig"]
