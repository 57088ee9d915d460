"""Backend protocols: the small interfaces the pipelines call.

Array conventions: images are float32 ``(H, W, 3)`` in ``[0, 1]``; masks are bool ``(H, W)``;
depth is float32 ``(H, W)`` z-depth. Inputs may be numpy arrays or torch tensors; implementations
return either (the pipelines convert with ``scenescape.geometry.as_tensor``).

Implementations are registered by name in the registries below and built from configs with
:func:`build_backend`. A class may define a nested dataclass ``Config``; the config section for
the backend (a mapping) is then validated against it (unknown keys are errors) and passed as the
single constructor argument. A user class named as ``"package.module:Class"`` is imported only
when a config names it.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Protocol, runtime_checkable

from scenescape.config import ConfigError, from_dict
from scenescape.geometry.camera import Camera
from scenescape.registry import Registry

DEPTH = Registry("depth")
INPAINTERS = Registry("inpainter")
TEXT_TO_IMAGE = Registry("text_to_image")
GUIDANCE = Registry("guidance")
GUIDANCE_RULES = Registry("guidance rule")  # score-distillation rules, chosen by guidance.options.mode


@runtime_checkable
class DepthEstimator(Protocol):
    def estimate(self, image: Any, camera: Camera, known_depth: Any = None, known_mask: Any = None) -> Any:
        """Z-depth ``(H, W)`` (> 0 everywhere) for ``image`` ``(H, W, 3)`` seen by ``camera``.

        ``known_depth`` ``(H, W)`` and ``known_mask`` ``(H, W)`` bool, when given, are the depth the
        existing geometry renders and where it is valid; an estimator may use them (completion) or
        ignore them (the pipeline aligns monocular depth to them afterwards).
        """
        ...


@runtime_checkable
class Inpainter(Protocol):
    def inpaint(self, image: Any, mask: Any, camera: Camera, prompt: str, seed: int | None = None,
                negative_prompt: str | None = None) -> Any:
        """Fill the pixels where ``mask`` ``(H, W)`` is True; return ``(H, W, 3)`` in [0, 1].

        ``seed``: this call's noise seed (deterministic backends ignore it); ``negative_prompt``: None for the
        backend's own default.
        """
        ...


@runtime_checkable
class TextToImage(Protocol):
    def generate(self, prompt: str, width: int, height: int, seed: int, negative_prompt: str | None = None) -> Any:
        """A ``(height, width, 3)`` image in [0, 1] for ``prompt``, deterministic for a given seed."""
        ...

    # Optional: ``release() -> None`` drops the backend's weights (a later ``generate`` may load them again).
    # The scene pipeline calls it once the first frame is made, so a text-to-image model is held for frame
    # 0 only; a backend without it keeps what it holds.


@dataclasses.dataclass
class BackendConfig:
    """A config section that picks a backend: ``{name: opencv, options: {method: telea}}``.

    ``name`` is a registered name or ``"package.module:Class"``; ``options`` are validated against
    that class's ``Config`` dataclass when it is built (unknown keys are errors then).
    """

    name: str = ""
    options: dict = dataclasses.field(default_factory=dict)

    def build(self, registry: Registry, device: Any = None, **extra: Any) -> Any:
        """Build the named backend (see :func:`build_backend`)."""
        if not self.name:
            raise ConfigError(f"no {registry.kind} backend is configured (set {registry.kind}.name)")
        return build_backend(registry, self.name, self.options, device=device, **extra)


def build_backend(registry: Registry, name: str, options: dict[str, Any] | None = None, device: Any = None,
                  **extra: Any) -> Any:
    """Instantiate the backend ``name`` from ``registry`` with its config section ``options``: the one way
    every backend is built.

    A class with a nested dataclass ``Config`` gets it, validated (unknown keys are errors), as its single
    positional argument; any other class gets the options as keyword arguments. ``device`` (the pipeline's,
    or None for each backend's own ``auto``) is passed only to constructors that take a ``device`` argument.
    ``extra`` keyword arguments (runtime objects) are passed to the constructor.
    """
    cls = registry.get(name)
    options = dict(options or {})
    if device is not None and "device" in _parameters(cls):
        extra["device"] = device
    cfg_cls = getattr(cls, "Config", None)
    if cfg_cls is not None and dataclasses.is_dataclass(cfg_cls):
        cfg = from_dict(cfg_cls, options, where=f"{registry.kind}[{name}]")
        return cls(cfg, **extra)
    try:
        return cls(**options, **extra)
    except TypeError as e:
        raise ConfigError(f"{registry.kind} backend '{name}' rejected its options {sorted(options)}: {e}") from e


def _parameters(cls: Any) -> set[str]:
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return set()


def seed_for_frame(seed: int, frame: int, stream: int = 0) -> int:
    """Deterministic per-frame seed derived from the run seed (stable across resume)."""
    import hashlib

    h = hashlib.sha256(f"{seed}:{frame}:{stream}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF
