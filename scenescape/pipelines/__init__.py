"""Pipelines: scene mode (the SceneScape warp-inpaint loop) and its run folder.

``from scenescape.pipelines import ScenePipeline, SceneConfig, SceneResult``
"""

from scenescape.pipelines.scene import (
    AlignConfig,
    CompositeConfig,
    MaskConfig,
    OutputConfig,
    SceneConfig,
    ScenePipeline,
    SceneResult,
)

__all__ = ["AlignConfig", "CompositeConfig", "MaskConfig", "OutputConfig", "SceneConfig", "ScenePipeline", "SceneResult"]
