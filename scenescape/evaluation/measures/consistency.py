"""3D and photometric consistency of a run's frames with its own depth and cameras.

3D consistency (:func:`reprojection_pair`, :func:`consistency_3d`): every pixel of frame ``i`` is lifted
with its z-depth and the saved camera, projected into a neighbour ``j`` and compared there with what ``j``
shows: colour (bilinear sample of frame ``j``) and depth (bilinear sample of depth ``j`` against the
projected z). Only pixels that both frames see are compared (occlusion-aware):

* the point must land inside ``j`` in front of its camera, on a pixel with a depth;
* a point more than ``occlusion_tol`` (relative) *behind* ``j``'s surface is hidden there (an occluder
  that ``i`` does not see in front of it) and is left out; a point in front of ``j``'s surface is a
  contradiction (``j`` sees through it) and counts as error;
* pixels of ``j`` on a depth discontinuity (relative jump > ``edge_threshold``) are left out: the
  bilinear sample there mixes two surfaces.

Both directions (``i -> j`` and ``j -> i``) are measured, so a depth that is too far in one frame shows up
as a point in front of the surface in the other direction.

Photometric consistency (:func:`flow_consistency`): dense optical flow between consecutive frames
(OpenCV DIS, or Farneback), forward and backward: the forward-backward error ``|F(p) + B(p + F(p))|``
(pixels; 0 for consistent frames) and the end-point error against the flow that the cameras and depth
predict, on the co-visible pixels of the 3D check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.masks import depth_edges, dilate_mask


def sample_bilinear(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``image`` ``(H, W, C)`` at continuous pixel coordinates ``uv`` ``(..., 2)``
    (pixel centres at +0.5; values outside are clamped to the border). Returns ``(..., C)``."""
    h, w = image.shape[:2]
    grid = torch.stack([2.0 * uv[..., 0] / w - 1.0, 2.0 * uv[..., 1] / h - 1.0], dim=-1)
    flat = grid.reshape(1, -1, 1, 2).to(image.dtype)
    out = F.grid_sample(image.permute(2, 0, 1)[None], flat, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out[0, :, :, 0].T.reshape(*uv.shape[:-1], image.shape[-1])


def _t(x: Any) -> torch.Tensor:
    return x.float() if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x, np.float32))


def _bad_target(depth: torch.Tensor, edge_threshold: float) -> torch.Tensor:
    """``(H, W)`` float: 1 where a depth sample mixes surfaces (no depth, or a depth edge, dilated 1 px)."""
    return dilate_mask((depth <= 0) | depth_edges(depth, edge_threshold), 3).float()


def _target(image: torch.Tensor, depth: torch.Tensor, edge_threshold: float) -> torch.Tensor:
    """``(1, 5, H, W)``: RGB, depth and the "mixed surfaces" flag of a target frame, for one grid_sample."""
    return torch.cat([image, depth[..., None], _bad_target(depth, edge_threshold)[..., None]], dim=-1
                     ).permute(2, 0, 1)[None].contiguous()


def _rays(cam: Camera, stride: int) -> torch.Tensor:
    from scenescape.geometry.projection import camera_rays

    return camera_rays(cam)[::stride, ::stride].contiguous()


