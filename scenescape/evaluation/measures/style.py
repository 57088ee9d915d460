"""Style and colour drift along the path, and seam visibility at the inpainting borders (no weights).

Colour statistics (:func:`colour_stats`): mean and standard deviation of CIE L*a*b* per frame. The colour
drift of frame ``i`` is the Euclidean distance of its six statistics from frame 0's (L*a*b* units;
about 2.3 is a just-noticeable difference of the means), and the colour step the distance from frame
``i - 1``'s.

Texture statistics (:func:`gram_stats`): Gram matrices (second moments, Gatys-style) of a fixed filter
bank -- L*, a*, b*, the two first and the three second derivatives of L* -- at three scales (1, 1/2,
1/4). The style drift of frame ``i`` is ``||G_i - G_0||_F / ||G_0||_F`` averaged over the scales (0 = the
same texture statistics), the style step the same against frame ``i - 1``.

Seam visibility (:func:`seam_visibility`): the mean colour difference (largest over RGB) of neighbouring
pixels across an inpainting mask's border (one inside, one outside), divided by the mean difference of
neighbouring pixels in the same orientation 3-6 px from the border on either side. 1.0 means the border is as smooth as its
surroundings; a visible seam is > 1 (below 1: the border is smoother than its surroundings, as with a
blurry classical fill). Pixels within 6 px of a depth discontinuity of the frame's own depth (real object
edges) and on the image border are left out. A colour step ``delta`` across the border can only raise
the ratio (``E max_c |d_c + delta|`` is convex in ``delta`` and symmetric for symmetric texture).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.pipelines.scene.candidates import border_ratio, dilate_np


def _lab(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(np.clip(image, 0, 1), np.float32), cv2.COLOR_RGB2LAB)


def colour_stats(image: np.ndarray) -> np.ndarray:
    """``(6,)``: mean and standard deviation of L*, a*, b* of an ``(H, W, 3)`` sRGB image in [0, 1]."""
    lab = _lab(image).reshape(-1, 3).astype(np.float64)
    return np.concatenate([lab.mean(0), lab.std(0)])


def _features(lab: np.ndarray) -> np.ndarray:
    import cv2

    lum = lab[..., 0] / 100.0
    a = lab[..., 1] / 100.0
    b = lab[..., 2] / 100.0
    lx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    ly = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    lxx = cv2.Sobel(lum, cv2.CV_32F, 2, 0, ksize=3) / 4.0
    lyy = cv2.Sobel(lum, cv2.CV_32F, 0, 2, ksize=3) / 4.0
    lxy = cv2.Sobel(lum, cv2.CV_32F, 1, 1, ksize=3) / 4.0
    f = np.stack([lum, a, b, lx * 10, ly * 10, lxx * 10, lyy * 10, lxy * 10], -1)
    return f[1:-1, 1:-1].reshape(-1, f.shape[-1]).astype(np.float64)


def gram_stats(image: np.ndarray, scales: int = 3) -> list[np.ndarray]:
    """Gram matrices ``(8, 8)`` of the filter bank (module docstring), one per scale (1, 1/2, 1/4)."""
    import cv2

    lab = _lab(image)
    out = []
    for s in range(scales):
        if s:
            lab = cv2.resize(lab, (max(lab.shape[1] // 2, 4), max(lab.shape[0] // 2, 4)), interpolation=cv2.INTER_AREA)
        f = _features(lab)
        out.append(f.T @ f / max(f.shape[0], 1))
    return out


def _gram_distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-12) for x, y in zip(a, b)]))


def style_drift(frames: np.ndarray) -> dict[str, Any]:
    """Colour and style drift along a run's ``(N, H, W, 3)`` frames (module docstring).

    Returns ``per_frame``: ``colour_drift`` and ``style_drift`` (against frame 0), ``colour_step`` and
    ``style_step`` (against the previous frame; NaN for frame 0); ``summary``: the means, and the final
    frame's drifts.
    """
    n = frames.shape[0]
    cs = [colour_stats(f) for f in frames]
    gs = [gram_stats(f) for f in frames]
    per = {
        "colour_drift": [float(np.linalg.norm(cs[i] - cs[0])) for i in range(n)],
        "style_drift": [_gram_distance(gs[i], gs[0]) for i in range(n)],
        "colour_step": [float("nan")] + [float(np.linalg.norm(cs[i] - cs[i - 1])) for i in range(1, n)],
        "style_step": [float("nan")] + [_gram_distance(gs[i], gs[i - 1]) for i in range(1, n)],
    }
    summary = {k: float(np.nanmean(v)) if n > 1 else 0.0 for k, v in per.items()}
    summary["colour_drift_final"] = per["colour_drift"][-1]
    summary["style_drift_final"] = per["style_drift"][-1]
    return {"per_frame": per, "summary": summary}


def seam_visibility(frames: np.ndarray, masks: np.ndarray, depths: np.ndarray | None = None,
                    min_pixels: int = 20, edge_margin: int = 6) -> dict[str, Any]:
    """Seam visibility per frame (module docstring): NaN for frames without a usable mask border (frame
    0, whose mask is everything, or fewer than ``min_pixels`` border pairs).

    Returns ``per_frame``: ``seam_ratio`` and ``seam_pixels`` (border pairs measured); ``summary``: the mean
    and the worst ratio.
    """
    if masks is None:
        raise InputError("seam visibility needs the run's inpainting masks (masks/NNNN.png)")
    n = frames.shape[0]
    ratio = [float("nan")] * n
    pix = [0.0] * n
    for i in range(n):
        m = masks[i]
        if m.all() or not m.any():
            continue
        h, w = m.shape
        keep = np.zeros((h, w), bool)
        keep[2:-2, 2:-2] = True
        if depths is not None:
            from scenescape.geometry.masks import depth_edges

            d = np.asarray(depths[i], np.float32)
            keep &= ~dilate_np(depth_edges(d, 0.1).numpy() | (d <= 0), edge_margin)
        ratio[i], count = border_ratio(frames[i], m, keep, min_pixels)
        pix[i] = float(count)
    ok = np.asarray([r for r in ratio if np.isfinite(r)])
    return {"per_frame": {"seam_ratio": ratio, "seam_pixels": pix},
            "summary": {"seam_ratio": float(ok.mean()) if ok.size else float("nan"),
                        "seam_ratio_max": float(ok.max()) if ok.size else float("nan"),
                        "frames_with_seams": int(ok.size)}}
