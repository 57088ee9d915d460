"""Depth backends: ``completion`` and ``prior`` (classical, no weights), ``transformers`` (DPT, Depth Anything).

One file per backend; register its name in ``scenescape/backends/__init__.py``."""

from scenescape.backends.depth.completion import DepthCompletion
from scenescape.backends.depth.prior import GeometricPriorDepth

__all__ = ["DepthCompletion", "GeometricPriorDepth"]