def _reproject(img_i: torch.Tensor, d: torch.Tensor, rays: torch.Tensor, cam_i: Camera, cam_j: Camera,
               target: torch.Tensor, occlusion_tol: float, base_uv: torch.Tensor) -> dict[str, torch.Tensor]:
    h, w = target.shape[-2:]
    rel = (cam_j.world_to_camera.double() @ cam_i.camera_to_world.double()).float()
    x = (rays * d[..., None]) @ rel[:3, :3].T + rel[:3, 3]
    z = x[..., 2]
    zs = z.clamp_min(1e-9)
    u = cam_j.fx * x[..., 0] / zs + cam_j.cx
    v = cam_j.fy * x[..., 1] / zs + cam_j.cy
    inside = (u >= 0.5) & (u <= w - 0.5) & (v >= 0.5) & (v <= h - 0.5) & (z > 1e-6) & (d > 0)
    grid = torch.stack([2.0 * u / w - 1.0, 2.0 * v / h - 1.0], dim=-1)[None]
    smp = F.grid_sample(target, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    d_j = smp[3]
    covisible = inside & ~(smp[4] > 0) & ~(z > d_j * (1.0 + occlusion_tol)) & (d_j > 0)
    colour_error = (img_i - smp[:3].permute(1, 2, 0)).abs().mean(-1)
    depth_error = (z - d_j).abs() / d_j.clamp_min(1e-9)
    uv = torch.stack([u, v], dim=-1)
    return {"uv": uv, "z": z, "covisible": covisible, "colour_error": colour_error, "depth_error": depth_error,
            "flow": uv - base_uv}


def _base_uv(h: int, w: int, stride: int) -> torch.Tensor:
    v0, u0 = torch.meshgrid(torch.arange(0, h, stride, dtype=torch.float32) + 0.5,
                            torch.arange(0, w, stride, dtype=torch.float32) + 0.5, indexing="ij")
    return torch.stack([u0, v0], dim=-1)


def reprojection_pair(image_i: Any, depth_i: Any, cam_i: Camera, image_j: Any, depth_j: Any, cam_j: Camera,
                      occlusion_tol: float = 0.05, edge_threshold: float = 0.1, stride: int = 1) -> dict[str, torch.Tensor]:
    """Frame ``i`` seen from camera ``j``.

    Args:
        image_i, image_j: ``(H, W, 3)`` float in [0, 1]; depth_i, depth_j: ``(H, W)`` z-depth (0 = none).
        stride: compare every ``stride``-th pixel of ``i`` in each direction (``stride=1``: all).

    Returns a dict of ``(h, w)`` tensors over the compared pixels of ``i`` (``h = ceil(H / stride)``):
    ``uv`` ``(h, w, 2)`` (where each lands in ``j``), ``z`` (its depth in ``j``), ``covisible`` (bool),
    ``colour_error`` (mean absolute difference over RGB), ``depth_error`` (``|z - d_j| / d_j``) and ``flow``
    ``(h, w, 2)`` (``uv - p``: the flow the cameras and depth predict).
    """
    img_i, dep_i, img_j, dep_j = _t(image_i), _t(depth_i), _t(image_j), _t(depth_j)
    if dep_i.shape != (cam_i.height, cam_i.width) or dep_j.shape != (cam_j.height, cam_j.width):
        raise InputError("depth maps must match their cameras' (H, W)")
    s = int(stride)
    return _reproject(img_i[::s, ::s], dep_i[::s, ::s], _rays(cam_i, s), cam_i, cam_j,
                      _target(img_j, dep_j, edge_threshold), occlusion_tol, _base_uv(*dep_i.shape, s))


def _pair_stats(r: dict[str, torch.Tensor]) -> dict[str, float]:
    m = r["covisible"]
    n = int(m.sum())
    if n == 0:
        return {"covisible": 0.0, "colour_l1": float("nan"), "psnr": float("nan"), "depth_abs_rel": float("nan"),
                "depth_abs_rel_median": float("nan")}
    ce = r["colour_error"][m]
    de = r["depth_error"][m]
    mse = float((ce.double() ** 2).mean())  # mean over pixels of the squared per-pixel mean abs difference
    return {
        "covisible": n / m.numel(),
        "colour_l1": float(ce.double().mean()),
        "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))),
        "depth_abs_rel": float(de.double().mean()),
        "depth_abs_rel_median": float(de.median()),
    }


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if np.isfinite(x)], np.float64)
    return float(v.mean()) if v.size else float("nan")


