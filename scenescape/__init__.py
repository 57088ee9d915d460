"""scenescape: text or photo to an explorable 3D scene and walkthrough video; text to a 3D asset.

Public API::

    from scenescape import Camera, SceneMesh, render_mesh, ScenePipeline, SceneConfig
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Camera": "scenescape.geometry.camera",
    "SceneMesh": "scenescape.geometry.mesh",
    "render_mesh": "scenescape.geometry.raster",
    "RenderOutput": "scenescape.geometry.raster",
    "ScenePipeline": "scenescape.pipelines.scene",
    "SceneConfig": "scenescape.pipelines.scene",
    "SceneResult": "scenescape.pipelines.scene",
    "ObjectPipeline": "scenescape.pipelines.object",
    "ObjectConfig": "scenescape.pipelines.object",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scenescape' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
