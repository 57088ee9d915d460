"""Score models and distillation rules for object mode (registered by name in ``GUIDANCE``).
"""

from __future__ import annotations

from scenescape.backends.guidance.core import (  # noqa: F401
    AnalyticGuidance,
    AnalyticScoreModel,
    Guidance,
    ScoreDistillationConfig,
    ScoreDistillationGuidance,
    ScoreModel,
    StableDiffusionGuidance,
    StableDiffusionScoreModel,
    inject_gradient,
    scaled_linear_alphas_cumprod,
    sds_gradient,
    sjc_gradient,
    sjc_sigma_ladder,
)

__all__ = ['AnalyticGuidance', 'AnalyticScoreModel', 'Guidance', 'ScoreDistillationConfig', 'ScoreDistillationGuidance', 'ScoreModel', 'StableDiffusionGuidance', 'StableDiffusionScoreModel', 'inject_gradient', 'scaled_linear_alphas_cumprod', 'sds_gradient', 'sjc_gradient', 'sjc_sigma_ladder']
