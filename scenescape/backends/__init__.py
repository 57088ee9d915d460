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

# Names configs use -> implementation, imported on first use only.
for _name, _target in {
    "completion": "scenescape.backends.depth.completion:DepthCompletion",
    "prior": "scenescape.backends.depth.prior:GeometricPriorDepth",
    "transformers": "scenescape.backends.depth.transformers:TransformersDepth",
}.items():
    DEPTH.register_lazy(_name, _target)
for _name, _target in {
    "opencv": "scenescape.backends.inpaint.opencv:OpenCVInpainter",
    "diffusers": "scenescape.backends.inpaint.diffusers:DiffusersInpainter",
}.items():
    INPAINTERS.register_lazy(_name, _target)
TEXT_TO_IMAGE.register_lazy("diffusers", "scenescape.backends.t2i.diffusers:DiffusersTextToImage")
for _name, _target in {
    "stable_diffusion": "scenescape.backends.guidance.core:StableDiffusionGuidance",
    "analytic": "scenescape.backends.guidance.core:AnalyticGuidance",
}.items():
    GUIDANCE.register_lazy(_name, _target)
