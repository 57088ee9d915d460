"""Mask morphology in pure torch (CPU or CUDA): disocclusion masks, opening/closing, slivers, hole filling.

All masks are ``(H, W)`` bool tensors; kernels are square, ``kernel`` pixels wide (odd), so a dilation by
``r`` pixels uses ``kernel = 2 r + 1`` (8-connected).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from scenescape.errors import InputError


def _as_mask(mask: Any, name: str = "mask") -> torch.Tensor:
    m = mask if torch.is_tensor(mask) else torch.as_tensor(mask)
    if m.dim() != 2:
        raise InputError(f"{name} must be an (H, W) mask, got shape {tuple(m.shape)}")
    return m.bool()


def _check_kernel(kernel: int) -> int:
    k = int(kernel)
    if k != kernel or k < 1 or k % 2 == 0:
        raise InputError(f"kernel must be a positive odd integer, got {kernel!r}")
    return k


def _dilate_1d(m: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """``any`` over a centred window of ``k`` along ``dim`` of a ``(H, W)`` bool mask (False outside): ORs of
    shifted copies, doubling the window (``log2 k`` + 1 ORs)."""
    n = m.shape[dim]
    r = k // 2
    shape = list(m.shape)
    shape[dim] = n + 2 * r
    a = torch.zeros(shape, dtype=torch.bool, device=m.device)
    a.narrow(dim, r, n).copy_(m)
    s = 1  # a[i] = any(padded[i : i + s]) along dim
    while 2 * s <= k:
        a = a.narrow(dim, 0, a.shape[dim] - s) | a.narrow(dim, s, a.shape[dim] - s)
        s *= 2
    return a.narrow(dim, 0, n) | a.narrow(dim, k - s, n)


def dilate_mask(mask: Any, kernel: int = 3) -> torch.Tensor:
    """``(H, W)`` bool dilation with a ``kernel x kernel`` square (pixels outside the image count as False).

    Separable: rows, then columns, each as ORs of shifted copies (exact, and several times faster than a
    float max-pool on the CPU)."""
    m = _as_mask(mask)
    k = _check_kernel(kernel)
    if k == 1 or m.numel() == 0:
        return m.clone()
    return _dilate_1d(_dilate_1d(m, k, 1), k, 0)


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
                      fill: bool = False, depth: Any = None, edge_ring: int = 0,
                      edge_threshold: float = 0.1) -> torch.Tensor:
    """Pixels to inpaint in a new view: the uncovered pixels, dilated by ``dilate`` pixels, optionally plus
    the far side of rendered depth discontinuities.

    Args:
        coverage: ``(H, W)`` bool, pixels where the existing mesh renders (``RenderOutput.mask``).
        dilate: grow the uncovered region by this many pixels (square kernel ``2 * dilate + 1``). The default 1
            re-generates the one-pixel rim around every hole, whose rendered colour/depth mixes foreground and
            background; with 0 seams crack.
        open_kernel: if > 0, apply a morphological opening of this (odd) size before dilating
            (removes isolated specks; the removed pixels are the :func:`sliver_mask`).
        close_kernel: if > 0, apply a closing of this (odd) size at the end (merges nearby holes).
        fill: fill enclosed holes of the final mask (:func:`fill_holes`).
        depth: ``(H, W)`` rendered z-depth (``RenderOutput.depth``, 0 where empty); needed with ``edge_ring``.
        edge_ring: if > 0, also mask the covered pixels within ``edge_ring`` pixels (square neighbourhood) of a
            *nearer* rendered pixel: ``depth > (1 + edge_threshold) * depth[neighbour]`` (:func:`far_edge_mask`).
            A mesh's occluder ends at its last pixel centre, so where the occluder moves over the background
            the pixels just outside its rendered silhouette show the background; masking them lets the
            inpainter and depth re-generate the occluder's true edge. Added after ``open_kernel`` and before
            ``close_kernel``/``fill``; not dilated.
        edge_threshold: relative depth jump that counts as a discontinuity for ``edge_ring``.

    Returns:
        ``(H, W)`` bool mask.
    """
    cov = _as_mask(coverage, "coverage")
    r = int(dilate)
    if r < 0:
        raise InputError(f"dilate must be >= 0, got {r}")
    ring = int(edge_ring)
    if ring != edge_ring or ring < 0:
        raise InputError(f"edge_ring must be an integer >= 0, got {edge_ring!r}")
    if ring > 0 and depth is None:
        raise InputError("edge_ring > 0 needs depth: pass the rendered depth (RenderOutput.depth)")
    m = ~cov
    if open_kernel:
        m = open_mask(m, open_kernel)
    if r > 0:
        m = dilate_mask(m, 2 * r + 1)
    if ring > 0:
        m = m | (far_edge_mask(depth, ring, edge_threshold).to(m.device) & cov)
    if close_kernel:
        m = close_mask(m, close_kernel)
    if fill:
        m = fill_holes(m)
    return m


def far_edge_mask(depth: Any, radius: int = 1, threshold: float = 0.1) -> torch.Tensor:
    """``(H, W)`` bool: the far side of depth discontinuities. A pixel with depth ``d > 0`` is marked when some
    pixel within ``radius`` (square ``(2 radius + 1)`` neighbourhood) has depth ``0 < d' < d / (1 + threshold)``.
    The nearer side of the same edge is not marked; empty pixels (depth <= 0) never are."""
    d = depth if torch.is_tensor(depth) else torch.as_tensor(depth)
    if d.dim() != 2:
        raise InputError(f"depth must be (H, W), got shape {tuple(d.shape)}")
    rad = int(radius)
    if rad != radius or rad < 1:
        raise InputError(f"radius must be an integer >= 1, got {radius!r}")
    if not threshold >= 0:
        raise InputError(f"threshold must be >= 0, got {threshold!r}")
    d = d.float()
    valid = d > 0
    big = torch.where(valid, d, torch.full_like(d, float("inf")))
    k = 2 * rad + 1
    near = -F.max_pool2d(-big[None, None], k, stride=1, padding=rad)[0, 0]  # min depth around (inf if none)
    return valid & (d > (1.0 + float(threshold)) * near)


def confirm_nearer(mask: Any, base: Any, rendered_depth: Any, new_depth: Any, threshold: float = 0.1) -> torch.Tensor:
    """Keep the pixels of ``mask`` outside ``base`` (e.g. the :func:`far_edge_mask` ring that
    :func:`disocclusion_mask` adds with ``edge_ring``) only where the new depth is nearer than the rendered one:
    ``new_depth * (1 + threshold) < rendered_depth``. There the mesh shows the background where the new view
    has a nearer surface (an occluder's edge); elsewhere the existing surface is right and adding it again would
    duplicate geometry. Pixels of ``base`` are all kept. All ``(H, W)``; returns bool."""
    m, b = _as_mask(mask), _as_mask(base, "base")
    rd = rendered_depth if torch.is_tensor(rendered_depth) else torch.as_tensor(rendered_depth)
    nd = new_depth if torch.is_tensor(new_depth) else torch.as_tensor(new_depth)
    if rd.shape != m.shape or nd.shape != m.shape or b.shape != m.shape:
        raise InputError(f"mask, base, rendered_depth and new_depth must share one (H, W) shape, got "
                         f"{tuple(m.shape)}, {tuple(b.shape)}, {tuple(rd.shape)}, {tuple(nd.shape)}")
    rd, nd = rd.to(m.device).float(), nd.to(m.device).float()
    nearer = (nd > 0) & (nd * (1.0 + float(threshold)) < rd)
    return b | (m & nearer)


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
        raise InputError(f"depth must be (H, W), got shape {tuple(d.shape)}")
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
