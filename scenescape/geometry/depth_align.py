"""Aligning new depth to known geometry: robust scale-and-shift fit, seam correction, harmonic fill.

A monocular depth model predicts depth (or disparity) only up to an unknown scale and shift. The
pipeline renders the existing mesh into the new view, so on the *known* pixels the true z-depth is
available; this module:

1. :func:`align_depth` fits ``scale * pred + shift`` to the known depth (or to the known disparity,
   ``1 / depth``) with iteratively reweighted least squares (Huber weights, then trimming of the
   worst residuals), and returns an aligned z-depth for the whole image;
2. :func:`seam_correction` computes a smooth multiplicative correction inside the new region so the
   new depth meets the old depth at the seam without a step: ``log(known / aligned)`` on the seam
   pixels is the Dirichlet boundary condition of a Laplace equation solved inside the new region
   (seam pixels where the two surfaces are far apart - a real depth edge, such as a disoccluded
   background next to its occluder - are left free, so no rubber sheet is pulled across the edge);
3. :func:`blend_to_known` puts the two together: known pixels keep the known depth exactly, new
   pixels get the aligned, seam-corrected depth.

:func:`harmonic_fill` is the sparse (edge-weighted) Laplace solver used by the seam correction and
by the classical depth completion backend. It runs on the CPU: conjugate gradients preconditioned by
algebraic multigrid (``pyamg``) beyond a few thousand unknowns, so the time grows about linearly with
the unknowns (a full 512x512 frame of new pixels in about a second), a direct sparse solve below.

All arrays: depth ``(H, W)`` float z-depth, masks ``(H, W)`` bool; inputs may be numpy or torch,
outputs are float32 torch tensors on the input's device. Returned depth is always finite and > 0.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch

from scenescape.errors import InputError

Space = Literal["depth", "disparity"]

_MIN_KNOWN = 16  # fewer known pixels than this cannot fix a scale and a shift


def _np(x: Any, dtype: Any = np.float64) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _check_pair(pred: Any, known_depth: Any, known_mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = _np(pred)
    k = _np(known_depth)
    m = _np(known_mask, bool)
    if p.ndim != 2:
        raise InputError(f"pred must be a (H, W) depth or disparity map, got shape {p.shape}")
    if k.shape != p.shape or m.shape != p.shape:
        raise InputError(
            f"pred {p.shape}, known_depth {k.shape} and known_mask {m.shape} must all have the same (H, W) shape"
        )
    return p, k, m


def robust_affine_fit(x: np.ndarray, y: np.ndarray, iters: int = 10, huber: float = 1.345,
                      trim: float = 0.1) -> tuple[float, float]:
    """Fit ``y ~ scale * x + shift`` robustly; returns ``(scale, shift)``.

    Ordinary least squares, then IRLS with Huber weights (threshold ``huber`` x a robust sigma from
    the median absolute deviation), then one refit with the ``trim`` fraction of largest residuals
    dropped. ``x``, ``y``: 1-D arrays of the same length (>= 2).
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.size != y.size or x.size < 2:
        raise InputError(f"robust_affine_fit needs two arrays of equal length >= 2, got {x.size} and {y.size}")
    w = np.ones_like(x)

    def solve(weights: np.ndarray) -> tuple[float, float]:
        sw = weights.sum()
        if sw <= 0:
            return 1.0, 0.0
        mx = (weights * x).sum() / sw
        my = (weights * y).sum() / sw
        vx = (weights * (x - mx) ** 2).sum()
        if vx <= 1e-18 * max(sw, 1.0):  # x constant: shift only
            return 1.0, float(my - mx)
        s = (weights * (x - mx) * (y - my)).sum() / vx
        return float(s), float(my - s * mx)

    s, t = solve(w)
    for _ in range(iters):
        r = y - (s * x + t)
        sigma = 1.4826 * np.median(np.abs(r - np.median(r)))
        if sigma <= 1e-12 * (np.abs(y).mean() + 1e-12):
            break
        a = np.abs(r) / (huber * sigma)
        w = np.where(a <= 1.0, 1.0, 1.0 / np.maximum(a, 1e-12))
        s_new, t_new = solve(w)
        done = abs(s_new - s) <= 1e-9 * (abs(s) + 1e-12) and abs(t_new - t) <= 1e-9 * (abs(t) + 1e-12)
        s, t = s_new, t_new
        if done:
            break
    if trim > 0 and x.size >= 20:
        r = np.abs(y - (s * x + t))
        keep = r <= np.quantile(r, 1.0 - trim)
        if keep.sum() >= 2:
            s, t = solve(keep.astype(np.float64) * w)
    return s, t


