"""Object mode: a NeRF optimised by score distillation (SDS, SJC), exported as a mesh and an orbit video.

Pure torch (CPU or CUDA, no compiled extension)::

    from scenescape import ObjectPipeline, ObjectConfig

    cfg = ObjectConfig.load("configs/object/sds-cpu-small.yaml", ["steps=200"])
    result = ObjectPipeline(cfg).run("a ceramic mug", "runs/mug")
"""

from scenescape.fields.hashgrid import HashGridEncoding
from scenescape.fields.nerf import AnalyticField, Background, BackgroundConfig, FieldConfig, NeRFField
from scenescape.fields.volume import RenderConfig, RenderOutput, orbit_camera, render_cameras
from scenescape.pipelines.object.export import auto_threshold, extract_mesh, orbit_video
from scenescape.pipelines.object.pipeline import (
    AnalyticTarget,
    ObjectConfig,
    ObjectPipeline,
    ObjectResult,
    eval_cameras,
    export_run,
    load_run,
    psnr,
    resume_run,
    sample_lights,
    silhouette_iou,
    view_name,
    view_prompt,
)

__all__ = [
    "AnalyticField", "AnalyticTarget", "Background", "BackgroundConfig", "FieldConfig", "HashGridEncoding",
    "NeRFField", "ObjectConfig", "ObjectPipeline", "ObjectResult", "RenderConfig", "RenderOutput", "auto_threshold",
    "eval_cameras", "export_run", "extract_mesh", "load_run", "orbit_camera", "orbit_video", "psnr",
    "render_cameras", "resume_run", "sample_lights", "silhouette_iou", "view_name", "view_prompt",
]
