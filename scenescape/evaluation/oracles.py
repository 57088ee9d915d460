"""Oracle backends: exact depth and colour from a synthetic world, for whatever camera they are asked about.

:class:`OracleDepth` returns the ground-truth z-depth and :class:`OracleInpainter` the ground-truth colour
inside the mask (keeping the given pixels outside). ``scenescape.evaluation`` registers them as
``"oracle"`` in the depth and inpainter registries when it is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from scenescape.errors import InputError
from scenescape.evaluation.worlds import World, make_world
from scenescape.geometry.camera import Camera
from scenescape.geometry.projection import as_tensor


def _check_image(image: Any, camera: Camera, what: str) -> torch.Tensor:
    img = as_tensor(image)
    if img.shape != (camera.height, camera.width, 3):
        raise InputError(f"{what} has shape {tuple(img.shape)}, but the camera is "
                         f"{camera.height}x{camera.width}; expected (H, W, 3)")
    return img


class OracleDepth:
    """Depth "estimator" that returns the world's exact z-depth ``(H, W)`` for the camera it is given."""

    @dataclasses.dataclass
    class Config:
        world: str = "room"
        seed: int = 0

    def __init__(self, cfg: OracleDepth.Config | None = None, world: World | None = None, **kwargs: Any):
        self.cfg = cfg if cfg is not None else OracleDepth.Config(**kwargs)
        self.world = world if world is not None else make_world(self.cfg.world, self.cfg.seed)

    def estimate(self, image: Any, camera: Camera, known_depth: Any = None, known_mask: Any = None) -> torch.Tensor:
        """Ground-truth z-depth ``(H, W)`` float32 (``image`` is only shape-checked)."""
        img = _check_image(image, camera, "image")
        _, depth = self.world.render(camera, device=img.device)
        return depth


class OracleInpainter:
    """Inpainter that returns the world's exact colour inside ``mask`` and keeps ``image`` outside."""

    @dataclasses.dataclass
    class Config:
        world: str = "room"
        seed: int = 0

    def __init__(self, cfg: OracleInpainter.Config | None = None, world: World | None = None, **kwargs: Any):
        self.cfg = cfg if cfg is not None else OracleInpainter.Config(**kwargs)
        self.world = world if world is not None else make_world(self.cfg.world, self.cfg.seed)

    def inpaint(self, image: Any, mask: Any, camera: Camera, prompt: str = "", seed: int | None = None,
                negative_prompt: str | None = None) -> torch.Tensor:
        """``(H, W, 3)`` float32: ground truth where ``mask`` ``(H, W)`` is True, ``image`` elsewhere."""
        img = _check_image(image, camera, "image")
        m = as_tensor(mask, dtype=torch.bool, device=img.device)
        if m.shape != (camera.height, camera.width):
            raise InputError(f"mask has shape {tuple(m.shape)}, expected (H, W) = {camera.shape}")
        gt, _ = self.world.render(camera, device=img.device)
        return torch.where(m[..., None], gt, img.float())


__all__ = ["OracleDepth", "OracleInpainter"]
