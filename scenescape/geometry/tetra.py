"""Tetrahedral grids and marching tetrahedra (pure torch, differentiable in positions and SDF values).

* :func:`tet_grid` -- a cube ``[-bound, bound]^3`` split into ``n^3`` cells, each cell into 6 tetrahedra
  around its main diagonal (Kuhn / Freudenthal subdivision). Every cell uses the same split, so faces
  of neighbouring tetrahedra match exactly: the grid is conforming and a surface extracted from it has
  no cracks. Made here, no downloaded tets file.
* :func:`marching_tets` -- the zero level set of per-vertex signed distances (negative inside) as a
  triangle mesh. A tetrahedron whose 4 vertices are not all on one side yields one triangle (1 or 3
  inside) or a quad split in two (2 inside); each crossing edge ``(a, b)`` gives one vertex at
  ``(p_a s_b - p_b s_a) / (s_b - s_a)``, shared by every tetrahedron around that edge (so the mesh is
  watertight). Triangles are wound counter-clockwise seen from outside (normals point to ``sdf > 0``).
  Output vertices are differentiable w.r.t. the grid positions and the SDF (DMTet).
"""

from __future__ import annotations

import itertools

import torch

from scenescape.errors import InputError

# local edges of a tetrahedron (vertex pairs); index = local edge id
TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_EDGE_ID = {e: i for i, e in enumerate(TET_EDGES)} | {(b, a): i for i, (a, b) in enumerate(TET_EDGES)}


def _triangle_table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(16, 2, 3)`` local edge ids of up to two triangles per inside-pattern, and ``(16,)`` their count."""
    table = torch.full((16, 2, 3), -1, dtype=torch.int64)
    count = torch.zeros(16, dtype=torch.int64)
    for code in range(16):
        inside = [k for k in range(4) if code >> k & 1]
        outside = [k for k in range(4) if not code >> k & 1]
        if len(inside) in (1, 3):
            lone = inside[0] if len(inside) == 1 else outside[0]
            others = [k for k in range(4) if k != lone]
            table[code, 0] = torch.tensor([_EDGE_ID[lone, o] for o in others])
            count[code] = 1
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            ac, ad, bd, bc = _EDGE_ID[a, c], _EDGE_ID[a, d], _EDGE_ID[b, d], _EDGE_ID[b, c]
            table[code, 0] = torch.tensor([ac, ad, bd])  # the quad ac-ad-bd-bc is a cycle of the crossing edges
            table[code, 1] = torch.tensor([ac, bd, bc])
            count[code] = 2
    return table, count


TRIANGLES, NUM_TRIANGLES = _triangle_table()


def tet_grid(resolution: int, bound: float = 1.0, device: torch.device | str | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Conforming tetrahedral grid: ``vertices ((n+1)^3, 3)`` float32 in ``[-bound, bound]^3`` and
    ``tets (6 n^3, 4)`` int64 vertex indices (positive orientation)."""
    n = int(resolution)
    if n < 1:
        raise InputError(f"tet grid resolution must be >= 1, got {resolution}")
    if bound <= 0:
        raise InputError(f"tet grid bound must be > 0, got {bound}")
    lin = torch.linspace(-bound, bound, n + 1, device=device)
    gx, gy, gz = torch.meshgrid(lin, lin, lin, indexing="ij")
    verts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)
    s = n + 1
    idx = torch.arange(n, device=device)
    i, j, k = torch.meshgrid(idx, idx, idx, indexing="ij")
    base = (i * s * s + j * s + k).reshape(-1)  # corner (0, 0, 0) of every cell
    step = (s * s, s, 1)  # index offset of +x, +y, +z
    tets = []
    for perm in itertools.permutations(range(3)):
        a = base
        path = [a]
        for axis in perm:
            a = a + step[axis]
            path.append(a)
        t = torch.stack(path, 1)
        # orientation: even permutations of (x, y, z) give one sign, odd the other; swap to make all positive
        if _parity(perm):
            t = t[:, [1, 0, 2, 3]]
        tets.append(t)
    return verts, torch.cat(tets, 0)


def _parity(perm: tuple[int, ...]) -> int:
    p = list(perm)
    swaps = 0
    for a in range(len(p)):
        while p[a] != a:
            b = p[a]
            p[a], p[b] = p[b], p[a]
            swaps += 1
    return swaps % 2


