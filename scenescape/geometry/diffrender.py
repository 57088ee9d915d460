"""Differentiable triangle-mesh rendering on the project's z-buffer rasteriser (pure torch).

Visibility (which face covers a pixel) comes from :func:`scenescape.geometry.raster.rasterize` and is
discrete; everything else is recomputed here with gradients w.r.t. the vertex positions:

* :func:`rasterize_diff` -- the visible face per pixel, its perspective-correct barycentrics and z-depth,
  from the projected vertices (differentiable), as :class:`Fragments`;
* :func:`interpolate` -- per-vertex attributes ``(N, C)`` -> ``(H, W, C)`` at the covered pixels;
* :func:`antialias` -- analytic silhouette antialiasing (the idea of nvdiffrast's ``antialias``): for
  every pair of 4-neighbour pixels where one is covered and the other is background, the covered
  pixel's face boundary crosses the segment between the two pixel centres at a fraction ``t``
  (from the covered centre). With a 1-pixel box filter along that segment the covered pixel keeps
  ``min(1, 0.5 + t)`` of its colour and the background pixel receives ``max(0, t - 0.5)`` of it (the
  largest such share where several crossings touch one pixel).
  ``t`` is a differentiable function of the face's projected vertices, so silhouettes get gradients
  (the coverage changes continuously as an edge moves across a pixel).

Conventions: OpenCV camera, pixel centres at +0.5, z-depth, images ``(H, W, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scenescape.geometry.camera import Camera
from scenescape.geometry.raster import project_vertices, rasterize


@dataclass
class Fragments:
    """Per-pixel rasterisation of one camera.

    ``face_index (H, W)`` int64 (-1 empty), ``mask (H, W)`` bool, ``pix (P,)`` flat indices of covered
    pixels, ``bary (P, 3)`` perspective-correct barycentrics (differentiable), ``depth (H, W)`` z-depth
    (0 empty, differentiable), ``uv (N, 2)`` projected vertices in pixels (differentiable), ``faces``.
    """

    face_index: torch.Tensor
    mask: torch.Tensor
    pix: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    uv: torch.Tensor
    faces: torch.Tensor
    height: int
    width: int


def _edge_functions(uvf: torch.Tensor, pu: torch.Tensor, pv: torch.Tensor) -> torch.Tensor:
    """``(P, 3)`` edge functions (edge k opposite vertex k) of faces ``uvf (P, 3, 2)`` at points ``(P,)``,
    positive inside for either winding."""
    u, v = uvf[..., 0], uvf[..., 1]
    e0 = (u[:, 2] - u[:, 1]) * (pv - v[:, 1]) - (v[:, 2] - v[:, 1]) * (pu - u[:, 1])
    e1 = (u[:, 0] - u[:, 2]) * (pv - v[:, 2]) - (v[:, 0] - v[:, 2]) * (pu - u[:, 2])
    e2 = (u[:, 1] - u[:, 0]) * (pv - v[:, 0]) - (v[:, 1] - v[:, 0]) * (pu - u[:, 0])
    e = torch.stack([e0, e1, e2], 1)
    area = e.sum(1, keepdim=True)  # twice the signed area (constant over the plane)
    return e * torch.sign(area).detach()


def rasterize_diff(vertices: torch.Tensor, faces: torch.Tensor, cam: Camera, near: float = 1e-3,
                   cull_backfaces: bool = False) -> Fragments:
    """Rasterise ``vertices (N, 3)`` (world, may require grad), ``faces (M, 3)`` into ``cam``."""
    h, w = cam.height, cam.width
    with torch.no_grad():
        face_index, _, _ = rasterize(vertices.detach(), faces, cam, near=near, cull_backfaces=cull_backfaces)
    u, v, z = project_vertices(vertices, cam, near)
    uv = torch.stack([u, v], 1)
    flat = face_index.reshape(-1)
    pix = (flat >= 0).nonzero().squeeze(1)
    fid = flat.index_select(0, pix)
    fv = faces.index_select(0, fid)  # (P, 3)
    uvf = uv.index_select(0, fv.reshape(-1)).view(-1, 3, 2)
    zf = z.index_select(0, fv.reshape(-1)).view(-1, 3)
    pu = (pix % w).to(uv.dtype) + 0.5
    pv = torch.div(pix, w, rounding_mode="floor").to(uv.dtype) + 0.5
    e = _edge_functions(uvf, pu, pv)
    pb = e.clamp(min=0) / zf.clamp(min=near)
    bary = pb / pb.sum(1, keepdim=True).clamp(min=1e-12)
    depth_p = 1.0 / (bary / zf.clamp(min=near)).sum(1)
    depth = torch.zeros(h * w, dtype=uv.dtype, device=uv.device).index_put((pix,), depth_p).view(h, w)
    return Fragments(face_index, face_index >= 0, pix, bary, depth, uv, faces, h, w)


def interpolate(attr: torch.Tensor, frags: Fragments, fill: float = 0.0) -> torch.Tensor:
    """Per-vertex ``attr (N, C)`` -> image ``(H, W, C)`` (``fill`` where empty), differentiable."""
    fv = frags.faces.index_select(0, frags.face_index.reshape(-1).index_select(0, frags.pix))
    a = attr.index_select(0, fv.reshape(-1)).view(-1, 3, attr.shape[1])
    val = (frags.bary[..., None] * a).sum(1)
    out = torch.full((frags.height * frags.width, attr.shape[1]), fill, dtype=val.dtype, device=val.device)
    return out.index_put((frags.pix,), val).view(frags.height, frags.width, -1)


def scatter_pixels(values: torch.Tensor, frags: Fragments, fill: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Per-covered-pixel ``values (P, C)`` -> image ``(H, W, C)``."""
    out = torch.zeros(frags.height * frags.width, values.shape[1], dtype=values.dtype, device=values.device)
    out = out + torch.as_tensor(fill, dtype=values.dtype, device=values.device)
    return out.index_put((frags.pix,), values).view(frags.height, frags.width, -1)


