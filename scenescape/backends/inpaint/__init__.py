"""Inpainting backends: ``opencv`` (classical, no weights), ``diffusers`` (Stable Diffusion inpainting).

One file per backend; register its name in ``scenescape/backends/__init__.py``."""

from scenescape.backends.inpaint.opencv import OpenCVInpainter

__all__ = ["OpenCVInpainter"]
