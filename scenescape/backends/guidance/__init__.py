"""Score models and distillation rules for object mode.

Score models are registered by name in ``GUIDANCE`` (``stable_diffusion``, ``analytic``), rules in
``GUIDANCE_RULES`` (``sds``, ``sjc``, ``csd``, ``nfsd``, ``vsd``; picked by the option ``mode``).
One file each; :mod:`.base` holds the shared machinery and the guidance-scale schedule.
"""

from __future__ import annotations

from scenescape.backends.guidance.analytic import (
    AnalyticGuidance,
    AnalyticScoreModel,
    GaussianMixtureScoreModel,
)
from scenescape.backends.guidance.base import (
    Guidance,
    Rule,
    ScoreDistillationConfig,
    ScoreDistillationGuidance,
    ScoreModel,
    inject_gradient,
    scaled_linear_alphas_cumprod,
)
from scenescape.backends.guidance.sds import sds_gradient
from scenescape.backends.guidance.sjc import sjc_gradient, sjc_sigma_ladder
from scenescape.backends.guidance.stable_diffusion import StableDiffusionGuidance, StableDiffusionScoreModel

__all__ = [
    "AnalyticGuidance", "AnalyticScoreModel", "GaussianMixtureScoreModel", "Guidance", "Rule",
    "ScoreDistillationConfig", "ScoreDistillationGuidance", "ScoreModel", "StableDiffusionGuidance",
    "StableDiffusionScoreModel", "inject_gradient", "scaled_linear_alphas_cumprod", "sds_gradient", "sjc_gradient",
    "sjc_sigma_ladder",
]
