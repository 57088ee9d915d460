"""Neural fields for object mode: hash-grid encoding, NeRF field and background, volume rendering.
"""

from __future__ import annotations

from scenescape.fields.hashgrid import (  # noqa: F401
    PRIMES,
    HashGridEncoding,
)
from scenescape.fields.nerf import (  # noqa: F401
    AnalyticField,
    Background,
    BackgroundConfig,
    FieldConfig,
    NeRFField,
    frequency_encode,
)
from scenescape.fields.volume import (  # noqa: F401
    RenderConfig,
    RenderOutput,
    Shading,
    camera_ray_bundle,
    orbit_camera,
    orbit_pose,
    render_cameras,
    render_rays,
    sample_pdf,
    sphere_bounds,
)

__all__ = ['AnalyticField', 'Background', 'BackgroundConfig', 'FieldConfig', 'HashGridEncoding', 'NeRFField', 'PRIMES', 'RenderConfig', 'RenderOutput', 'Shading', 'camera_ray_bundle', 'frequency_encode', 'orbit_camera', 'orbit_pose', 'render_cameras', 'render_rays', 'sample_pdf', 'sphere_bounds']
