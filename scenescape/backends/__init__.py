"""Backends: depth estimation, inpainting, text-to-image and score guidance, registered by name.

Heavy dependencies (diffusers, transformers) are imported only when a backend that needs them is
built. The names registered here are the ones configs use.
"""

from scenescape.backends.base import (
    DEPTH,
    GUIDANCE,
    GUIDANCE_RULES,
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
    "DEPTH", "GUIDANCE", "GUIDANCE_RULES", "INPAINTERS", "TEXT_TO_IMAGE",
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
GUIDANCE.register_lazy("stable_diffusion", "scenescape.backends.guidance.stable_diffusion:StableDiffusionGuidance")
GUIDANCE.register_lazy("analytic", "scenescape.backends.guidance.analytic:AnalyticGuidance")
GUIDANCE_RULES.register_lazy("sds", "scenescape.backends.guidance.sds:SDS")
GUIDANCE_RULES.register_lazy("sjc", "scenescape.backends.guidance.sjc:SJC")
GUIDANCE_RULES.register_lazy("csd", "scenescape.backends.guidance.csd:CSD")
GUIDANCE_RULES.register_lazy("nfsd", "scenescape.backends.guidance.nfsd:NFSD")
GUIDANCE_RULES.register_lazy("vsd", "scenescape.backends.guidance.vsd:VSD")
