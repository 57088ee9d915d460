"""Text-to-image backends: ``diffusers``.

One file per backend; register its name in ``scenescape/backends/__init__.py``."""
