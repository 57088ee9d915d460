"""Measures of a finished run, WorldScore-style, needing no ground truth (``scenescape evaluate``).

* :mod:`~.consistency`: 3D consistency (frames reprojected into their neighbours with their depth and
  cameras, occlusion-aware) and photometric consistency (forward-backward optical flow, and flow
  against the flow the cameras and depth predict);
* :mod:`~.cameras`: camera control (poses recovered from the frames alone vs ``cameras.json``);
* :mod:`~.style`: colour and texture (Gram) drift along the path, seam visibility at inpainting borders;
* :mod:`~.clip_score`: CLIP score of every frame against the prompt, and its drift (needs a CLIP model);
* :mod:`~.report`: per-frame plots (matplotlib, the ``eval`` extra) and one self-contained HTML page.

``evaluate_run(path_or_data, clip=None)`` runs all that apply; ``load_run(path)`` reads a run folder.
"""

from scenescape.evaluation.measures.evaluate import MEASURES, evaluate_run, headline
from scenescape.evaluation.measures.rundata import RunData, load_run

__all__ = ["MEASURES", "RunData", "evaluate_run", "headline", "load_run"]
