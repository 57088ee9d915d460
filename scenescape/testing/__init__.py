"""Test helpers: tiny random-weight models saved as ordinary model folders.

See :mod:`scenescape.testing.tiny`. Nothing here is imported by the library itself.
"""

from scenescape.testing.tiny import make_tiny_clip, make_tiny_depth, make_tiny_sd

__all__ = ["make_tiny_clip", "make_tiny_depth", "make_tiny_sd"]
