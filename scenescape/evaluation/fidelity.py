"""The fidelity benchmark's machinery: fuse a world with the oracle backends through scene mode's own step,
score the mesh, and check the bars."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.evaluation.metrics import evaluate_mesh, held_out_cameras
from scenescape.evaluation.oracles import OracleDepth, OracleInpainter
from scenescape.evaluation.worlds import World, default_camera, make_world, suggest_trajectory
from scenescape.geometry.camera import Camera

FUSION_MASK_DEFAULTS: dict[str, Any] = {"edge_ring": 1}


def fuse_with_oracle(world: str | World, cameras: Sequence[Camera], dilate: int = 1, seed: int = 0,
                     render_kwargs: dict[str, Any] | None = None,
                     progress: Callable[[dict[str, Any]], None] | None = None,
                     mask_kwargs: dict[str, Any] | None = None,
                     extend_kwargs: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Fuse a mesh along ``cameras`` with the oracle backends: scene mode's own step with exact RGB-D.

    Frame 0: ``SceneMesh.from_rgbd`` of the ground truth. Each later frame is the product's
    :func:`~scenescape.pipelines.scene.step.warp_inpaint_step` with the oracle depth and inpainter, no
    feathering and no depth alignment (the oracle depth is exact): render -> disocclusion mask (``dilate``,
    plus the ``edge_ring`` band on the far side of rendered depth jumps, which keeps geometry only where
    the new depth is nearer) -> oracle inpaint + depth -> ``mesh.extend_from_rgbd``.

    ``render_kwargs`` (``supersample``), ``mask_kwargs`` (:class:`~scenescape.pipelines.scene.MaskConfig`
    fields, e.g. ``edge_ring``, ``open_kernel``) and ``extend_kwargs`` (:class:`~scenescape.pipelines.scene.MeshConfig`
    fields) select geometry options to compare.

    Returns:
        ``(mesh, stats)``; ``stats[i]``: ``frame``, ``missing`` (pixels the render left uncovered),
        ``mask_pixels`` (after dilation), ``faces_added``, ``faces_per_missing``, ``seconds``.
    """
    from scenescape.config import ConfigError
    from scenescape.geometry.mesh import SceneMesh
    from scenescape.pipelines.scene import (
        AlignConfig,
        CompositeConfig,
        MaskConfig,
        MeshConfig,
        warp_inpaint_step,
    )

    w = make_world(world, seed)
    cams = list(cameras)
    if not cams:
        raise InputError("fuse_with_oracle: cameras is empty")
    rk = dict(render_kwargs or {})
    unknown = sorted(set(rk) - {"supersample"})
    if unknown:
        raise ConfigError(f"fuse_with_oracle: unknown render option(s) {unknown}; valid: ['supersample']")
    mask_cfg = MaskConfig(**{**FUSION_MASK_DEFAULTS, "dilate": dilate, "supersample": rk.get("supersample", 1),
                             **(mask_kwargs or {})})
    mesh_cfg = MeshConfig(**(extend_kwargs or {}))
    align_cfg, comp_cfg = AlignConfig(mode="none"), CompositeConfig(feather=0)
    depth_oracle, inpainter = OracleDepth(world=w), OracleInpainter(world=w)
    t0 = time.perf_counter()
    img0, dep0 = w.render(cams[0])
    mesh = SceneMesh.from_rgbd(img0, dep0, cams[0], **dataclasses.asdict(mesh_cfg.options()))
    n_pix = cams[0].width * cams[0].height
    stats = [{"frame": 0, "missing": n_pix, "mask_pixels": n_pix, "faces_added": int(mesh.faces.shape[0]),
              "faces_per_missing": mesh.faces.shape[0] / n_pix, "seconds": time.perf_counter() - t0}]
    if progress:
        progress(stats[-1])
    for i, cam in enumerate(cams[1:], start=1):
        t0 = time.perf_counter()
        step = warp_inpaint_step(mesh, cam, depth=depth_oracle, inpainter=inpainter, mask=mask_cfg, align=align_cfg,
                                 composite_cfg=comp_cfg, mesh_cfg=mesh_cfg, frame=i)
        missing, added = step.missing, step.faces_added
        stats.append({"frame": i, "missing": missing, "mask_pixels": int(step.mask.sum()), "faces_added": added,
                      "faces_per_missing": added / missing if missing else float("inf" if added else "nan"),
                      "seconds": time.perf_counter() - t0})
        if progress:
            progress(stats[-1])
    return mesh, stats


