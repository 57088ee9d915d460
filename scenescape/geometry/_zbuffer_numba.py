"""Compiled z-buffer (numba): the torch rasteriser's arithmetic, fused into one loop per face.

Every quantity is computed in float32 with the same operations in the same order as
:mod:`scenescape.geometry.raster`'s torch path (vertex projection, pixel-centre bounding box, canonical
edge functions, inclusive edges with the same tolerance, ``1 / z`` from the edge functions), and the
z-test keeps the smallest ``(depth, face index)`` pair, which is the order of the torch path's int64
keys. So both paths select the same face at every pixel with the same float32 depth: the tests compare
them for equality. Faces are visited only in the ``ranges`` given (the chunks frustum culling kept). Vertices
are projected once per render into caches that the z-buffer and the decode share: all of them in one
vectorised pass when the kept faces use most of them, else only those of the kept faces, so the cost follows
the visible part of the mesh, not its size.

Imported only when numba is installed (``pip install scenescape[fast]``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _project1(verts, vi, rot, trans, fx, fy, cx, cy, near):  # pragma: no cover - compiled
    """``(u, v, z)`` float32 of vertex ``vi``: :func:`scenescape.geometry.raster.project_vertices`'s arithmetic."""
    x = verts[vi, 0]
    y = verts[vi, 1]
    z = verts[vi, 2]
    qz = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z + trans[2]
    qx = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z + trans[0]
    qy = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z + trans[1]
    zs = qz if qz > near else near
    return qx / zs * fx + cx, qy / zs * fy + cy, qz


@njit(cache=True, nogil=True)
def project_all(verts, rot, trans, fx, fy, cx, cy, near, pu, pv, pz):  # pragma: no cover - compiled
    """Fill the projection caches ``pu``/``pv``/``pz`` ``(N,)`` for every vertex (a vectorised loop)."""
    for vi in range(verts.shape[0]):
        pu[vi], pv[vi], pz[vi] = _project1(verts, vi, rot, trans, fx, fy, cx, cy, near)


@njit(cache=True, nogil=True)
def project_used(verts, faces, ranges, rot, trans, fx, fy, cx, cy, near, pu, pv, pz):  # pragma: no cover - compiled
    """Fill the projection caches for the vertices of the faces in ``ranges`` only (``pz`` NaN on entry marks a
    vertex not projected yet; a vertex is shared by about six faces)."""
    for r in range(ranges.shape[0]):
        for f in range(ranges[r, 0], ranges[r, 1]):
            for k in range(3):
                vi = faces[f, k]
                if pz[vi] != pz[vi]:
                    pu[vi], pv[vi], pz[vi] = _project1(verts, vi, rot, trans, fx, fy, cx, cy, near)


@njit(cache=True, nogil=True)
def _edge(ua, va, ub, vb, ia, ib):  # pragma: no cover - compiled
    """Canonical edge ``(su, sv, du, dv, esign)``: from the lower-index vertex, so that two faces sharing the
    edge evaluate exactly opposite edge functions (``E_face = esign * E_canonical``)."""
    if ia > ib:
        return ub, vb, ua - ub, va - vb, np.float32(-1.0)
    return ua, va, ub - ua, vb - va, np.float32(1.0)


@njit(cache=True, nogil=True, inline="always")
def _face_projection(faces, pu, pv, pz, f):  # pragma: no cover - compiled
    """Vertex ids of face ``f`` and their projections: ``(a0, a1, a2, u0, u1, u2, v0, v1, v2, z0, z1, z2)``."""
    a0 = faces[f, 0]
    a1 = faces[f, 1]
    a2 = faces[f, 2]
    return a0, a1, a2, pu[a0], pu[a1], pu[a2], pv[a0], pv[a1], pv[a2], pz[a0], pz[a1], pz[a2]


@njit(cache=True, nogil=True)
def _inside(eo, du, dv):  # pragma: no cover - compiled
    """``eo >= tol`` with the inclusive tolerance ``tol = -1e-4 * |d|`` (<= 0: the square root is taken only
    for a pixel centre on the outer side of the edge line)."""
    if eo >= 0:
        return True
    return eo >= np.float32(-1e-4) * np.float32(np.sqrt(du * du + dv * dv))


