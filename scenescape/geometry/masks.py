"""Mask morphology in pure torch (CPU or CUDA): disocclusion masks, opening/closing, slivers, hole filling.

All masks are ``(H, W)`` bool tensors; kernels are square, ``kernel`` pixels wide (odd), so a dilation by
``r`` pixels uses ``kernel = 2 r + 1`` (8-connected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812


def _as_mask(mask: Any, name: str = "mask") -> torch.Tensor:
    m = mask if torch.is_tensor(mask) else torch.as_tensor(mask)
    if m.dim() != 2:
        raise ValueError(f"{name} must be an (H, W) mask, got shape {tuple(m.shape)}")
    return m.bool()


def _check_kernel(kernel: int) -> int:
    k = int(kernel)
    if k != kernel or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel must be a positive odd integer, got {kernel!r}")
    return k


def dilate_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """``(H, W)`` bool dilation with a ``kernel x kernel`` square (pixels outside the image count as False)."""
    m = _as_mask(mask)
    k = _check_kernel(kernel)
    if k == 1:
        return m.clone()
    return F.max_pool2d(m[None, None].float(), k, stride=1, padding=k // 2)[0, 0] > 0.5


def erode_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """``(H, W)`` bool erosion with a ``kernel x kernel`` square (pixels outside the image count as True,
    so the image border does not erode the mask)."""
    m = _as_mask(mask)
    return ~dilate_mask(~m, kernel)


def open_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """Morphological opening (erode then dilate): removes parts thinner than ``kernel``."""
    return dilate_mask(erode_mask(mask, kernel), kernel)


def close_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """Morphological closing (dilate then erode): fills gaps thinner than ``kernel``."""
    return erode_mask(dilate_mask(mask, kernel), kernel)


def disocclusion_mask(coverage: Any, dilate: int = 1, *, open_kernel: int = 0, close_kernel: int = 0,
                      fill: bool = False) -> torch.Tensor:
    """Pixels to inpaint in a new view: the uncovered pixels, dilated by ``dilate`` pixels.

    Args:
        coverage: ``(H, W)`` bool, pixels where the existing mesh renders (``RenderOutput.mask``).
        dilate: grow the uncovered region by this many pixels (square kernel ``2 * dilate + 1``). The default 1
            re-generates the one-pixel rim around every hole, whose rendered colour/depth mixes foreground and
            background; with 0 seams crack.
        open_kernel: if > 0, apply a morphological opening of this (odd) size before dilating
            (removes isolated specks; the removed pixels are the :func:`sliver_mask`).
        close_kernel: if > 0, apply a closing of this (odd) size at the end (merges nearby holes).
        fill: fill enclosed holes of the final mask (:func:`fill_holes`).

    Returns:
        ``(H, W)`` bool mask.
    """
    cov = _as_mask(coverage, "coverage")
    r = int(dilate)
    if r < 0:
        raise ValueError(f"dilate must be >= 0, got {r}")
    m = ~cov
    if open_kernel:
        m = open_mask(m, open_kernel)
    if r > 0:
        m = dilate_mask(m, 2 * r + 1)
    if close_kernel:
        m = close_mask(m, close_kernel)
    if fill:
        m = fill_holes(m)
    return m


def sliver_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """Pixels of ``mask`` removed by a ``kernel x kernel`` opening: thin slivers and specks that SceneScape
    fills with classical inpainting (OpenCV Telea) instead of diffusion. ``(H, W)`` bool."""
    m = _as_mask(mask)
    return m & ~open_mask(m, kernel)


def fill_holes(mask: Any, max_iter: int | None = None) -> torch.Tensor:
    """Fill the holes of ``mask``: False regions not 4-connected to the image border become True.

    Geodesic reconstruction of the background from the border (iterated 3x3 cross dilation), pure torch.
    ``(H, W)`` bool.
    """
    m = _as_mask(mask)
    h, w = m.shape
    free = ~m
    reach = torch.zeros_like(free)
    reach[0, :], reach[-1, :], reach[:, 0], reach[:, -1] = free[0, :], free[-1, :], free[:, 0], free[:, -1]
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], device=m.device)[None, None]
    limit = max_iter if max_iter is not None else h * w
    freef = free[None, None].float()
    r = reach[None, None].float()
    it = 0
    while it < limit:
        for _ in range(16):
            r = (F.conv2d(r, cross, padding=1) > 0).float() * freef
        it += 16
        if it % 64 == 0 or it >= limit:
            nr = (F.conv2d(r, cross, padding=1) > 0).float() * freef
            if torch.equal(nr, r):
                break
            r = nr
    return m | ~(r[0, 0] > 0)


def depth_edges(depth: Any, threshold: float = 0.1, dilate_px: int = 0) -> torch.Tensor:
    """``(H, W)`` bool depth discontinuities: pixels whose relative depth jump to a 4-neighbour exceeds
    ``threshold`` (``max / min - 1``; empty pixels, depth <= 0, are ignored), optionally dilated."""
    d = depth if torch.is_tensor(depth) else torch.as_tensor(depth)
    if d.dim() != 2:
        raise ValueError(f"depth must be (H, W), got shape {tuple(d.shape)}")
    d = d.float()
    valid = d > 0
    edge = torch.zeros_like(valid)
    for a, b, sa, sb in (
        (d[:, 1:], d[:, :-1], (slice(None), slice(1, None)), (slice(None), slice(None, -1))),
        (d[1:, :], d[:-1, :], (slice(1, None), slice(None)), (slice(None, -1), slice(None))),
    ):
        ok = (a > 0) & (b > 0)
        jump = ok & (torch.maximum(a, b) / torch.minimum(a, b).clamp_min(1e-12) - 1 > threshold)
        edge[sa] |= jump
        edge[sb] |= jump
    if dilate_px > 0:
        edge = dilate_mask(edge, 2 * dilate_px + 1)
    return edge & valid


# short aliases
dilate = dilate_mask
erode = erode_mask