def align_depth(pred: Any, known_depth: Any, known_mask: Any, space: Space = "depth", *,
                iters: int = 10, trim: float = 0.1, min_depth: float | None = None,
                max_depth: float | None = None) -> tuple[torch.Tensor, float, float]:
    """Fit a predicted depth or disparity to the known depth on the known pixels.

    Args:
        pred: ``(H, W)`` prediction: z-depth when ``space="depth"``, disparity (``~ 1/depth``, any
            scale) when ``space="disparity"``.
        known_depth: ``(H, W)`` z-depth of the existing geometry (valid where ``known_mask``).
        known_mask: ``(H, W)`` bool, True where ``known_depth`` is valid (> 0 is also required).
        space: where the affine model ``scale * pred + shift`` is fitted: against ``known_depth`` or
            against ``1 / known_depth``.
        min_depth, max_depth: clamp of the result (default: 0.5 x the smallest and 2 x the largest
            known depth, widened to the prediction's own range in depth space).

    Returns:
        ``(aligned, scale, shift)``: ``aligned`` ``(H, W)`` float32 z-depth for every pixel, finite
        and > 0; ``scale``, ``shift`` the fitted parameters (in ``space``).

    With fewer than 16 known pixels the scale and shift cannot be fitted; a ``ValueError`` says so.
    """
    p, k, m = _check_pair(pred, known_depth, known_mask)
    if space not in ("depth", "disparity"):
        raise InputError(f"space must be 'depth' or 'disparity', got {space!r}")
    m = m & np.isfinite(k) & (k > 0) & np.isfinite(p)
    if m.sum() < _MIN_KNOWN:
        raise InputError(f"align_depth needs at least {_MIN_KNOWN} known pixels, got {int(m.sum())}")
    if not np.isfinite(p).all():
        raise InputError("pred contains NaN or infinite values")
    target = k[m] if space == "depth" else 1.0 / k[m]
    scale, shift = robust_affine_fit(p[m], target, iters=iters, trim=trim)
    val = scale * p + shift
    kmin, kmax = float(k[m].min()), float(k[m].max())
    lo = 0.5 * kmin if min_depth is None else float(min_depth)
    hi = max(2.0 * kmax, 10.0 * kmax) if max_depth is None else float(max_depth)
    if lo <= 0 or hi <= lo:
        raise InputError(f"min_depth/max_depth must satisfy 0 < min_depth < max_depth, got {lo}, {hi}")
    if space == "depth":
        depth = val
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(val > 0, 1.0 / np.maximum(val, 1e-30), hi)
    depth = np.clip(np.nan_to_num(depth, nan=hi, posinf=hi, neginf=lo), lo, hi)
    dev = known_depth.device if torch.is_tensor(known_depth) else None
    return torch.as_tensor(depth, dtype=torch.float32, device=dev), float(scale), float(shift)


# ---------------------------------------------------------------------------------------------
# Sparse Laplace / harmonic solver
# ---------------------------------------------------------------------------------------------