def consistency_3d(frames: np.ndarray, depths: np.ndarray, cameras: Sequence[Camera],
                   offsets: Sequence[int] = (1, 2), occlusion_tol: float = 0.05,
                   edge_threshold: float = 0.1, stride: int | None = None, keep: dict | None = None) -> dict[str, Any]:
    """3D consistency of a run (module docstring).

    Args:
        frames: ``(N, H, W, 3)``; depths: ``(N, H, W)``; cameras: ``N`` cameras.
        offsets: neighbours ``j = i + k`` compared with each frame ``i`` (both directions).
        stride: compare every ``stride``-th pixel (default: 1 up to 256x256, else 2 -- a quarter of the
            pixels of a 512x512 frame is plenty for a mean, and 4x faster).
        keep: if a dict, the co-visibility masks and predicted flows of the ``k = 1`` pairs are stored in
            it (``keep[(i, i + 1)] = (covisible, flow)``) for :func:`flow_consistency`.

    Returns ``{"per_frame": {measure: [N values]}, "summary": {measure: mean over frames}}`` with the
    measures ``colour_l1`` (mean absolute RGB difference in [0, 1]), ``psnr`` (dB), ``depth_abs_rel``
    (mean ``|z - d| / d``), ``depth_abs_rel_median`` and ``covisible`` (fraction of pixels compared). A
    frame's value is the mean over the pairs it takes part in, as source and as target (a frame whose
    depth is too far is hidden behind its neighbours as a source, and is seen through as a target).
    """
    n = len(cameras)
    if depths is None:
        raise InputError("3D consistency needs the run's depth (depth/NNNN.npy)")
    per: dict[int, list[dict[str, float]]] = {i: [] for i in range(n)}
    h, w = depths.shape[1:3]
    if stride is None:
        stride = 1 if h * w <= 256 * 256 else 2
    imgs = [_t(f) for f in frames]
    deps = [_t(d) for d in depths]
    targets = [_target(im, d, edge_threshold) for im, d in zip(imgs, deps)]
    src = [(im[::stride, ::stride].contiguous(), d[::stride, ::stride].contiguous()) for im, d in zip(imgs, deps)]
    rays: dict[tuple, torch.Tensor] = {}
    base_uv = _base_uv(h, w, stride)

    def rays_of(c: Camera) -> torch.Tensor:
        key = (c.fx, c.fy, c.cx, c.cy, c.width, c.height)
        if key not in rays:
            rays[key] = _rays(c, stride)
        return rays[key]

    for k in offsets:
        if k < 1:
            raise InputError(f"offsets must be >= 1, got {k}")
        for i in range(n - k):
            j = i + k
            for a, b in ((i, j), (j, i)):
                r = _reproject(src[a][0], src[a][1], rays_of(cameras[a]), cameras[a], cameras[b], targets[b],
                               occlusion_tol, base_uv)
                st = _pair_stats(r)
                per[a].append(st)
                per[b].append(st)
                if keep is not None and k == 1:
                    keep[(a, b)] = (r["covisible"], r["flow"], stride)
    names = ("colour_l1", "psnr", "depth_abs_rel", "depth_abs_rel_median", "covisible")
    per_frame = {m: [_nanmean([s[m] for s in per[i]]) for i in range(n)] for m in names}
    return {"per_frame": per_frame, "summary": {m: _nanmean(v) for m, v in per_frame.items()},
            "settings": {"offsets": list(offsets), "occlusion_tol": occlusion_tol, "edge_threshold": edge_threshold,
                         "stride": stride}}