def _exit_fraction(frags: Fragments, inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """Fraction ``t (K,)`` along the segment from the centre of covered pixel ``inner`` to the centre of
    pixel ``outer`` (flat indices) where the inner pixel's face boundary is crossed (clamped to [0, 1])."""
    w = frags.width
    fid = frags.face_index.reshape(-1).index_select(0, inner)
    fv = frags.faces.index_select(0, fid)
    uvf = frags.uv.index_select(0, fv.reshape(-1)).view(-1, 3, 2)
    iu = (inner % w).to(uvf.dtype) + 0.5
    iv = torch.div(inner, w, rounding_mode="floor").to(uvf.dtype) + 0.5
    ou = (outer % w).to(uvf.dtype) + 0.5
    ov = torch.div(outer, w, rounding_mode="floor").to(uvf.dtype) + 0.5
    ei = _edge_functions(uvf, iu, iv)  # >= 0 (inside)
    eo = _edge_functions(uvf, ou, ov)
    leaving = eo < 0
    t = ei.clamp(min=0) / (ei.clamp(min=0) - eo).clamp(min=1e-12)
    t = torch.where(leaving, t, torch.full_like(t, 2.0)).amin(1)
    return t.clamp(0.0, 1.0)


def antialias(image: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Silhouette antialiasing of ``image (H, W, C)`` (covered pixels: the mesh's colour, others: the
    background) -- see the module doc. A pixel with several silhouette crossings around it (a diagonal
    edge, a corner) takes the largest share any one of them gives it (summing them would erode every
    diagonal edge: a pixel whose centre lies on a 45-degree edge would lose all its colour instead of
    half), with the colours of the contributing neighbours averaged by their shares. Differentiable
    w.r.t. the image and the vertex positions."""
    h, w, c = image.shape
    mask = frags.mask.reshape(-1)
    flat = image.reshape(-1, c)
    idx = torch.arange(h * w, device=image.device).view(h, w)
    pairs = [(idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1)), (idx[:-1, :].reshape(-1), idx[1:, :].reshape(-1))]
    targets, sources, shares = [], [], []
    for a, b in pairs:
        ma, mb = mask[a], mask[b]
        for inner, outer in ((a[ma & ~mb], b[ma & ~mb]), (b[mb & ~ma], a[mb & ~ma])):
            if inner.numel() == 0:
                continue
            s = _exit_fraction(frags, inner, outer) - 0.5
            # the background pixel gets max(0, s) of the face; the covered pixel max(0, -s) of the background
            targets += [outer, inner]
            sources += [inner, outer]
            shares += [s.clamp(min=0), (-s).clamp(min=0)]
    if not targets:
        return image
    tgt, src, share = torch.cat(targets), torch.cat(sources), torch.cat(shares)
    big = flat.new_zeros(h * w).scatter_reduce(0, tgt, share, reduce="amax", include_self=True)
    wsum = flat.new_zeros(h * w).index_add(0, tgt, share)
    mix = flat.new_zeros(h * w, c).index_add(0, tgt, share[:, None] * flat[src])
    mix = mix / wsum.clamp(min=1e-12)[:, None]
    out = flat + big[:, None] * (mix - flat)
    return out.view(h, w, c)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``(N, 3)`` (differentiable)."""
    p = vertices[faces]
    fn = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


__all__ = ["Fragments", "antialias", "interpolate", "rasterize_diff", "scatter_pixels", "vertex_normals"]
