"""Geometry layer: pure tensor functions on CPU or CUDA (cameras, unprojection, triangulation,
rasterisation, masks). Imports nothing from the layers above (backends, pipelines, cli)."""

from scenescape.geometry.camera import Camera, cameras_from_json, cameras_to_json
from scenescape.geometry.projection import (
    as_tensor,
    camera_rays,
    pixel_grid,
    project,
    transform_points,
    unproject,
    world_to_camera_points,
)

__all__ = [
    "Camera", "cameras_from_json", "cameras_to_json",
    "as_tensor", "camera_rays", "pixel_grid", "project", "transform_points", "unproject",
    "world_to_camera_points",
]

# Modules written alongside (mesh, rasteriser, masks) extend __all__ here.
try:  # pragma: no cover - import wiring
    from scenescape.geometry.mesh import SceneMesh  # noqa: F401
    from scenescape.geometry.raster import RenderOutput, render_mesh  # noqa: F401

    __all__ += ["SceneMesh", "RenderOutput", "render_mesh"]
except ModuleNotFoundError as _e:  # only while those modules do not exist yet
    if not (_e.name or "").startswith("scenescape.geometry"):
        raise
