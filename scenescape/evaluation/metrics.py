"""Scoring a mesh against a synthetic world's ground truth at held-out cameras."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from scenescape.evaluation.worlds import World, make_world
from scenescape.geometry.camera import Camera
from scenescape.geometry.projection import as_tensor, project


def held_out_cameras(cameras: Sequence[Camera], n_perturbed: int = 4, shift: float = 0.02,
                     angle: float = 0.01, seed: int = 0) -> list[Camera]:
    """Midpoints between consecutive poses (centre lerp, rotation slerp) plus ``n_perturbed`` small
    perturbations (centre moved by ``shift`` units, rotated by ``angle`` rad about a random axis) of evenly
    spaced trajectory cameras."""
    from scenescape.geometry.rotations import (
        axis_angle_matrix,
        camera_from_c2w,
        camera_to_world,
        interpolate_cameras,
    )

    cams = list(cameras)
    out = [interpolate_cameras(a, b, 0.5) for a, b in zip(cams[:-1], cams[1:])]
    rng = np.random.default_rng(seed)
    if n_perturbed > 0 and cams:
        idx = np.linspace(0, len(cams) - 1, n_perturbed + 2)[1:-1].round().astype(int)
        for i in idx:
            c = camera_to_world(cams[i])
            v = rng.normal(size=3)
            ax = rng.normal(size=3)
            rot = axis_angle_matrix(ax, angle) @ c[:3, :3]
            out.append(camera_from_c2w(cams[i], rot, c[:3, 3] + shift * v / np.linalg.norm(v)))
    return out


def seen_mask(world: World, camera: Camera, train_cameras: Sequence[Camera], points: torch.Tensor | None = None,
              quad_tol: float = 0.05, train_depths: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``(H, W)`` bool: pixels of ``camera`` whose ground-truth surface point some training camera saw.

    A point counts as seen by a training camera when it projects inside the span of that camera's pixel
    centres (``0.5 <= u <= W - 0.5``, same for v), in front of it, and lies in a triangle of that camera's
    pixel-centre grid (either diagonal of the surrounding 2x2 quad) whose three corners have ground-truth
    depth within ``quad_tol`` (relative) of the point's own z-depth there: the point lies on the surface
    patch that camera's RGB-D pixels sample, not behind an occluder and not in a triangle that spans a
    depth edge (which a careful triangulation drops). ``train_depths`` (their ground-truth depth maps)
    may be passed to avoid re-rendering them.
    """
    if points is None:
        points = world.render_full(camera)["points"]
    pts = points.reshape(-1, 3).float()
    seen = torch.zeros(pts.shape[0], dtype=torch.bool)
    for k, tc in enumerate(train_cameras):
        dep = train_depths[k] if train_depths is not None else world.render(tc)[1]
        uv, z = project(pts, tc)
        u, v = uv[:, 0], uv[:, 1]
        inb = (z > 1e-6) & (u >= 0.5) & (u <= tc.width - 0.5) & (v >= 0.5) & (v <= tc.height - 0.5)
        j0 = (u - 0.5).floor().long().clamp(0, tc.width - 2)
        i0 = (v - 0.5).floor().long().clamp(0, tc.height - 2)
        a = u - 0.5 - j0  # in [0, 1] across the quad
        b = v - 0.5 - i0

        def good(di: int, dj: int, i0=i0, j0=j0, z=z, dep=dep) -> torch.Tensor:
            return (dep[i0 + di, j0 + dj] - z).abs() <= quad_tol * z.abs()

        g00, g01, g10, g11 = good(0, 0), good(0, 1), good(1, 0), good(1, 1)
        in_tri = (((a >= b) & g00 & g01 & g11) | ((a <= b) & g00 & g10 & g11)
                  | ((a + b <= 1) & g00 & g01 & g10) | ((a + b >= 1) & g01 & g10 & g11))
        seen |= inb & in_tri
    return seen.reshape(camera.height, camera.width)


def summary_stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean())}


def evaluate_mesh(mesh: Any, world: str | World, cameras: Sequence[Camera],
                  train_cameras: Sequence[Camera] | None = None, floating_ratio: float = 0.9,
                  render_kwargs: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Score ``mesh`` against ground truth at held-out ``cameras``.

    Per camera:

    * ``coverage``: fraction of the pixels some training camera saw (:func:`seen_mask`) that the mesh
      renders (all pixels when ``train_cameras`` is None);
    * ``psnr``: dB over the pixels the mesh renders (ground truth covers every pixel);
    * ``abs_rel``: mean ``|d - d_gt| / d_gt`` over rendered pixels;
    * ``floating``: fraction of rendered pixels with ``d < floating_ratio * d_gt`` (in front of the surface);
    * ``rendered``: fraction of all pixels rendered.

    Returns ``{"per_camera": [...], "summary": {metric: {median, min, max, mean}}}``.
    """
    from scenescape.geometry.raster import render_mesh

    w = make_world(world, seed)
    rk = dict(render_kwargs or {})
    per = []
    train_depths = [w.render(tc)[1] for tc in train_cameras] if train_cameras is not None else None
    for k, cam in enumerate(cameras):
        gt = w.render_full(cam)
        out = render_mesh(mesh, cam, **rk)
        rmask = as_tensor(out.mask, dtype=torch.bool).cpu()
        rimg = as_tensor(out.image).cpu()
        rdep = as_tensor(out.depth).cpu()
        gimg, gdep = gt["image"], gt["depth"]
        seen = (seen_mask(w, cam, train_cameras, gt["points"], train_depths=train_depths)
                if train_cameras is not None
                else torch.ones_like(rmask))
        n_seen = int(seen.sum())
        n_r = int(rmask.sum())
        rec: dict[str, Any] = {"camera": k, "seen": n_seen / rmask.numel(), "rendered": n_r / rmask.numel()}
        rec["coverage"] = float((rmask & seen).sum()) / n_seen if n_seen else float("nan")
        if n_r:
            mse = float(((rimg - gimg) ** 2)[rmask].mean())
            rec["psnr"] = 10 * math.log10(1.0 / max(mse, 1e-12))
            rel = (rdep - gdep).abs() / gdep
            rec["abs_rel"] = float(rel[rmask].mean())
            rec["floating"] = float((rdep < floating_ratio * gdep)[rmask].float().mean())
        else:
            rec.update(psnr=float("nan"), abs_rel=float("nan"), floating=float("nan"))
        per.append(rec)
    keys = ("coverage", "psnr", "abs_rel", "floating", "rendered", "seen")
    return {"per_camera": per, "summary": {k: summary_stats([r[k] for r in per]) for k in keys}}


# ---------------------------------------------------------------------------------------------- fidelity
#: The issue's bars for the oracle-fusion fidelity benchmark: name -> (comparison, threshold).


__all__ = ["evaluate_mesh", "held_out_cameras", "seen_mask", "summary_stats"]