@njit(cache=True, nogil=True)
def zbuffer(verts, faces, ranges, rot, trans, fx, fy, cx, cy, near, width, height, cull_back,
            zbuf, fbuf, pu, pv, pz):  # pragma: no cover - compiled
    """Fill ``zbuf`` ``(H*W,)`` float32 and ``fbuf`` ``(H*W,)`` int64 (-1 empty) for faces in ``ranges``.

    ``verts`` ``(N, 3)`` float32 world, ``faces`` ``(M, 3)`` int64, ``ranges`` ``(R, 2)`` int64 half-open
    face ranges, ``rot`` ``(3, 3)``/``trans`` ``(3,)`` float32 world-to-camera, intrinsics and ``near``
    float32 scalars. ``pu``, ``pv``, ``pz`` ``(N,)`` float32: the vertex projections (:func:`project_all` or
    :func:`project_used`).
    """
    f32 = np.float32
    half = f32(0.5)
    lo_off = f32(0.5 + 1e-4)
    hi_off = f32(0.5 - 1e-4)
    one = f32(1.0)
    wm1 = f32(width - 1)
    hm1 = f32(height - 1)
    for r in range(ranges.shape[0]):
        for f in range(ranges[r, 0], ranges[r, 1]):
            a0, a1, a2, u0, u1, u2, v0, v1, v2, z0, z1, z2 = _face_projection(faces, pu, pv, pz, f)
            # pixel j is a candidate when its centre j + 0.5 lies in [umin, umax]; one branch for all tests
            j0f = np.ceil(min(u0, min(u1, u2)) - lo_off)
            j1f = np.floor(max(u0, max(u1, u2)) - hi_off)
            i0f = np.ceil(min(v0, min(v1, v2)) - lo_off)
            i1f = np.floor(max(v0, max(v1, v2)) - hi_off)
            ok = (z0 > near) & (z1 > near) & (z2 > near) & (j1f >= j0f) & (i1f >= i0f) & (j1f >= 0) & (i1f >= 0)
            if not (ok & (j0f <= wm1) & (i0f <= hm1)):
                continue
            area = (u1 - u0) * (v2 - v0) - (v1 - v0) * (u2 - u0)
            if area == 0 or (cull_back and not area < 0):
                continue
            sgn = one if area > 0 else -one
            # edge k is opposite vertex k: (1, 2), (2, 0), (0, 1)
            su0, sv0, du0, dv0, es0 = _edge(u1, v1, u2, v2, a1, a2)
            su1, sv1, du1, dv1, es1 = _edge(u2, v2, u0, v0, a2, a0)
            su2, sv2, du2, dv2, es2 = _edge(u0, v0, u1, v1, a0, a1)
            os0 = es0 * sgn
            os1 = es1 * sgn
            os2 = es2 * sgn
            c0 = c1 = c2 = f32(0.0)
            have_coef = False
            j0 = int(max(j0f, 0.0))
            i0 = int(max(i0f, 0.0))
            j1 = int(min(j1f, wm1))
            i1 = int(min(i1f, hm1))
            for i in range(i0, i1 + 1):
                qv = f32(i) + half
                for j in range(j0, j1 + 1):
                    qu = f32(j) + half
                    e0 = du0 * (qv - sv0) - dv0 * (qu - su0)
                    if not _inside(e0 * os0, du0, dv0):
                        continue
                    e1 = du1 * (qv - sv1) - dv1 * (qu - su1)
                    if not _inside(e1 * os1, du1, dv1):
                        continue
                    e2 = du2 * (qv - sv2) - dv2 * (qu - su2)
                    if not _inside(e2 * os2, du2, dv2):
                        continue
                    if not have_coef:  # 1 / z = sum_k coef_k * E_canonical_k
                        c0 = es0 / (z0 * area)
                        c1 = es1 / (z1 * area)
                        c2 = es2 / (z2 * area)
                        have_coef = True
                    invz = e0 * c0 + e1 * c1
                    invz = invz + e2 * c2
                    if not invz > 0:
                        continue
                    zp = one / invz
                    p = i * width + j
                    cur = fbuf[p]
                    if cur < 0 or zp < zbuf[p] or (zp == zbuf[p] and f < cur):
                        zbuf[p] = zp
                        fbuf[p] = f


@njit(cache=True, nogil=True, parallel=True)
def zbuffer_parts(verts, faces, parts, rot, trans, fx, fy, cx, cy, near, width, height, cull_back,
                  zbufs, fbufs, pu, pv, pz):  # pragma: no cover - compiled
    """:func:`zbuffer` of ``P`` face sets at once, one per thread, merged into ``zbufs[0]``/``fbufs[0]``.

    ``parts`` ``(P, R, 2)`` int64: each part's face ranges (padded with empty ranges); ``zbufs`` ``(P, H*W)``
    float32 all inf and ``fbufs`` ``(P, H*W)`` int64 all -1 on entry. The merge keeps, per pixel, the smallest
    ``(depth, face index)`` pair of the parts, which is what one :func:`zbuffer` over all the faces keeps (the
    pair order is total), so the result does not depend on the split or on the threads.
    """
    for t in prange(parts.shape[0]):
        zbuffer(verts, faces, parts[t], rot, trans, fx, fy, cx, cy, near, width, height, cull_back,
                zbufs[t], fbufs[t], pu, pv, pz)
    for i in prange(height):
        for p in range(i * width, (i + 1) * width):
            z = zbufs[0, p]
            f = fbufs[0, p]
            for t in range(1, parts.shape[0]):
                ft = fbufs[t, p]
                if ft < 0:
                    continue
                zt = zbufs[t, p]
                if f < 0 or zt < z or (zt == z and ft < f):
                    z = zt
                    f = ft
            zbufs[0, p] = z
            fbufs[0, p] = f


