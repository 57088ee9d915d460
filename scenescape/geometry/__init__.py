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
    from scenescape.geometry.masks import (  # noqa: F401
        close_mask,
        depth_edges,
        dilate_mask,
        disocclusion_mask,
        erode_mask,
        fill_holes,
        open_mask,
        sliver_mask,
    )
    from scenescape.geometry.mesh import ExtendStats, SceneMesh  # noqa: F401
    from scenescape.geometry.raster import RenderOutput, rasterize, render_mesh  # noqa: F401
    from scenescape.geometry.triangulate import TriangulationOptions  # noqa: F401

    __all__ += [
        "SceneMesh", "ExtendStats", "RenderOutput", "render_mesh", "rasterize", "TriangulationOptions",
        "disocclusion_mask", "dilate_mask", "erode_mask", "open_mask", "close_mask", "sliver_mask",
        "fill_holes", "depth_edges",
    ]
except ModuleNotFoundError as _e:  # only while those modules do not exist yet
    if not (_e.name or "").startswith("scenescape.geometry"):
        raise