# ---------------------------------------------------------------------------------------------- flow
def _grey_u8(image: np.ndarray) -> np.ndarray:
    import cv2

    u8 = np.clip(np.asarray(image, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY)


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "dis", downscale: int = 1) -> np.ndarray:
    """Dense flow from image ``a`` to ``b`` (``(H, W, 3)`` in [0, 1]) with OpenCV: ``(H, W, 2)`` in pixels
    (``(du, dv)``: pixel ``p`` of ``a`` is at ``p + flow`` in ``b``). ``method``: ``dis`` (DIS, medium
    preset) or ``farneback``. ``downscale``: estimate at ``1 / downscale`` of the size (area-averaged),
    then resize the flow back and scale it (4x faster at 2)."""
    import cv2

    if method not in ("dis", "farneback"):
        raise InputError(f"flow method must be 'dis' or 'farneback', got {method!r}")
    ga, gb = _grey_u8(a), _grey_u8(b)
    h, w = ga.shape
    if downscale > 1:
        size = (max(w // downscale, 8), max(h // downscale, 8))
        ga = cv2.resize(ga, size, interpolation=cv2.INTER_AREA)
        gb = cv2.resize(gb, size, interpolation=cv2.INTER_AREA)
    if method == "dis":
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(ga, gb, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 5, 5, 1.1, 0)
    if downscale > 1:
        sx, sy = w / ga.shape[1], h / ga.shape[0]
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= sx
        flow[..., 1] *= sy
    return flow


def forward_backward_error(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """``(H, W)`` ``|F(p) + B(p + F(p))|`` in pixels; NaN where ``p + F(p)`` leaves the image."""
    h, w = fwd.shape[:2]
    from scenescape.geometry.projection import pixel_grid

    p = pixel_grid(h, w)
    f = torch.from_numpy(np.ascontiguousarray(fwd, np.float32))
    q = p + f
    b = sample_bilinear(torch.from_numpy(np.ascontiguousarray(bwd, np.float32)), q)
    err = (f + b).norm(dim=-1)
    inside = (q[..., 0] >= 0) & (q[..., 0] <= w) & (q[..., 1] >= 0) & (q[..., 1] <= h)
    return torch.where(inside, err, torch.full_like(err, float("nan"))).numpy()


def flow_consistency(frames: np.ndarray, cameras: Sequence[Camera] | None = None, depths: np.ndarray | None = None,
                     method: str = "dis", predicted: dict | None = None, threshold: float = 1.0,
                     downscale: int | None = None) -> dict[str, Any]:
    """Photometric consistency of consecutive frames (module docstring).

    ``predicted``: the ``keep`` dict of :func:`consistency_3d` (co-visible masks and predicted flows); if
    None and ``depths`` are given it is computed here. Without depth only the forward-backward error is
    measured (object runs).

    Returns ``per_frame`` (index ``i`` = the pair ``(i, i + 1)``; frame 0's entry is NaN) and ``summary``:
    ``fb_error`` (mean forward-backward error, px), ``fb_outliers`` (fraction of pixels whose error exceeds
    ``threshold`` px), ``epe`` (mean end-point error of the forward flow against the cameras' and depth's
    prediction, px, co-visible pixels) and ``epe_outliers`` (fraction above ``threshold``). The flow is
    estimated at half size for frames larger than 320 px (``downscale``; errors are in full-size pixels).
    """
    n = frames.shape[0]
    if downscale is None:
        downscale = 2 if max(frames.shape[1:3]) > 320 else 1
    if predicted is None and depths is not None and cameras is not None:
        predicted = {}
        consistency_3d(frames, depths, cameras, offsets=(1,), keep=predicted)
    keys = ("fb_error", "fb_outliers", "epe", "epe_outliers")
    per_frame: dict[str, list[float]] = {k: [float("nan")] for k in keys}
    for i in range(n - 1):
        fwd = optical_flow(frames[i], frames[i + 1], method, downscale)
        bwd = optical_flow(frames[i + 1], frames[i], method, downscale)
        fb = forward_backward_error(fwd, bwd)
        ok = np.isfinite(fb)
        per_frame["fb_error"].append(float(fb[ok].mean()) if ok.any() else float("nan"))
        per_frame["fb_outliers"].append(float((fb[ok] > threshold).mean()) if ok.any() else float("nan"))
        if predicted is not None and (i, i + 1) in predicted:
            cov, pflow, st = predicted[(i, i + 1)]
            cov = cov.numpy() if torch.is_tensor(cov) else np.asarray(cov)
            pflow = pflow.numpy() if torch.is_tensor(pflow) else np.asarray(pflow)
            e = np.linalg.norm(fwd[::st, ::st] - pflow, axis=-1)[cov]
            per_frame["epe"].append(float(e.mean()) if e.size else float("nan"))
            per_frame["epe_outliers"].append(float((e > threshold).mean()) if e.size else float("nan"))
        else:
            per_frame["epe"].append(float("nan"))
            per_frame["epe_outliers"].append(float("nan"))
    summary = {k: _nanmean(v) for k, v in per_frame.items()}
    if predicted is None:
        summary = {k: summary[k] for k in ("fb_error", "fb_outliers")}
        per_frame = {k: per_frame[k] for k in ("fb_error", "fb_outliers")}
    return {"per_frame": per_frame, "summary": summary, "settings": {"method": method, "threshold_px": threshold,
                                                                          "downscale": downscale}}
