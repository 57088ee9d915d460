"""Z-buffer triangle rasteriser in pure torch (CPU or CUDA), perspective-correct.

Conventions: OpenCV camera, pixel ``(row i, col j)`` is sampled at its centre ``(u, v) = (j + 0.5, i + 0.5)``,
depth is z-depth (0 where nothing renders). Faces are rendered two-sided by default.

Algorithm (``backend="torch"``, the reference; ``backend="numba"`` runs the same arithmetic as one compiled loop
per face (split over threads for large renders with ``SCENESCAPE_RENDER_THREADS``), see :mod:`scenescape.geometry._zbuffer_numba`, and gives
identical outputs):

0. (``render_mesh``) frustum culling by chunk: :meth:`SceneMesh.face_chunks` gives the bounding box of each run
   of 4,096 consecutive faces (a frame's patch is a few such runs), and chunks whose box lies behind the near
   plane or beyond a side of the view frustum are skipped, exactly (no face in them could cover a pixel);

1. project all vertices once; drop faces with any vertex closer than ``near`` (or behind the camera),
   faces whose pixel-centre bounding box is empty or off-screen, and zero-area faces;
2. bucket the remaining faces by the power-of-two size of their bounding box (width and height
   separately), so each bucket enumerates a fixed ``Sx x Sy`` grid of candidate pixels per face
   (large buckets are processed in chunks to bound memory);
3. evaluate edge functions at the candidates. Every edge function is computed from the edge's two
   vertices in a canonical order (lower vertex index first), so two faces sharing an edge get exactly
   opposite values and no pixel centre can fall through a shared edge (no cracks from rounding). Edges are
   inclusive: a pixel centre exactly on an edge is covered by both faces (also on a mesh boundary, so a
   mesh made from a depth map covers every pixel of its own view);
4. z-test with a single ``scatter_reduce(amin)`` on an int64 key ``(float32 depth bits << 32) | face``
   (positive float32 bit patterns order like the floats); this is also the tie rule: a pixel covered by
   two faces at the same depth (a shared edge) goes to the lower face index, deterministically;
5. decode the winning face per pixel and recompute its perspective-correct barycentrics once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera

_KEY_EMPTY = torch.iinfo(torch.int64).max
_EDGE_EPS = 1e-4  # px
_MAX_LEVEL = 15  # 32768 px: larger bounding boxes are clipped to the image anyway


@dataclass
class RenderOutput:
    """Result of :func:`render_mesh` (all on the mesh's device).

    Attributes:
        image: ``(H, W, 3)`` float32 colours in [0, 1] (``background`` where empty).
        depth: ``(H, W)`` float32 z-depth, 0 where empty.
        mask: ``(H, W)`` bool coverage.
        face_index: ``(H, W)`` int64 index of the visible face, -1 where empty.
        bary: ``(H, W, 3)`` float32 perspective-correct barycentrics of the visible face (0 where empty).
    """

    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    face_index: torch.Tensor
    bary: torch.Tensor

    @property
    def coverage(self) -> float:
        """Fraction of pixels covered."""
        return float(self.mask.float().mean())

    def to(self, device: Any) -> RenderOutput:
        return RenderOutput(*(getattr(self, k).to(device) for k in ("image", "depth", "mask", "face_index", "bary")))


def _pose(cam: Camera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    w2c = cam.world_to_camera.to(device=device, dtype=torch.float32)
    return w2c[:3, :3], w2c[:3, 3]


def project_vertices(vertices: torch.Tensor, cam: Camera, near: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    """``(N, 3)`` world vertices -> ``u, v, z`` each ``(N,)`` (u, v meaningless where ``z <= near``).

    Written as float32 element-wise operations in a fixed order (no matrix product, whose summation order
    depends on the BLAS kernel), so the compiled z-buffer reproduces it bit for bit, and projecting a subset
    of the vertices gives the same values as projecting all of them.
    """
    rot, t = _pose(cam, vertices.device)
    x, y, zw = vertices[:, 0], vertices[:, 1], vertices[:, 2]

    def row(k: int) -> torch.Tensor:
        return rot[k, 0] * x + rot[k, 1] * y + rot[k, 2] * zw + t[k]

    z = row(2)
    zs = z.clamp_min(near)
    u = row(0) / zs * cam.fx + cam.cx
    v = row(1) / zs * cam.fy + cam.cy
    return u, v, z


class _FaceSetup:
    """Per-face quantities for edge-function evaluation, only for faces that can cover a pixel, sorted by
    bounding-box bucket so that chunks are contiguous slices.

    ``fp``: ``(F, 21)`` float32 = canonical edge start ``su, sv`` (3 each), direction ``du, dv``, orientation sign
    ``osign``, depth coefficient ``coef`` and edge tolerance ``tol`` (3 each); ``ip``: ``(F, 5)`` int64 =
    ``j0, i0, w, h, face id``.
    """

    def __init__(self, u: torch.Tensor, v: torch.Tensor, z: torch.Tensor, faces: torch.Tensor, width: int,
                 height: int, near: float, cull_backfaces: bool) -> None:
        m = faces.shape[0]
        g = torch.stack([u, v, z], 1).index_select(0, faces.reshape(-1)).view(m, 3, 3)  # (M, vertex, uvz)
        uf, vf, zf = g[..., 0], g[..., 1], g[..., 2]
        eps = _EDGE_EPS
        # pixel j is a candidate when its centre j + 0.5 lies in [umin, umax]
        j0f = torch.ceil(uf.amin(1) - (0.5 + eps))
        j1f = torch.floor(uf.amax(1) - (0.5 - eps))
        i0f = torch.ceil(vf.amin(1) - (0.5 + eps))
        i1f = torch.floor(vf.amax(1) - (0.5 - eps))
        area = (uf[:, 1] - uf[:, 0]) * (vf[:, 2] - vf[:, 0]) - (vf[:, 1] - vf[:, 0]) * (uf[:, 2] - uf[:, 0])
        keep = (zf.amin(1) > near) & (j1f >= j0f) & (i1f >= i0f) & (j1f >= 0) & (i1f >= 0)
        keep &= (j0f <= width - 1) & (i0f <= height - 1) & (area != 0)
        if cull_backfaces:
            # front-facing = counter-clockwise as seen in the image (y down) = negative area here
            keep &= area < 0
        fid = keep.nonzero().squeeze(1)
        # one gather for the kept faces, bounding boxes recomputed for them only
        pack = g.reshape(m, 9).index_select(0, fid)
        uf, vf, zf = pack[:, 0:9:3], pack[:, 1:9:3], pack[:, 2:9:3]
        j0 = torch.ceil(uf.amin(1) - (0.5 + eps)).clamp_min(0).to(torch.int64)
        i0 = torch.ceil(vf.amin(1) - (0.5 + eps)).clamp_min(0).to(torch.int64)
        w = torch.floor(uf.amax(1) - (0.5 - eps)).clamp_max(width - 1).to(torch.int64) - j0 + 1
        h = torch.floor(vf.amax(1) - (0.5 - eps)).clamp_max(height - 1).to(torch.int64) - i0 + 1
        area = area.index_select(0, fid)
        f = faces.index_select(0, fid)
        sgn = torch.where(area > 0, 1.0, -1.0)
        # edge k is opposite vertex k: (1,2), (2,0), (0,1); computed from its lower-index vertex so that two
        # faces sharing an edge evaluate exactly opposite edge functions
        a_i, b_i = [1, 2, 0], [2, 0, 1]
        swap = f[:, a_i] > f[:, b_i]
        ua, va, ub, vb = uf[:, a_i], vf[:, a_i], uf[:, b_i], vf[:, b_i]
        su = torch.where(swap, ub, ua)
        sv = torch.where(swap, vb, va)
        du = torch.where(swap, ua, ub) - su
        dv = torch.where(swap, va, vb) - sv
        esign = torch.where(swap, -1.0, 1.0)  # E_face = esign * E_canonical
        osign = esign * sgn[:, None]  # inside <=> osign * E_canonical >= tol
        coef = esign / (zf * area[:, None])  # 1 / z = sum_k coef_k * E_canonical_k
        # inclusive edges with a tolerance of _EDGE_EPS px (unproject -> project round trips land pixel centres
        # a few ulps off the boundary of a mesh built from a depth map)
        tol = -eps * torch.sqrt(du * du + dv * dv)
        # bucket by power-of-two bounding box size
        lw = torch.ceil(torch.log2(w.float())).to(torch.int64).clamp(0, _MAX_LEVEL)
        lh = torch.ceil(torch.log2(h.float())).to(torch.int64).clamp(0, _MAX_LEVEL)
        lw = lw + ((1 << lw) < w).long()  # guard against log2 rounding at exact powers of two
        lh = lh + ((1 << lh) < h).long()
        bucket = lw * 32 + lh
        order = torch.argsort(bucket)
        self.fp = torch.cat([su, sv, du, dv, osign, coef, tol], 1).index_select(0, order)
        self.ip = torch.stack([j0, i0, w, h, fid], 1).index_select(0, order)
        self.buckets, self.counts = torch.unique_consecutive(bucket.index_select(0, order), return_counts=True)

    @property
    def n(self) -> int:
        return int(self.ip.shape[0])


def _rasterize_keys(setup: _FaceSetup, width: int, height: int, chunk: int) -> torch.Tensor:
    device = setup.ip.device
    keys = torch.full((height * width,), _KEY_EMPTY, dtype=torch.int64, device=device)
    if setup.n == 0:
        return keys
    st = 0
    for b, cnt in zip(setup.buckets.tolist(), setup.counts.tolist(), strict=True):
        sx, sy = 1 << (b // 32), 1 << (b % 32)
        ncand = sx * sy
        per = max(1, chunk // ncand)
        dy = torch.arange(sy, device=device).repeat_interleave(sx)
        dx = torch.arange(sx, device=device).repeat(sy)
        for c0 in range(st, st + cnt, per):
            c1 = min(c0 + per, st + cnt)
            _raster_chunk(setup.fp[c0:c1], setup.ip[c0:c1], dx, dy, width, keys)
        st += cnt
    return keys


def _raster_chunk(fp: torch.Tensor, ip: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, width: int,
                  keys: torch.Tensor) -> None:
    ncand = dx.numel()
    j0, i0 = ip[:, 0:1], ip[:, 1:2]
    if ncand == 1:
        pj, pi = j0, i0
        inside = None
    else:
        pj = j0 + dx
        pi = i0 + dy
        inside = (dx < ip[:, 2:3]) & (dy < ip[:, 3:4])
    pu = pj.float() + 0.5  # (F, C)
    pv = pi.float() + 0.5
    invz = None
    for k in range(3):
        su, sv, du, dv = fp[:, k:k + 1], fp[:, 3 + k:4 + k], fp[:, 6 + k:7 + k], fp[:, 9 + k:10 + k]
        osign, coef, tol = fp[:, 12 + k:13 + k], fp[:, 15 + k:16 + k], fp[:, 18 + k:19 + k]
        ec = du * (pv - sv) - dv * (pu - su)  # canonical edge function
        ins = ec * osign >= tol
        inside = ins if inside is None else inside & ins
        t = ec * coef
        invz = t if invz is None else invz + t
    inside &= invz > 0
    sel = inside.reshape(-1).nonzero().squeeze(1)
    zpix = 1.0 / invz.reshape(-1).index_select(0, sel)
    pix = (pi * width + pj).reshape(-1).index_select(0, sel)
    fidx = ip[:, 4].index_select(0, torch.div(sel, ncand, rounding_mode="floor") if ncand > 1 else sel)
    key = (zpix.view(torch.int32).to(torch.int64) << 32) | fidx
    keys.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)


Backend = str  # "auto" | "torch" | "numba" (rasterize); render_mesh also takes "pytorch3d"


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "torch", "numba"):
        raise InputError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    if backend == "auto":
        return "numba" if _numba_available() else "torch"
    if backend == "numba" and not _numba_available():
        raise InputError("backend='numba' needs numba, which is not installed: pip install 'scenescape[fast]' "
                         "(or numba), or use backend='torch' (same output, slower)")
    return backend


def frustum_ranges(lo: torch.Tensor, hi: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, cam: Camera,
                   near: float) -> torch.Tensor:
    """Face ranges whose bounding box can reach ``cam``'s image: ``(R, 2)`` int64 ``[start, end)``.

    Args:
        lo, hi: ``(B, 3)`` world-space bounds of the vertices of each chunk's faces.
        starts, ends: ``(B,)`` the chunks' face ranges.

    A chunk is dropped only when no face in it could cover a pixel centre: all 8 corners of its box are
    nearer than ``near`` (every face has a vertex there and is dropped), or all lie beyond one side plane of
    the view frustum widened by a quarter pixel (every face projects off the image). Both tests are linear in
    the corners, so they hold for every point of the box. Adjacent kept chunks are merged into one range.
    """
    if lo.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.int64)
    lo64, hi64 = lo.double().cpu(), hi.double().cpu()
    w2c = cam.world_to_camera.double().cpu()
    sel = torch.tensor([[(c >> k) & 1 for k in range(3)] for c in range(8)], dtype=torch.bool)  # (8, 3)
    corners = torch.where(sel[None], hi64[:, None, :], lo64[:, None, :])  # (B, 8, 3)
    pc = corners @ w2c[:3, :3].T + w2c[:3, 3]
    x, y, z = pc[..., 0], pc[..., 1], pc[..., 2]
    # float32 rounding of the renderer's own projection, as a distance in camera space
    slack = 1e-5 * (pc.abs().sum(-1) + float(w2c[:3, 3].abs().sum()) + 1.0)
    m = 0.25  # px
    behind = (z < near - slack).all(1)
    left = (cam.fx * x + (cam.cx + m) * z < -cam.fx * slack).all(1)
    right = (cam.fx * x + (cam.cx - cam.width - m) * z > cam.fx * slack).all(1)
    top = (cam.fy * y + (cam.cy + m) * z < -cam.fy * slack).all(1)
    bottom = (cam.fy * y + (cam.cy - cam.height - m) * z > cam.fy * slack).all(1)
    keep = ~(behind | left | right | top | bottom)
    s, e = starts.cpu()[keep], ends.cpu()[keep]
    if s.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.int64)
    new = torch.ones(s.numel(), dtype=torch.bool)
    new[1:] = s[1:] != e[:-1]
    first = new.nonzero().squeeze(1)
    last = torch.cat([first[1:] - 1, torch.tensor([s.numel() - 1])])
    return torch.stack([s[first], e[last]], 1)


def _ranges_index(ranges: torch.Tensor, device: torch.device) -> torch.Tensor:
    if ranges.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    return torch.cat([torch.arange(int(a), int(b), device=device) for a, b in ranges.tolist()])


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, cam: Camera, near: float = 1e-3,
              cull_backfaces: bool = False, chunk: int = 1 << 21, backend: Backend = "auto",
              ranges: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterise a triangle mesh into ``cam``.

    Args:
        vertices: ``(N, 3)`` float32 world coordinates. faces: ``(M, 3)`` int64.
        near: faces with any vertex at z-depth <= ``near`` are dropped.
        cull_backfaces: drop faces that are clockwise in the image (see :mod:`scenescape.geometry.triangulate`).
        chunk: candidate pixels processed per step (memory bound; torch backend).
        backend: ``"torch"`` (the reference: batched tensor code, CPU or CUDA), ``"numba"`` (a compiled CPU
            loop with the same arithmetic: identical outputs, several times faster) or ``"auto"`` (numba for
            CPU tensors when it is installed, else torch).
        ranges: optional ``(R, 2)`` int64 ``[start, end)`` face ranges to consider (e.g. from
            :func:`frustum_ranges`); faces outside them are skipped. Face indices in the output stay those of
            ``faces``.

    Returns:
        ``face_index`` ``(H, W)`` int64 (-1 empty), ``bary`` ``(H, W, 3)`` perspective-correct barycentrics,
        ``depth`` ``(H, W)`` z-depth (0 empty).
    """
    face_index, bary, depth, _ = _raster(vertices, faces, cam, near, cull_backfaces, chunk, backend, ranges, None)
    return face_index, bary, depth


def _raster(vertices: torch.Tensor, faces: torch.Tensor, cam: Camera, near: float, cull_backfaces: bool,
            chunk: int, backend: str, ranges: torch.Tensor | None, colors: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`rasterize`, plus the interpolated ``(H*W, 3)`` colour of the covered pixels when ``colors``."""
    h, w = cam.height, cam.width
    device = vertices.device
    backend = _resolve_backend(backend)
    if backend == "numba" and device.type != "cpu":
        backend = "torch"  # a compiled CPU loop cannot read device memory; torch is the same computation
    verts = vertices.float()
    if faces.numel() == 0 or (ranges is not None and ranges.numel() == 0):
        return (torch.full((h, w), -1, dtype=torch.int64, device=device),
                torch.zeros(h, w, 3, device=device), torch.zeros(h, w, device=device),
                None if colors is None else torch.zeros(h * w, 3, device=device))
    if backend == "numba":
        return _raster_numba(verts, faces, cam, near, cull_backfaces, ranges, colors)
    else:
        sub = faces
        fsel = None
        if ranges is not None:
            fsel = _ranges_index(ranges, device)
            sub = faces.index_select(0, fsel)
        u, v, z = project_vertices(verts, cam, near)
        setup = _FaceSetup(u, v, z, sub, w, h, near, cull_backfaces)
        keys = _rasterize_keys(setup, w, h, chunk)
        if fsel is not None:
            hit = keys != _KEY_EMPTY
            keys[hit] = (keys[hit] & ~0xFFFFFFFF) | fsel.index_select(0, keys[hit] & 0xFFFFFFFF)
    covered = keys != _KEY_EMPTY
    pix = covered.nonzero().squeeze(1)
    face = keys.index_select(0, pix) & 0xFFFFFFFF
    p = pix.numel()
    fv = faces.index_select(0, face)  # (P, 3)
    # project only the winning faces' vertices (element-wise: the same values as projecting all)
    uf, vf, zf = (a.view(p, 3) for a in project_vertices(verts.index_select(0, fv.reshape(-1)), cam, near))
    pu = (pix % w).float() + 0.5
    pv = torch.div(pix, w, rounding_mode="floor").float() + 0.5
    # sums written out in a fixed order (the compiled decode repeats them exactly)
    l0 = (uf[:, 2] - uf[:, 1]) * (pv - vf[:, 1]) - (vf[:, 2] - vf[:, 1]) * (pu - uf[:, 1])
    l1 = (uf[:, 0] - uf[:, 2]) * (pv - vf[:, 2]) - (vf[:, 0] - vf[:, 2]) * (pu - uf[:, 2])
    l2 = (uf[:, 1] - uf[:, 0]) * (pv - vf[:, 0]) - (vf[:, 1] - vf[:, 0]) * (pu - uf[:, 0])
    b = [l0 / zf[:, 0], l1 / zf[:, 1], l2 / zf[:, 2]]
    s = b[0] + b[1] + b[2]
    b = [(x / s).clamp(0.0, 1.0) for x in b]
    s = b[0] + b[1] + b[2]
    b = [x / s for x in b]
    depth_p = b[0] * zf[:, 0] + b[1] * zf[:, 1] + b[2] * zf[:, 2]  # perspective-correct: z is linear in them
    bary_p = torch.stack(b, dim=1)
    face_index = torch.full((h * w,), -1, dtype=torch.int64, device=device).index_copy_(0, pix, face)
    bary = torch.zeros(h * w, 3, device=device).index_copy_(0, pix, bary_p)
    depth = torch.zeros(h * w, device=device).index_copy_(0, pix, depth_p)
    rgb = None
    if colors is not None:
        cols = colors.float().index_select(0, fv.reshape(-1)).view(p, 3, 3)
        rgb_p = cols[:, 0] * b[0][:, None] + cols[:, 1] * b[1][:, None] + cols[:, 2] * b[2][:, None]
        rgb = torch.zeros(h * w, 3, device=device).index_copy_(0, pix, rgb_p)
    return face_index.view(h, w), bary.view(h, w, 3), depth.view(h, w), rgb


_PARALLEL_FACES = 200_000  # kept faces from which the compiled z-buffer may split its work over threads
RENDER_THREADS_ENV = "SCENESCAPE_RENDER_THREADS"


def _render_threads() -> int:
    """Threads for the compiled z-buffer, decode and projection: ``SCENESCAPE_RENDER_THREADS`` (default 1;
    0 = numba's thread count, ``NUMBA_NUM_THREADS``). The output is the same for any count. One by default:
    on a machine shared with other jobs (or a pipeline that already runs one process per core) an even split
    waits for the slowest thread and was measured slower than one thread."""
    import os

    import numba

    try:
        n = int(os.environ.get(RENDER_THREADS_ENV, "1"))
    except ValueError as e:
        raise InputError(f"{RENDER_THREADS_ENV} must be an integer (0 = numba's thread count), got "
                         f"{os.environ[RENDER_THREADS_ENV]!r}") from e
    if n == 1:
        return 1
    # the configured count: numba.get_num_threads() would start numba's thread pool, whose OpenMP layer also
    # resets the OpenMP thread count of torch in the same process
    most = int(numba.config.NUMBA_NUM_THREADS)
    return most if n <= 0 else min(n, most)


def _split_ranges(ranges: Any, parts: int) -> Any:
    """``(R, 2)`` int64 face ranges -> ``(parts, R', 2)``: ``parts`` sets of ranges with (nearly) equal face
    counts covering the same faces, padded with empty ranges."""
    import numpy as np

    counts = ranges[:, 1] - ranges[:, 0]
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    out = []
    for k in range(parts):
        a, b = total * k // parts, total * (k + 1) // parts  # this part's share, in kept-face positions
        rows = []
        for r in range(ranges.shape[0]):
            s0 = int(ends[r] - counts[r])
            lo, hi = max(a, s0), min(b, int(ends[r]))
            if lo < hi:
                rows.append((int(ranges[r, 0]) + lo - s0, int(ranges[r, 0]) + hi - s0))
        out.append(rows)
    width = max(1, max(len(x) for x in out))
    arr = np.zeros((parts, width, 2), np.int64)
    for k, rows in enumerate(out):
        if rows:
            arr[k, :len(rows)] = rows
    return arr


def _raster_numba(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, near: float, cull_backfaces: bool,
                  ranges: torch.Tensor | None, colors: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    import numpy as np

    from scenescape.geometry._zbuffer_numba import (
        decode,
        decode_parts,
        project_all,
        project_all_parts,
        project_used,
        zbuffer,
        zbuffer_parts,
    )

    h, w = cam.height, cam.width
    rot, t = _pose(cam, torch.device("cpu"))
    if ranges is None:
        ranges = torch.tensor([[0, faces.shape[0]]], dtype=torch.int64)
    f32 = np.float32
    vn, fn = verts.contiguous().numpy(), faces.contiguous().numpy()
    rn, tn = rot.contiguous().numpy(), t.contiguous().numpy()
    intr = (f32(cam.fx), f32(cam.fy), f32(cam.cx), f32(cam.cy), f32(near))
    n = vn.shape[0]
    rg = ranges.contiguous().numpy()
    # vertex projections: all at once (a vectorised pass) when the kept faces use most vertices (a vertex is
    # shared by about six faces), else each on first use, so that the cost follows the visible part
    lazy = 3 * int((rg[:, 1] - rg[:, 0]).sum()) < n
    pu, pv = np.empty(n, np.float32), np.empty(n, np.float32)
    pz = np.full(n, np.nan, np.float32) if lazy else np.empty(n, np.float32)
    # threads: only for large renders; face sets: one per thread, at most 8 and at most 64 MiB of buffers
    nt = min(_render_threads(), 8, max(1, (1 << 26) // (12 * h * w)))
    if int((rg[:, 1] - rg[:, 0]).sum()) < _PARALLEL_FACES:
        nt = 1
    if lazy:
        project_used(vn, fn, rg, rn, tn, *intr, pu, pv, pz)
    elif nt > 1:
        project_all_parts(vn, rn, tn, *intr, pu, pv, pz, nt)
    else:
        project_all(vn, rn, tn, *intr, pu, pv, pz)
    if nt > 1:
        # one z-buffer per thread over an equal share of the faces, merged (the same result, see zbuffer_parts)
        parts = _split_ranges(rg, nt)
        zbufs = np.full((nt, h * w), np.inf, np.float32)
        fbufs = np.full((nt, h * w), -1, np.int64)
        zbuffer_parts(vn, fn, parts, rn, tn, *intr, int(w), int(h), bool(cull_backfaces), zbufs, fbufs, pu, pv, pz)
        fbuf = fbufs[0]
    else:
        zbuf = np.full(h * w, np.inf, np.float32)
        fbuf = np.full(h * w, -1, np.int64)
        zbuffer(vn, fn, rg, rn, tn, *intr, int(w), int(h), bool(cull_backfaces), zbuf, fbuf, pu, pv, pz)
    bary = np.zeros((h * w, 3), np.float32)
    depth = np.zeros(h * w, np.float32)
    cn = np.zeros((0, 3), np.float32) if colors is None else colors.float().contiguous().numpy()
    rgb = np.zeros((h * w, 3), np.float32)
    if nt > 1:
        decode_parts(fbuf, fn, cn, pu, pv, pz, int(w), bary, depth, rgb, nt)
    else:
        decode(fbuf, fn, cn, pu, pv, pz, int(w), 0, bary, depth, rgb)
    return (torch.from_numpy(fbuf).view(h, w), torch.from_numpy(bary).view(h, w, 3), torch.from_numpy(depth).view(h, w),
            None if colors is None else torch.from_numpy(rgb))


def _masked_downsample(x: torch.Tensor, cov: torch.Tensor, s: int) -> torch.Tensor:
    h, w = cov.shape[0] // s, cov.shape[1] // s
    c = cov.view(h, s, w, s).float()
    cnt = c.sum(dim=(1, 3))
    if x.dim() == 2:
        tot = (x.view(h, s, w, s) * c).sum(dim=(1, 3))
        return torch.where(cnt > 0, tot / cnt.clamp_min(1), torch.zeros_like(tot))
    tot = (x.view(h, s, w, s, -1) * c[..., None]).sum(dim=(1, 3))
    return torch.where(cnt[..., None] > 0, tot / cnt.clamp_min(1)[..., None], torch.zeros_like(tot))


def render_mesh(mesh: Any, cam: Camera, supersample: int = 1, background: Any = None, backend: str = "auto",
                near: float = 1e-3, cull_backfaces: bool = False, coverage: str = "any",
                chunk: int = 1 << 21, cull: bool = True) -> RenderOutput:
    """Render a vertex-coloured mesh into ``cam``.

    Args:
        mesh: a :class:`~scenescape.geometry.mesh.SceneMesh` (or anything with ``vertices`` ``(N, 3)``,
            ``faces`` ``(M, 3)``, ``colors`` ``(N, 3)`` tensors).
        cam: the camera (``H x W`` output).
        supersample: render at ``s x`` the resolution (``Camera.scaled``) and downsample by averaging only the
            covered sub-samples (masked downsampling).
        background: colour ``(3,)`` for empty pixels (default black).
        backend: ``"auto"`` (default: the compiled numba z-buffer for CPU meshes when numba is installed, else
            torch), ``"torch"`` (the pure-torch reference), ``"numba"`` (same outputs as torch, bit for bit) or
            ``"pytorch3d"`` (only where PyTorch3D is installed).
        near: faces with any vertex at z-depth <= ``near`` are dropped (no clipping).
        cull_backfaces: drop faces seen from behind (default: two-sided).
        coverage: with supersampling, a pixel is covered when ``"any"`` of its sub-samples is (default) or the
            ``"majority"`` are. image/depth average the covered sub-samples; face_index/bary come from the
            first covered sub-sample in row-major order.
        cull: skip the chunks of faces whose bounding box lies outside the view frustum (needs a mesh with
            ``face_chunks()``, as :class:`~scenescape.geometry.mesh.SceneMesh`); exact: the output is the same
            as without culling, only the cost follows what is visible.

    Returns:
        :class:`RenderOutput` with image ``(H, W, 3)``, depth ``(H, W)`` (0 where empty), mask ``(H, W)`` bool,
        face_index ``(H, W)`` int64 (-1 where empty), bary ``(H, W, 3)``.
    """
    s = int(supersample)
    if s < 1 or s != supersample:
        raise InputError(f"supersample must be a positive integer, got {supersample!r}")
    if coverage not in ("any", "majority"):
        raise InputError(f"coverage must be 'any' or 'majority', got {coverage!r}")
    if backend not in ("auto", "torch", "numba", "pytorch3d"):
        raise InputError(f"backend must be 'auto', 'torch', 'numba' or 'pytorch3d', got {backend!r}")
    verts, faces, colors = mesh.vertices, mesh.faces, mesh.colors
    device = verts.device
    rcam = cam.scaled(s) if s > 1 else cam
    if backend == "pytorch3d":
        face_index, bary, depth = _rasterize_pytorch3d(verts, faces, rcam, near, cull_backfaces)
    else:
        ranges = None
        if cull and hasattr(mesh, "face_chunks") and faces.shape[0] > 0:
            lo, hi, starts, ends = mesh.face_chunks()
            ranges = frustum_ranges(lo, hi, starts, ends, rcam, near)
        face_index, bary, depth, rgb_flat = _raster(verts, faces, rcam, near, cull_backfaces, chunk, backend, ranges,
                                                    colors)
    cov = face_index >= 0
    if backend == "pytorch3d":
        hw = rcam.height * rcam.width
        pix = cov.reshape(-1).nonzero().squeeze(1)
        fv = faces.index_select(0, face_index.reshape(-1).index_select(0, pix))  # (P, 3)
        cols = colors.float().index_select(0, fv.reshape(-1)).view(-1, 3, 3)
        rgb = (cols * bary.reshape(hw, 3).index_select(0, pix)[..., None]).sum(1)
        rgb_flat = torch.zeros(hw, 3, device=device).index_copy_(0, pix, rgb)
    image = rgb_flat.view(rcam.height, rcam.width, 3)
    if s > 1:
        h, w = cam.height, cam.width
        image = _masked_downsample(image, cov, s)
        depth = _masked_downsample(depth, cov, s)
        cnt = cov.view(h, s, w, s).sum(dim=(1, 3))
        first = cov.view(h, s, w, s).permute(0, 2, 1, 3).reshape(h, w, s * s).float().argmax(-1)
        fi_sub = face_index.view(h, s, w, s).permute(0, 2, 1, 3).reshape(h, w, s * s)
        b_sub = bary.view(h, s, w, s, 3).permute(0, 2, 1, 3, 4).reshape(h, w, s * s, 3)
        face_index = fi_sub.gather(-1, first[..., None]).squeeze(-1)
        bary = b_sub.gather(2, first[..., None, None].expand(h, w, 1, 3)).squeeze(2)
        cov = cnt > 0 if coverage == "any" else cnt * 2 > s * s
        face_index = torch.where(cov, face_index, -1)
        bary = torch.where(cov[..., None], bary, 0.0)
        depth = torch.where(cov, depth, 0.0)
    if background is not None:
        bg = torch.as_tensor(background, dtype=torch.float32, device=device).reshape(3)
        image = torch.where(cov[..., None], image, bg)
    elif s > 1:  # (at s = 1 the empty pixels are 0 already: the colours are written where covered only)
        image = torch.where(cov[..., None], image, 0.0)
    return RenderOutput(image=image.clamp(0, 1), depth=depth, mask=cov, face_index=face_index, bary=bary)


def _rasterize_pytorch3d(verts: torch.Tensor, faces: torch.Tensor, cam: Camera, near: float,
                         cull_backfaces: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
        from pytorch3d.structures import Meshes
    except ImportError as e:
        raise ImportError(
            "render_mesh(backend='pytorch3d') needs PyTorch3D, which is not installed "
            "(see https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md); "
            "use backend='torch' (the built-in rasteriser, same outputs)"
        ) from e
    h, w = cam.height, cam.width
    u, v, z = project_vertices(verts.float(), cam, near)
    # our own projection into PyTorch3D's NDC (+x left, +y up, shorter side spans [-1, 1]); z stays z-depth
    sc = 2.0 / min(h, w)
    ndc = torch.stack([-(u - w / 2) * sc, -(v - h / 2) * sc, z], dim=-1)
    zf = z[faces]
    fkeep = (zf > near).all(1)
    fid = fkeep.nonzero().squeeze(1)
    meshes = Meshes(verts=[ndc], faces=[faces[fid]])
    p2f, zbuf, bary, _ = rasterize_meshes(meshes, image_size=(h, w), faces_per_pixel=1, blur_radius=0.0,
                                          perspective_correct=True, cull_backfaces=cull_backfaces)
    p2f = p2f[0, ..., 0]
    face_index = torch.where(p2f >= 0, fid[p2f.clamp_min(0)], -1)
    return face_index, bary[0, :, :, 0, :].float(), torch.where(p2f >= 0, zbuf[0, ..., 0], 0.0).float()