FIDELITY_BARS: dict[str, tuple[str, Any]] = {
    "coverage_median": (">=", 0.998),
    "coverage_min": (">=", 0.995),
    "floating_median": ("<=", 0.001),
    "floating_max": ("<=", 0.005),
    "abs_rel_median": ("<=", 0.0015),
    "faces_per_missing": ("between", (1.7, 4.0)),
    "zero_missing_frames": ("==", 0),
}


def _check_bar(value: float, op: str, bar: Any) -> bool:
    if not math.isfinite(value):
        return False
    if op == ">=":
        return value >= bar
    if op == "<=":
        return value <= bar
    if op == "==":
        return value == bar
    lo, hi = bar
    return lo <= value <= hi


def run_fidelity(world: str | World, trajectory: str = "forward_yaw", width: int = 512, height: int | None = None,
                 fx: float | None = None, frames: int = 24, dilate: int = 1, n_perturbed: int = 4, seed: int = 0,
                 render_kwargs: dict[str, Any] | None = None, mask_kwargs: dict[str, Any] | None = None,
                 extend_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fuse ``world`` along a suggested trajectory with the oracle backends and score it.

    ``trajectory`` is a :func:`suggest_trajectory` kind (the same path for any ``frames``). ``fx`` defaults
    to ``500 * width / 512``. Held-out cameras: midpoints between consecutive poses plus ``n_perturbed``
    small perturbations. Returns settings, per-frame fusion stats, the :func:`evaluate_mesh` result,
    ``figures`` (summary numbers) and ``bars`` (``{name: {value, op, bar, pass}}`` for :data:`FIDELITY_BARS`).
    """
    from scenescape.trajectories import build_trajectory

    w = make_world(world, seed)
    height = width if height is None else height
    fx = 500.0 * width / 512 if fx is None else float(fx)
    cam0 = default_camera(w, width, height, fx)
    cams = build_trajectory(suggest_trajectory(w, trajectory, frames), cam0, frames)
    t0 = time.perf_counter()
    mesh, stats = fuse_with_oracle(w, cams, dilate=dilate, render_kwargs=render_kwargs, mask_kwargs=mask_kwargs,
                                   extend_kwargs=extend_kwargs)
    t_fuse = time.perf_counter() - t0
    held = held_out_cameras(cams, n_perturbed=n_perturbed, seed=seed)
    t0 = time.perf_counter()
    ev = evaluate_mesh(mesh, w, held, train_cameras=cams, render_kwargs=render_kwargs)
    t_eval = time.perf_counter() - t0
    later = stats[1:]
    missing = sum(s["missing"] for s in later)
    faces = sum(s["faces_added"] for s in later)
    fpm_frames = [s["faces_per_missing"] for s in later if s["missing"]]
    sm = ev["summary"]
    figures = {
        "coverage_median": sm["coverage"]["median"], "coverage_min": sm["coverage"]["min"],
        "floating_median": sm["floating"]["median"], "floating_max": sm["floating"]["max"],
        "abs_rel_median": sm["abs_rel"]["median"], "abs_rel_max": sm["abs_rel"]["max"],
        "psnr_median": sm["psnr"]["median"], "psnr_min": sm["psnr"]["min"], "psnr_max": sm["psnr"]["max"],
        "faces_per_missing": faces / missing if missing else float("nan"),
        "faces_per_missing_frame_median": float(np.median(fpm_frames)) if fpm_frames else float("nan"),
        "faces_per_missing_frame_min": min(fpm_frames) if fpm_frames else float("nan"),
        "faces_per_missing_frame_max": max(fpm_frames) if fpm_frames else float("nan"),
        "zero_missing_frames": sum(1 for s in later if s["missing"] == 0),
        "missing_per_frame_median": float(np.median([s["missing"] for s in later])) if later else float("nan"),
        "faces": int(mesh.faces.shape[0]),
        "fuse_seconds_per_frame": t_fuse / len(cams),
    }
    bars = {name: {"value": figures[name], "op": op, "bar": bar, "pass": _check_bar(figures[name], op, bar)}
            for name, (op, bar) in FIDELITY_BARS.items()}
    return {
        "world": w.name, "trajectory": trajectory,
        "settings": {"width": width, "height": height, "fx": fx, "frames": frames, "dilate": dilate,
                     "held_out": len(held), "seed": seed, "render_kwargs": dict(render_kwargs or {}),
                     "mask_kwargs": {**FUSION_MASK_DEFAULTS, **(mask_kwargs or {})}, "extend_kwargs": dict(extend_kwargs or {})},
        "fuse_stats": stats, "eval": ev, "figures": figures, "bars": bars,
        "seconds": {"fuse": t_fuse, "eval": t_eval},
    }


__all__ = ["FIDELITY_BARS", "FUSION_MASK_DEFAULTS", "fuse_with_oracle", "run_fidelity"]
