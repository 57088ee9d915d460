"""Evaluation, apart from production code: synthetic worlds with exact ground truth, oracle backends,
mesh metrics and the fidelity benchmark.

Importing this package registers the oracle backends (name ``"oracle"``) in the depth and inpainter
registries; the production registry does not name them.
"""

from __future__ import annotations

from scenescape.backends.base import DEPTH as _DEPTH  # noqa: E402
from scenescape.backends.base import INPAINTERS as _INPAINTERS  # noqa: E402
from scenescape.evaluation.worlds import (  # noqa: F401
    FIDELITY_BARS,
    FUSION_MASK_DEFAULTS,
    WORLDS,
    Box,
    OracleDepth,
    OracleInpainter,
    Pillar,
    SurfaceStyle,
    World,
    corridor,
    default_camera,
    evaluate_mesh,
    fuse_with_oracle,
    held_out_cameras,
    make_world,
    room,
    run_fidelity,
    seen_mask,
    suggest_trajectory,
)

# oracle backends are evaluation tools: registered here, never by the production registry
if "oracle" not in _DEPTH.names():
    _DEPTH.register("oracle")(OracleDepth)
    _INPAINTERS.register("oracle")(OracleInpainter)

__all__ = ['Box', 'FIDELITY_BARS', 'FUSION_MASK_DEFAULTS', 'OracleDepth', 'OracleInpainter', 'Pillar', 'SurfaceStyle', 'WORLDS', 'World', 'corridor', 'default_camera', 'evaluate_mesh', 'fuse_with_oracle', 'held_out_cameras', 'make_world', 'room', 'run_fidelity', 'seen_mask', 'suggest_trajectory']
