"""Scene mode: the SceneScape warp-inpaint loop.

* ``config``: :class:`SceneConfig` and its sections (typed; YAML presets in ``configs/``);
* ``step``: :func:`warp_inpaint_step`, the one per-frame algorithm (render, mask, inpaint, depth, align, extend);
* ``pipeline``: :class:`ScenePipeline` (first frame, the loop over the trajectory, resume);
* ``persist``: frames, checkpoints, final outputs and the manifest in the run folder;
* ``inputs``: validation of the start image and depth.
"""

from scenescape.pipelines.scene.config import (
    AlignConfig,
    CompositeConfig,
    MaskConfig,
    MeshConfig,
    OutputConfig,
    SceneConfig,
)
from scenescape.pipelines.scene.pipeline import STAGES, ScenePipeline, SceneResult
from scenescape.pipelines.scene.step import StepResult, composite, warp_inpaint_step

__all__ = [
    "STAGES", "AlignConfig", "CompositeConfig", "MaskConfig", "MeshConfig", "OutputConfig", "SceneConfig",
    "ScenePipeline", "SceneResult", "StepResult", "composite", "warp_inpaint_step",
]
