"""Compiled z-buffer (numba): the torch rasteriser's arithmetic, fused into one loop per face.

Every quantity is computed in float32 with the same operations in the same order as
:mod:`scenescape.geometry.raster`'s torch path (vertex projection, pixel-centre bounding box, canonical
edge functions, inclusive edges with the same tolerance, ``1 / z`` from the edge functions), and the
z-test keeps the smallest ``(depth, face index)`` pair, which is the order of the torch path's int64
keys. So both paths select the same face at every pixel with the same float32 depth: the tests compare
them for equality. Faces are visited only in the ``ranges`` given (the chunks frustum culling kept), and
a face's three vertices are projected where the face is visited, so the cost follows the visible part of
the mesh, not its size.

Imported only when numba is installed (``pip install scenescape[fast]``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def zbuffer(verts, faces, ranges, rot, trans, fx, fy, cx, cy, near, width, height, cull_back,
            zbuf, fbuf):  # pragma: no cover - compiled
    """Fill ``zbuf`` ``(H*W,)`` float32 and ``fbuf`` ``(H*W,)`` int64 (-1 empty) for faces in ``ranges``.

    ``verts`` ``(N, 3)`` float32 world, ``faces`` ``(M, 3)`` int64, ``ranges`` ``(R, 2)`` int64 half-open
    face ranges, ``rot`` ``(3, 3)``/``trans`` ``(3,)`` float32 world-to-camera, intrinsics and ``near``
    float32 scalars.
    """
    f32 = np.float32
    half = f32(0.5)
    lo_off = f32(0.5 + 1e-4)
    hi_off = f32(0.5 - 1e-4)
    neg_eps = f32(-1e-4)
    one = f32(1.0)
    uu = np.empty(3, np.float32)
    vv = np.empty(3, np.float32)
    zz = np.empty(3, np.float32)
    su = np.empty(3, np.float32)
    sv = np.empty(3, np.float32)
    du = np.empty(3, np.float32)
    dv = np.empty(3, np.float32)
    osg = np.empty(3, np.float32)
    coef = np.empty(3, np.float32)
    tol = np.empty(3, np.float32)
    ea = (1, 2, 0)
    eb = (2, 0, 1)
    for r in range(ranges.shape[0]):
        for f in range(ranges[r, 0], ranges[r, 1]):
            zmin = np.inf
            for k in range(3):
                vi = faces[f, k]
                x = verts[vi, 0]
                y = verts[vi, 1]
                z = verts[vi, 2]
                pz = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z + trans[2]
                px = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z + trans[0]
                py = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z + trans[1]
                zs = pz if pz > near else near
                uu[k] = px / zs * fx + cx
                vv[k] = py / zs * fy + cy
                zz[k] = pz
                if pz < zmin:
                    zmin = pz
            if not zmin > near:
                continue
            umin = min(uu[0], min(uu[1], uu[2]))
            umax = max(uu[0], max(uu[1], uu[2]))
            vmin = min(vv[0], min(vv[1], vv[2]))
            vmax = max(vv[0], max(vv[1], vv[2]))
            j0f = np.ceil(umin - lo_off)
            j1f = np.floor(umax - hi_off)
            i0f = np.ceil(vmin - lo_off)
            i1f = np.floor(vmax - hi_off)
            if j1f < j0f or i1f < i0f or j1f < 0 or i1f < 0 or j0f > width - 1 or i0f > height - 1:
                continue
            area = (uu[1] - uu[0]) * (vv[2] - vv[0]) - (vv[1] - vv[0]) * (uu[2] - uu[0])
            if area == 0 or (cull_back and not area < 0):
                continue
            sgn = one if area > 0 else -one
            for k in range(3):
                a = ea[k]
                b = eb[k]
                if faces[f, a] > faces[f, b]:
                    su[k] = uu[b]
                    sv[k] = vv[b]
                    du[k] = uu[a] - uu[b]
                    dv[k] = vv[a] - vv[b]
                    es = -one
                else:
                    su[k] = uu[a]
                    sv[k] = vv[a]
                    du[k] = uu[b] - uu[a]
                    dv[k] = vv[b] - vv[a]
                    es = one
                osg[k] = es * sgn
                coef[k] = es / (zz[k] * area)
                tol[k] = neg_eps * np.float32(np.sqrt(du[k] * du[k] + dv[k] * dv[k]))
            j0 = int(max(j0f, 0.0))
            i0 = int(max(i0f, 0.0))
            j1 = int(min(j1f, width - 1.0))
            i1 = int(min(i1f, height - 1.0))
            for i in range(i0, i1 + 1):
                pv = f32(i) + half
                for j in range(j0, j1 + 1):
                    pu = f32(j) + half
                    inside = True
                    invz = f32(0.0)
                    for k in range(3):
                        ec = du[k] * (pv - sv[k]) - dv[k] * (pu - su[k])
                        if not ec * osg[k] >= tol[k]:
                            inside = False
                            break
                        t = ec * coef[k]
                        invz = t if k == 0 else invz + t
                    if not inside or not invz > 0:
                        continue
                    zp = one / invz
                    p = i * width + j
                    cur = fbuf[p]
                    if cur < 0 or zp < zbuf[p] or (zp == zbuf[p] and f < cur):
                        zbuf[p] = zp
                        fbuf[p] = f


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
def decode(fbuf, verts, faces, colors, rot, trans, fx, fy, cx, cy, near, width,
           bary, depth, rgb):  # pragma: no cover - compiled
    """Perspective-correct barycentrics, depth and colour of the winning face at each covered pixel.

    The same float32 operations, in the same order, as the torch path's decode in
    :func:`scenescape.geometry.raster._decode` and the colour sum of ``render_mesh``.
    """
    f32 = np.float32
    half = f32(0.5)
    zero = f32(0.0)
    one = f32(1.0)
    uu = np.empty(3, np.float32)
    vv = np.empty(3, np.float32)
    zz = np.empty(3, np.float32)
    for p in range(fbuf.shape[0]):
        f = fbuf[p]
        if f < 0:
            continue
        for k in range(3):
            vi = faces[f, k]
            x = verts[vi, 0]
            y = verts[vi, 1]
            z = verts[vi, 2]
            pz = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z + trans[2]
            px = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z + trans[0]
            py = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z + trans[1]
            zs = pz if pz > near else near
            uu[k] = px / zs * fx + cx
            vv[k] = py / zs * fy + cy
            zz[k] = pz
        pu = f32(p % width) + half
        pv = f32(p // width) + half
        l0 = (uu[2] - uu[1]) * (pv - vv[1]) - (vv[2] - vv[1]) * (pu - uu[1])
        l1 = (uu[0] - uu[2]) * (pv - vv[2]) - (vv[0] - vv[2]) * (pu - uu[2])
        l2 = (uu[1] - uu[0]) * (pv - vv[0]) - (vv[1] - vv[0]) * (pu - uu[0])
        b0 = l0 / zz[0]
        b1 = l1 / zz[1]
        b2 = l2 / zz[2]
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
        depth[p] = b0 * zz[0] + b1 * zz[1] + b2 * zz[2]
        if colors.shape[0] > 0:
            a = faces[f, 0]
            b = faces[f, 1]
            c = faces[f, 2]
            for ch in range(3):
                rgb[p, ch] = colors[a, ch] * b0 + colors[b, ch] * b1 + colors[c, ch] * b2
