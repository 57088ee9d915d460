"""Evaluation, apart from production code: synthetic worlds with exact ground truth, oracle backends,
mesh metrics and the fidelity benchmark.

* ``worlds``: procedural rooms with analytic RGB-D at any camera (:func:`make_world`, ``room``, ``corridor``);
* ``oracles``: :class:`OracleDepth` and :class:`OracleInpainter` (exact answers for a world);
* ``metrics``: :func:`evaluate_mesh` at held-out cameras (coverage, PSNR, depth abs-rel, floating geometry);
* ``fidelity``: :func:`fuse_with_oracle` (scene mode's own step with the oracles) and :func:`run_fidelity`.

Importing this package registers the oracle backends (name ``"oracle"``) in the depth and inpainter
registries; the production registry does not name them.
"""

from __future__ import annotations

from scenescape.backends.base import DEPTH, INPAINTERS
from scenescape.evaluation.fidelity import FIDELITY_BARS, FUSION_MASK_DEFAULTS, fuse_with_oracle, run_fidelity
from scenescape.evaluation.metrics import evaluate_mesh, held_out_cameras, seen_mask, summary_stats
from scenescape.evaluation.oracles import OracleDepth, OracleInpainter
from scenescape.evaluation.worlds import (
    WORLDS,
    Box,
    Pillar,
    SurfaceStyle,
    World,
    corridor,
    default_camera,
    make_world,
    room,
    suggest_trajectory,
)

# oracle backends are evaluation tools: registered here, never by the production registry
if "oracle" not in DEPTH.names():
    DEPTH.register("oracle")(OracleDepth)
    INPAINTERS.register("oracle")(OracleInpainter)

__all__ = [
    "FIDELITY_BARS", "FUSION_MASK_DEFAULTS", "WORLDS", "Box", "OracleDepth", "OracleInpainter", "Pillar",
    "SurfaceStyle", "World", "corridor", "default_camera", "evaluate_mesh", "fuse_with_oracle", "held_out_cameras",
    "make_world", "room", "run_fidelity", "seen_mask", "suggest_trajectory", "summary_stats",
]
