"""Backends: depth estimation, inpainting, text-to-image and score guidance, registered by name.

Heavy dependencies (diffusers, transformers) are imported only when a backend that needs them is
built. The names registered here are the ones configs use.
"""

from scenescape.backends.base import (
    DEPTH,
    GUIDANCE,
    INPAINTERS,
    TEXT_TO_IMAGE,
    BackendConfig,
    DepthEstimator,
    Inpainter,
    TextToImage,
    build_backend,
    seed_for_frame,
)

__all__ = [
    "DEPTH", "GUIDANCE", "INPAINTERS", "TEXT_TO_IMAGE",
    "BackendConfig", "DepthEstimator", "Inpainter", "TextToImage", "build_backend", "seed_for_frame",
]