def marching_tets(vertices: torch.Tensor, tets: torch.Tensor, sdf: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero level set of ``sdf (V,)`` (negative inside) on the tetrahedral grid ``vertices (V, 3)``,
    ``tets (T, 4)``. Returns ``(verts (M, 3), faces (F, 3) int64)``; ``verts`` carry gradients of
    ``vertices`` and ``sdf``. An empty level set gives ``(0, 3)`` tensors."""
    if vertices.ndim != 2 or vertices.shape[1] != 3 or sdf.shape != vertices.shape[:1]:
        raise InputError(f"marching_tets needs vertices (V, 3) and sdf (V,), got {tuple(vertices.shape)}, "
                         f"{tuple(sdf.shape)}")
    dev = vertices.device
    with torch.no_grad():
        occ = sdf.detach() < 0
        tocc = occ[tets]  # (T, 4)
        n_in = tocc.sum(1)
        valid = (n_in > 0) & (n_in < 4)
        vt = tets[valid]  # (T', 4)
        if vt.shape[0] == 0:
            return vertices.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64, device=dev)
        code = (tocc[valid].long() * torch.tensor([1, 2, 4, 8], device=dev)).sum(1)
        e_local = torch.tensor(TET_EDGES, device=dev)  # (6, 2)
        ev = vt[:, e_local]  # (T', 6, 2) global vertex ids of each local edge
        ev = torch.sort(ev, dim=-1).values
        n_v = vertices.shape[0]
        key = ev[..., 0] * n_v + ev[..., 1]  # (T', 6)
        crossing = occ[ev[..., 0]] != occ[ev[..., 1]]
        ukeys, inv = torch.unique(key[crossing], return_inverse=True)
        edge_vid = torch.full(key.shape, -1, dtype=torch.int64, device=dev)
        edge_vid[crossing] = inv
        a_idx, b_idx = ukeys // n_v, ukeys % n_v
        # triangles: up to two per tetrahedron
        tri_local = TRIANGLES.to(dev)[code]  # (T', 2, 3)
        ntri = NUM_TRIANGLES.to(dev)[code]
        keep = torch.arange(2, device=dev)[None] < ntri[:, None]  # (T', 2)
        rows = torch.arange(vt.shape[0], device=dev)[:, None, None].expand_as(tri_local)
        faces = edge_vid[rows, tri_local.clamp(min=0)]  # (T', 2, 3)
        faces = faces[keep]  # (F, 3)
        # orientation reference: from the inside vertices towards the outside ones of the source tet
        w_in = tocc[valid].float()
        vpos = vertices.detach()[vt]  # (T', 4, 3)
        c_in = (vpos * w_in[..., None]).sum(1) / w_in.sum(1, keepdim=True)
        c_out = (vpos * (1 - w_in)[..., None]).sum(1) / (1 - w_in).sum(1, keepdim=True)
        out_dir = (c_out - c_in)[:, None, :].expand(-1, 2, -1)[keep]  # (F, 3)
    sa, sb = sdf[a_idx], sdf[b_idx]
    pa, pb = vertices[a_idx], vertices[b_idx]
    denom = sb - sa  # never 0: the signs differ (sa < 0 <= sb or the reverse)
    verts = (pa * sb[:, None] - pb * sa[:, None]) / denom[:, None]
    with torch.no_grad():
        p = verts.detach()[faces]
        nrm = torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1)
        flip = (nrm * out_dir).sum(-1) < 0
        faces = torch.where(flip[:, None], faces[:, [0, 2, 1]], faces)
    return verts, faces


def mesh_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique undirected edges ``(E, 2)`` of a triangle mesh and the number of faces on each ``(E,)``."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    uniq, counts = torch.unique(e, dim=0, return_counts=True)
    return uniq, counts


def edge_face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """``(P, 2)`` indices of face pairs that share an edge (each interior edge once; manifold meshes)."""
    f = faces.shape[0]
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    fid = torch.arange(f, device=faces.device).repeat(3)
    n = int(faces.max().item()) + 1 if f else 1
    key = e[:, 0] * n + e[:, 1]
    order = torch.argsort(key)
    ks, fs = key[order], fid[order]
    same = ks[1:] == ks[:-1]
    return torch.stack([fs[:-1][same], fs[1:][same]], 1)


__all__ = ["NUM_TRIANGLES", "TET_EDGES", "TRIANGLES", "edge_face_pairs", "marching_tets", "mesh_edges", "tet_grid"]