@njit(cache=True, nogil=True)
def block_bounds(verts, faces, start, block, lo, hi):  # pragma: no cover - compiled
    """Axis-aligned bounds ``lo``/``hi`` ``(B, 3)`` of the vertices of faces ``[start + b*block, ...)``."""
    m = faces.shape[0]
    for b in range(lo.shape[0]):
        f0 = start + b * block
        f1 = min(f0 + block, m)
        for c in range(3):
            lo[b, c] = np.inf
            hi[b, c] = -np.inf
        for f in range(f0, f1):
            for k in range(3):
                vi = faces[f, k]
                for c in range(3):
                    x = verts[vi, c]
                    if x < lo[b, c]:
                        lo[b, c] = x
                    if x > hi[b, c]:
                        hi[b, c] = x


@njit(cache=True, nogil=True)
def decode(fbuf, faces, colors, pu, pv, pz, width, p0, bary, depth, rgb):  # pragma: no cover - compiled
    """Perspective-correct barycentrics, depth and colour of the winning face at each covered pixel.

    ``fbuf`` ``(P,)`` holds pixels ``p0 ... p0 + P - 1`` of the image (row-major, ``width`` wide) and ``bary``
    ``(P, 3)``, ``depth`` ``(P,)``, ``rgb`` ``(P, 3)`` receive them; ``pu``/``pv``/``pz`` are the vertex
    projections :func:`zbuffer` used. The same float32 operations, in the same order, as the torch path's decode in
    :func:`scenescape.geometry.raster._raster` and the colour sum of ``render_mesh``.
    """
    f32 = np.float32
    half = f32(0.5)
    zero = f32(0.0)
    one = f32(1.0)
    for p in range(fbuf.shape[0]):
        f = fbuf[p]
        if f < 0:
            continue
        a0, a1, a2, u0, u1, u2, v0, v1, v2, z0, z1, z2 = _face_projection(faces, pu, pv, pz, f)
        qu = f32((p0 + p) % width) + half
        qv = f32((p0 + p) // width) + half
        l0 = (u2 - u1) * (qv - v1) - (v2 - v1) * (qu - u1)
        l1 = (u0 - u2) * (qv - v2) - (v0 - v2) * (qu - u2)
        l2 = (u1 - u0) * (qv - v0) - (v1 - v0) * (qu - u0)
        b0 = l0 / z0
        b1 = l1 / z1
        b2 = l2 / z2
        s = b0 + b1 + b2
        b0 = min(max(b0 / s, zero), one)
        b1 = min(max(b1 / s, zero), one)
        b2 = min(max(b2 / s, zero), one)
        s = b0 + b1 + b2
        b0 = b0 / s
        b1 = b1 / s
        b2 = b2 / s
        bary[p, 0] = b0
        bary[p, 1] = b1
        bary[p, 2] = b2
        depth[p] = b0 * z0 + b1 * z1 + b2 * z2
        if colors.shape[0] > 0:
            for ch in range(3):
                rgb[p, ch] = colors[a0, ch] * b0 + colors[a1, ch] * b1 + colors[a2, ch] * b2


@njit(cache=True, nogil=True, parallel=True)
def project_all_parts(verts, rot, trans, fx, fy, cx, cy, near, pu, pv, pz, parts):  # pragma: no cover - compiled
    """:func:`project_all` split into ``parts`` slices of vertices over numba's threads."""
    n = verts.shape[0]
    for t in prange(parts):
        a = n * t // parts
        b = n * (t + 1) // parts
        project_all(verts[a:b], rot, trans, fx, fy, cx, cy, near, pu[a:b], pv[a:b], pz[a:b])


@njit(cache=True, nogil=True, parallel=True)
def decode_parts(fbuf, faces, colors, pu, pv, pz, width, bary, depth, rgb, parts):  # pragma: no cover - compiled
    """:func:`decode` split into ``parts`` bands of pixels over numba's threads (pixels are independent)."""
    n = fbuf.shape[0]
    for t in prange(parts):
        a = n * t // parts
        b = n * (t + 1) // parts
        decode(fbuf[a:b], faces, colors, pu, pv, pz, width, a, bary[a:b], depth[a:b], rgb[a:b])
