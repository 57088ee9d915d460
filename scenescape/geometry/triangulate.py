"""Triangulation of a pixel grid into a mesh, with stretched-triangle removal and seam stitching.

Winding convention: a face ``(a, b, c)`` made here is **counter-clockwise as seen in the image of the camera
that created it** (image drawn the usual way, row 0 at the top, y down). In that camera's OpenCV frame the
right-hand normal ``(b - a) x (c - a)`` points back toward the camera, which is also the front face of the
usual OpenGL / Blender / three.js convention once the mesh is exported (export flips y and z).

For the 2x2 quad with corners ``a=(i, j)``, ``b=(i, j+1)``, ``c=(i+1, j)``, ``d=(i+1, j+1)``:

* diagonal a-d: faces ``(a, c, d)`` and ``(a, d, b)``; diagonal b-c: ``(a, c, b)`` and ``(b, c, d)``;
* the diagonal with the smaller depth difference is used; with three valid corners, their one triangle.

Stretched ("rubber-sheet") triangles across depth discontinuities are dropped when their relative depth
span ``max z / min z - 1`` exceeds ``max_rel_jump`` or their normal is at a grazing angle to the view ray
(``|n . ray| < min_cos``), see :class:`TriangulationOptions`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from scenescape.errors import InputError


@dataclass
class TriangulationOptions:
    """Knobs of :func:`grid_triangles` (all scale-free).

    Attributes:
        max_rel_jump: drop a triangle whose depths satisfy ``max z / min z - 1 > max_rel_jump``.
        min_cos: drop a triangle whose unit normal ``n`` and unit view ray ``r`` (camera centre to the
            triangle's centroid) satisfy ``|n . r| < min_cos`` (grazing; a triangle spanning one pixel across
            a relative depth jump ``j`` has ``|n . r| ~ 1 / (f j)``).
        min_depth: depths at or below this are invalid (never triangulated).
    """

    max_rel_jump: float = 0.1
    min_cos: float = 0.04
    min_depth: float = 0.0

    @classmethod
    def from_kwargs(cls, **opts: Any) -> TriangulationOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(opts) - names)
        if unknown:
            raise InputError(f"unknown triangulation option(s) {unknown}; valid: {sorted(names)}")
        out = cls(**opts)
        if not out.max_rel_jump > 0:
            raise InputError(f"max_rel_jump must be > 0, got {out.max_rel_jump}")
        if not 0 <= out.min_cos < 1:
            raise InputError(f"min_cos must be in [0, 1), got {out.min_cos}")
        return out


def min3(x: torch.Tensor) -> torch.Tensor:
    """``(T, 3, ...)`` -> ``(T, ...)``: the minimum over dim 1 as two element-wise minimums (the same values as
    ``x.amin(1)``, NaN included, and many times faster on the CPU for a dim of size 3)."""
    return torch.minimum(torch.minimum(x[:, 0], x[:, 1]), x[:, 2])


def max3(x: torch.Tensor) -> torch.Tensor:
    """``(T, 3, ...)`` -> ``(T, ...)``: the maximum over dim 1, as :func:`min3`."""
    return torch.maximum(torch.maximum(x[:, 0], x[:, 1]), x[:, 2])


def quad_triangles(valid: torch.Tensor, z: torch.Tensor, need: torch.Tensor | None = None) -> torch.Tensor:
    """Candidate triangles of a pixel grid.

    Args:
        valid: ``(H, W)`` bool, pixels that have a vertex.
        z: ``(H, W)`` depth used to choose the quad diagonal (smaller ``|z_a - z_d|`` vs ``|z_b - z_c|``).
        need: optional ``(H, W)`` bool: only the quads with a corner in ``need`` are triangulated (no triangle
            of another quad touches ``need``); the triangles of those quads are the same, in the same order.

    Returns:
        ``(T, 3)`` int64 flat pixel indices ``i * W + j``, counter-clockwise in the image (y down): the
        triangles of each kind below in raster order of their quads, one kind after the other.
    """
    h, w = valid.shape
    device = valid.device
    if h < 2 or w < 2:
        return torch.zeros(0, 3, dtype=torch.int64, device=device)
    if need is None:
        idx = torch.arange(h * w, device=device).view(h, w)
        ia, ib, ic, id_ = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
        va, vb, vc, vd = valid[:-1, :-1], valid[:-1, 1:], valid[1:, :-1], valid[1:, 1:]
        za, zb, zc, zd = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]
    else:
        touch = need[:-1, :-1] | need[:-1, 1:] | need[1:, :-1] | need[1:, 1:]
        q = touch.reshape(-1).nonzero().squeeze(1)  # quads (top-left corners), raster order
        ia = q + torch.div(q, w - 1, rounding_mode="floor")  # = i * W + j for quad i * (W - 1) + j
        ib, ic = ia + 1, ia + w
        id_ = ic + 1
        vf, zf = valid.reshape(-1), z.reshape(-1)
        va, vb, vc, vd = (vf.index_select(0, t) for t in (ia, ib, ic, id_))
        za, zb, zc, zd = (zf.index_select(0, t) for t in (ia, ib, ic, id_))
    use_ad = (za - zd).abs() <= (zb - zc).abs()
    t_acd = va & vc & vd & (use_ad | ~vb)
    t_adb = va & vd & vb & (use_ad | ~vc)
    t_acb = va & vc & vb & (~use_ad | ~vd)
    t_bcd = vb & vc & vd & (~use_ad | ~va)
    tris = [
        torch.stack([ia[t_acd], ic[t_acd], id_[t_acd]], 1),
        torch.stack([ia[t_adb], id_[t_adb], ib[t_adb]], 1),
        torch.stack([ia[t_acb], ic[t_acb], ib[t_acb]], 1),
        torch.stack([ib[t_bcd], ic[t_bcd], id_[t_bcd]], 1),
    ]
    return torch.cat(tris, 0)


def stretched(points_cam: torch.Tensor, tris: torch.Tensor, opts: TriangulationOptions) -> torch.Tensor:
    """``(T,)`` bool: triangles stretched across a depth discontinuity.

    Args:
        points_cam: ``(P, 3)`` camera-space points (OpenCV, z = depth) indexed by ``tris``.
        tris: ``(T, 3)`` int64.
    """
    p = points_cam.index_select(0, tris.reshape(-1)).view(-1, 3, 3)  # (T, 3, 3)
    z = p[..., 2]
    zmin, zmax = min3(z), max3(z)
    rel = zmax / zmin.clamp_min(1e-12) - 1.0
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    r = (p[:, 0] + p[:, 1] + p[:, 2]) / 3  # = p.mean(1), bit for bit (a sum over dim 1, then / 3), faster
    cos = (n * r).sum(-1).abs() / (n.norm(dim=-1) * r.norm(dim=-1)).clamp_min(1e-30)
    return (rel > opts.max_rel_jump) | (cos < opts.min_cos)


def grid_triangles(points_cam: torch.Tensor, valid: torch.Tensor, need: torch.Tensor | None,
                   opts: TriangulationOptions) -> tuple[torch.Tensor, int]:
    """Triangulate a grid of camera-space points.

    Args:
        points_cam: ``(H, W, 3)`` camera-space points (z = depth) of every pixel that has a vertex.
        valid: ``(H, W)`` bool, pixels with a vertex.
        need: ``(H, W)`` bool or None; if given, keep only triangles touching at least one such pixel.
        opts: filter options.

    Returns:
        ``(T, 3)`` int64 flat pixel indices of the kept triangles (CCW in the image), and the number of
        candidate triangles dropped as stretched.
    """
    h, w = valid.shape
    tris = quad_triangles(valid, points_cam[..., 2], need)
    if need is not None and tris.numel():
        tris = tris[need.reshape(-1)[tris].any(1)]
    if tris.numel() == 0:
        return tris, 0
    bad = stretched(points_cam.reshape(-1, 3), tris, opts)
    return tris[~bad], int(bad.sum())
