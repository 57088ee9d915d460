"""Inpainting candidates: ``inpainter.candidates: K`` inpaintings per frame, the best one kept.

Candidate ``k`` of frame ``i`` is inpainted with the seed ``seed_for_frame(seed, i, stream)`` where stream
0 is the frame's ordinary seed (so candidate 0 is what a run with ``candidates: 1`` makes) and stream
``CANDIDATE_STREAM + k`` the others: every candidate is fixed by the run seed, and a resumed run makes
and picks the same ones. Each candidate's composite frame is scored (:class:`CandidateScorer`)

    score = clip_weight * cos(CLIP(frame), CLIP(prompt)) - seam_weight * |log(seam ratio)|

* the CLIP term (SceneScape's paper picks among inpaintings by CLIP similarity to the prompt) needs
  ``inpainter.clip`` (a CLIP hub id or folder) and a prompt;
* the seam term is :func:`border_ratio` of the composite at the border of the inpainted region: the mean
  colour step across the border over the step expected from the texture on either side (1 = the new
  pixels continue the rendered ones; a visible seam is > 1, a blurred fill < 1).

The highest score wins (ties: the lower index). Scores and seeds of every candidate go to the manifest
(``candidates``) and to each checkpoint, so they survive a resume.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

CANDIDATE_STREAM = 1000


def dilate_np(m: np.ndarray, r: int) -> np.ndarray:
    """``(H, W)`` bool dilation by a ``(2r + 1)`` square (pixels outside the image count as False)."""
    import cv2

    if r <= 0:
        return np.asarray(m, bool).copy()
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    return cv2.dilate(np.asarray(m, np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def erode_np(m: np.ndarray, r: int) -> np.ndarray:
    """``(H, W)`` bool erosion (pixels outside the image count as True)."""
    return ~dilate_np(~np.asarray(m, bool), r)


def border_ratio(image: np.ndarray, mask: np.ndarray, keep: np.ndarray | None = None,
                 min_pairs: int = 20) -> tuple[float, int]:
    """``(ratio, pairs)``: mean colour difference (largest over RGB) of the 4-neighbour pixel pairs of
    ``image`` ``(H, W, 3)`` that straddle the border of ``mask`` ``(H, W)``, over the difference expected from
    pairs of the same orientation 3-6 px from the border (both pixels on one side), counting only pixels of
    ``keep`` (default: all but a 2-px frame). NaN if fewer than ``min_pairs`` pairs."""
    img = np.asarray(image, np.float32)
    m = np.asarray(mask, bool)
    if keep is None:
        keep = np.zeros(m.shape, bool)
        keep[2:-2, 2:-2] = True
    near = ((dilate_np(m, 6) & ~dilate_np(m, 2)) | (erode_np(m, 2) & ~erode_np(m, 6))) & keep
    total, expected, count = 0.0, 0.0, 0
    for sl_a, sl_b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
        d = np.abs(img[sl_a] - img[sl_b]).max(-1)
        across = d[(m[sl_a] != m[sl_b]) & keep[sl_a] & keep[sl_b]]
        base = d[near[sl_a] & near[sl_b] & (m[sl_a] == m[sl_b])]
        if across.size == 0:
            continue
        if base.size < min_pairs:
            return float("nan"), 0
        total += float(across.sum())
        expected += across.size * max(float(base.mean()), 1e-4)
        count += across.size
    if count < min_pairs:
        return float("nan"), count
    return total / expected, count


@dataclasses.dataclass
class CandidateScorer:
    """Scores a candidate frame (module docstring). ``clip``: a :class:`~scenescape.backends.clip.ClipScorer`
    (or None: the seam term only)."""

    clip: Any = None
    prompt: str = ""
    clip_weight: float = 1.0
    seam_weight: float = 1.0

    def __call__(self, image: np.ndarray, mask: np.ndarray, rendered_valid: np.ndarray) -> dict[str, float | None]:
        """``{"score", "clip", "seam"}`` of one composite ``image`` ``(H, W, 3)`` whose ``mask`` ``(H, W)`` was
        inpainted; the seam is measured only next to rendered pixels (``rendered_valid``)."""
        keep = np.zeros(mask.shape, bool)
        keep[2:-2, 2:-2] = True
        keep &= dilate_np(np.asarray(rendered_valid, bool) & ~mask, 1) | ~mask
        seam, _ = border_ratio(image, mask, keep)
        score = 0.0
        cos = None
        if self.clip is not None and self.clip_weight:
            cos = float(self.clip.image_embeddings([image])[0] @ self.clip.text_embedding(self.prompt))
            score += self.clip_weight * cos
        if math.isfinite(seam) and self.seam_weight:
            score -= self.seam_weight * abs(math.log(max(seam, 1e-6)))
        return {"score": score, "clip": cos, "seam": seam if math.isfinite(seam) else None}


__all__ = ["CANDIDATE_STREAM", "CandidateScorer", "border_ratio", "dilate_np", "erode_np"]
