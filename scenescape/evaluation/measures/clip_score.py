"""CLIP similarity of frames to the prompt, and its drift along the path.

:class:`~scenescape.backends.clip.ClipScorer` loads any transformers CLIP (hub id or folder) through the
project's model resolution. The CLIP score of an image is ``100 * cos(image embedding, text embedding)``
(the convention of text-to-image papers; CLIPScore's ``2.5 * max(cos, 0)`` is a rescaling of it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scenescape.backends.clip import ClipScorer


def clip_measures(frames: np.ndarray, scorer: ClipScorer, prompt: str) -> dict[str, Any]:
    """Per-frame CLIP score against ``prompt`` (if any) and image drift ``1 - cos(frame i, frame 0)``.

    ``summary``: ``clip_score`` (mean), ``clip_score_first``/``_last``, ``clip_score_slope`` (least-squares
    change per frame: negative = the frames lose the prompt along the path), ``clip_image_drift`` (mean)
    and ``clip_image_drift_final``.
    """
    emb = scorer.image_embeddings(list(frames))
    drift = (1.0 - emb @ emb[0]).astype(np.float64)
    per: dict[str, list[float]] = {"clip_image_drift": [float(x) for x in drift]}
    summary: dict[str, Any] = {"model": scorer.model_id, "clip_image_drift": float(drift[1:].mean()) if len(drift) > 1 else 0.0,
                               "clip_image_drift_final": float(drift[-1])}
    if prompt.strip():
        s = 100.0 * emb @ scorer.text_embedding(prompt)
        per["clip_score"] = [float(x) for x in s]
        x = np.arange(len(s), dtype=np.float64)
        slope = float(np.polyfit(x, s, 1)[0]) if len(s) > 1 else 0.0
        summary.update({"clip_score": float(s.mean()), "clip_score_first": float(s[0]), "clip_score_last": float(s[-1]),
                        "clip_score_slope": slope, "prompt": prompt})
    return {"per_frame": per, "summary": summary}


__all__ = ["ClipScorer", "clip_measures"]