def edge_weights(image: Any, sigma: float = 0.1, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Edge-aware neighbour weights from a guide image.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` guide in [0, 1].
        sigma: colour difference at which the weight falls to ``exp(-1/2)``.

    Returns:
        ``(wh, wv)``: ``(H, W-1)`` weights between horizontal neighbours and ``(H-1, W)`` between
        vertical neighbours, ``exp(-|I_p - I_q|^2 / (2 sigma^2)) + floor``.
    """
    g = _np(image, np.float64)
    if g.ndim == 2:
        g = g[..., None]
    dh = ((g[:, 1:] - g[:, :-1]) ** 2).sum(-1)
    dv = ((g[1:] - g[:-1]) ** 2).sum(-1)
    s2 = 2.0 * sigma * sigma
    return np.exp(-dh / s2) + floor, np.exp(-dv / s2) + floor


Solver = Literal["auto", "amg", "direct"]

_DIRECT_MAX = 4096  # "auto": a direct solve up to this many unknowns (fast and exact there), AMG beyond


def harmonic_fill(values: Any, fixed: Any, region: Any = None, weights: tuple[np.ndarray, np.ndarray] | None = None,
                  default: float | None = None, *, solver: Solver = "auto", tol: float = 1e-8,
                  maxiter: int = 400) -> np.ndarray:
    """Solve the (weighted) Laplace equation for the unknown pixels.

    Args:
        values: ``(H, W)`` values; read only where ``fixed`` (Dirichlet data).
        fixed: ``(H, W)`` bool, the Dirichlet pixels.
        region: ``(H, W)`` bool, the unknown pixels to solve for (default ``~fixed``). Pixels that are
            neither fixed nor in ``region`` are walls (Neumann: no flux).
        weights: ``(wh, wv)`` edge weights from :func:`edge_weights` (default uniform).
        default: value given to a connected part of ``region`` that touches no Dirichlet pixel (it has
            no boundary data; every harmonic function with only walls around it is a constant);
            default the mean of the fixed values, or 0.
        solver: ``"amg"``: conjugate gradients preconditioned by classical (Ruge-Stueben) algebraic
            multigrid (``pyamg``), whose time grows about linearly with the unknowns; ``"direct"``:
            a sparse LU solve (SuperLU), exact but with a fill-in that explodes on large regions of
            any shape (a full 512x512 frame does not finish in minutes); ``"auto"`` (default): direct
            up to 4,096 unknowns, AMG beyond.
        tol: AMG: stop when the residual is ``tol`` x that of the zero guess (the default 1e-8 agrees
            with the direct solve to about 1e-8 of the data's range; 1e-6 to 1e-6).
        maxiter: AMG: most conjugate-gradient iterations (a ``RuntimeWarning`` names the residual
            reached if they run out; a weighted Laplacian converges in 10-80).

    Returns:
        ``(H, W)`` float64 array: ``values`` on ``fixed``, the solution on ``region``, 0 elsewhere.
        The solution is a weighted average of the boundary data (maximum principle), so it never
        leaves the range of the Dirichlet values it touches.
    """
    import scipy.sparse as sp
    from scipy import ndimage

    if solver not in ("auto", "amg", "direct"):
        raise InputError(f"solver must be 'auto', 'amg' or 'direct', got {solver!r}")
    v = _np(values, np.float64)
    fx = _np(fixed, bool)
    if v.ndim != 2 or fx.shape != v.shape:
        raise InputError(f"values {v.shape} and fixed {fx.shape} must be (H, W) arrays of the same shape")
    rg = ~fx if region is None else (_np(region, bool) & ~fx)
    if rg.shape != v.shape:
        raise InputError(f"region has shape {rg.shape}, expected {v.shape}")
    h, w = v.shape
    if weights is None:
        wh = np.ones((h, w - 1))
        wv = np.ones((h - 1, w))
    else:
        wh, wv = (np.asarray(a, np.float64) for a in weights)
        if wh.shape != (h, w - 1) or wv.shape != (h - 1, w):
            raise InputError(f"weights must have shapes {(h, w - 1)} and {(h - 1, w)}, got {wh.shape}, {wv.shape}")
    out = np.where(fx, v, 0.0)
    if not rg.any():
        return out
    if default is None:
        default = float(v[fx].mean()) if fx.any() else 0.0
    # Components of the region that touch no Dirichlet pixel have no boundary data: their harmonic
    # function is a constant, ``default`` (the limit of any small pull towards it); only the rest is
    # solved, so the system is symmetric positive definite.
    labels, nlab = ndimage.label(rg)
    touching = np.zeros(nlab + 1, bool)
    touching[labels[_boundary(fx) & rg]] = True
    touching[0] = False
    free = rg & ~touching[labels]
    out[free] = default
    rg = rg & ~free
    n = int(rg.sum())
    if n == 0:
        return out
    idx = np.full((h, w), -1, np.int64)
    idx[rg] = np.arange(n)
    diag = np.zeros(n)
    rhs = np.zeros(n)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for a_idx, b_idx, a_fx, b_fx, a_v, b_v, wt in (
        (idx[:, :-1], idx[:, 1:], fx[:, :-1], fx[:, 1:], v[:, :-1], v[:, 1:], wh),
        (idx[:-1], idx[1:], fx[:-1], fx[1:], v[:-1], v[1:], wv),
    ):
        a_u, b_u = a_idx >= 0, b_idx >= 0
        both = a_u & b_u
        ai, bi, ww = a_idx[both], b_idx[both], wt[both]
        diag += np.bincount(ai, ww, n) + np.bincount(bi, ww, n)
        rows += [ai, bi]
        cols += [bi, ai]
        data += [-ww, -ww]
        for u_sel, u_idx, f_v in ((a_u & b_fx, a_idx, b_v), (b_u & a_fx, b_idx, a_v)):  # unknown next to Dirichlet
            ui, wf = u_idx[u_sel], wt[u_sel]
            diag += np.bincount(ui, wf, n)
            rhs += np.bincount(ui, wf * f_v[u_sel], n)
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    data.append(diag)
    mat = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    if solver == "direct" or (solver == "auto" and n <= _DIRECT_MAX):
        import scipy.sparse.linalg as spla

        sol = spla.spsolve(mat.tocsc(), rhs, permc_spec="MMD_AT_PLUS_A")
    else:
        sol = _amg_solve(mat, rhs, tol, maxiter)
    out[rg] = sol
    return out


def _amg_solve(mat: Any, rhs: np.ndarray, tol: float, maxiter: int) -> np.ndarray:
    """CG preconditioned by a Ruge-Stueben AMG V-cycle on the SPD M-matrix ``mat``."""
    import warnings

    import pyamg

    ml = pyamg.ruge_stuben_solver(mat, max_coarse=100, coarse_solver="splu")
    res: list[float] = []
    sol = ml.solve(rhs, tol=tol, accel="cg", maxiter=maxiter, residuals=res)
    if res and res[0] > 0 and res[-1] > 10 * tol * res[0]:
        warnings.warn(f"harmonic_fill: AMG-CG stopped after {len(res) - 1} iterations at a relative residual "
                      f"of {res[-1] / res[0]:.1e} (asked {tol:.0e}); pass a larger maxiter or solver='direct'",
                      RuntimeWarning, stacklevel=3)
    return np.asarray(sol, np.float64)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels outside ``mask`` with a 4-neighbour inside it."""
    nb = np.zeros_like(mask)
    nb[1:] |= mask[:-1]
    nb[:-1] |= mask[1:]
    nb[:, 1:] |= mask[:, :-1]
    nb[:, :-1] |= mask[:, 1:]
    return nb & ~mask


def seam_correction(aligned: Any, known_depth: Any, known_mask: Any, new_mask: Any, *,
                    max_step: float = 0.1, adaptive: bool = True, min_step: float = 0.005,
                    weights: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Smooth multiplicative correction that makes ``aligned`` meet ``known_depth`` at the seam.

    On the seam (known pixels 4-adjacent to ``new_mask``) the log-ratio ``r = log(known / aligned)``
    is taken as Dirichlet data where ``|r|`` is small (see ``max_step``, ``adaptive``); seam pixels with a larger jump are
    a real depth edge (an occluder in front of newly seen background) and are left free. The
    correction ``c`` solves Laplace's equation inside ``new_mask`` and is 0 outside it.

    Args:
        aligned: ``(H, W)`` aligned new depth (> 0).
        known_depth, known_mask: ``(H, W)`` existing depth and where it is valid.
        new_mask: ``(H, W)`` bool, the pixels whose depth is new.
        max_step: relative depth jump above which a seam pixel counts as a depth edge.
        adaptive: also treat as a depth edge a seam mismatch beyond 4 robust sigmas (1.4826 MAD) of
            the log-ratio over all known pixels (never below ``min_step``): with an exact prediction
            (sigma ~ 0) only tiny mismatches are smoothed away, with a rough one larger ones are.

    Returns:
        ``(H, W)`` float32 factor ``exp(c)`` (1 outside ``new_mask``); multiply ``aligned`` by it.
    """
    a, k, km = _check_pair(aligned, known_depth, known_mask)
    nm = _np(new_mask, bool)
    if nm.shape != a.shape:
        raise InputError(f"new_mask has shape {nm.shape}, expected {a.shape}")
    km = km & ~nm & (k > 0) & np.isfinite(k)
    seam = _boundary(nm) & km
    factor = np.ones_like(a)
    if seam.any() and nm.any():
        r = np.zeros_like(a)
        r[km] = np.log(k[km] / np.maximum(a[km], 1e-12))
        tol = math.log1p(max_step)
        if adaptive:
            # how well the aligned depth fits the known depth overall (robust sigma of the log-ratio):
            # a seam mismatch far beyond that is a depth edge, not an alignment error
            rk = r[km]
            sigma = 1.4826 * float(np.median(np.abs(rk - np.median(rk))))
            tol = min(tol, max(4.0 * sigma, math.log1p(min_step)))
        fixed = seam & (np.abs(r) <= tol)
        if fixed.any() and np.abs(r[fixed]).max() > 1e-7:
            c = harmonic_fill(r, fixed, region=nm, weights=weights, default=0.0)
            factor[nm] = np.exp(c[nm])
    dev = aligned.device if torch.is_tensor(aligned) else None
    return torch.as_tensor(factor, dtype=torch.float32, device=dev)


def blend_to_known(aligned: Any, known_depth: Any, known_mask: Any, new_mask: Any, *, seam: bool = True,
                   max_step: float = 0.1, weights: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Final depth for a frame: known depth exactly where known, aligned (+ seam correction) elsewhere.

    Args:
        aligned: ``(H, W)`` aligned depth for the whole image (from :func:`align_depth`).
        known_depth, known_mask: ``(H, W)`` rendered depth of the existing geometry and its validity.
        new_mask: ``(H, W)`` bool, pixels that get new depth (the inpainted region). Known pixels
            inside ``new_mask`` take the new depth too (the mask wins).
        seam: apply :func:`seam_correction`.

    Returns:
        ``(H, W)`` float32 z-depth, finite and > 0 everywhere. Raises ``ValueError`` if ``aligned``
        is not finite and > 0 where it is used.
    """
    a, k, km = _check_pair(aligned, known_depth, known_mask)
    nm = _np(new_mask, bool)
    use_known = km & ~nm & (k > 0) & np.isfinite(k)
    use_new = ~use_known
    if not (np.isfinite(a[use_new]).all() and (a[use_new] > 0).all()):
        raise InputError("aligned depth must be finite and > 0 on the new pixels")
    out = np.where(use_known, k, a)
    if seam:
        f = seam_correction(a, k, use_known, use_new, max_step=max_step, weights=weights).numpy().astype(np.float64)
        out = np.where(use_new, a * f, out)
    if not (np.isfinite(out).all() and (out > 0).all()):  # pragma: no cover - guarded above
        raise InputError("blend_to_known produced a non-finite or non-positive depth")
    dev = aligned.device if torch.is_tensor(aligned) else None
    return torch.as_tensor(out, dtype=torch.float32, device=dev)


__all__ = [
    "align_depth", "blend_to_known", "edge_weights", "harmonic_fill", "robust_affine_fit", "seam_correction",
]
