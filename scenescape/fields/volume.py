"""Volume rendering of a NeRF field inside a bounding sphere (pure torch).

* Rays come from :class:`scenescape.geometry.camera.Camera` (OpenCV, pixel centres at +0.5);
  each ray is clipped to the sphere of radius ``RenderConfig.radius`` around the origin.
* Stratified samples (jittered when ``perturb``), then importance samples drawn from the coarse
  weights (inverse CDF); the field is evaluated with gradients on all samples together.
* Shading: ``albedo``; ``lambertian`` = albedo * (ambient + (1 - ambient) * max(0, n . l));
  ``textureless`` = the same with a white albedo; ``l`` points to a light position per image
  (training samples it about 30 degrees off the camera).
* Normals are evaluated only at samples whose weight exceeds ``normal_weight_threshold``.
* Outputs per image: ``rgb (H, W, 3)``, ``opacity (H, W)``, ``depth (H, W)`` (z-depth, 0 where
  empty), ``normals (H, W, 3)`` (world, opacity-weighted) and the orientation penalty
  ``sum_i w_i max(0, n_i . d)^2`` averaged over rays (normals facing away from the camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.projection import camera_rays

Shading = Literal["albedo", "lambertian", "textureless"]


@dataclass
class RenderConfig:
    """Ray sampling."""

    num_samples: int = 64
    """Stratified samples per ray."""
    num_importance: int = 32
    """Extra samples per ray drawn from the coarse weights (0 = none)."""
    radius: float = 1.0
    """Rays are marched inside the sphere of this radius around the origin."""
    near: float = 0.05
    chunk: int = 8192
    """Rays per chunk when rendering without gradients (evaluation, video)."""
    normal_weight_threshold: float = 1e-3
    """Normals (for shading and the orientation loss) are evaluated only at samples whose rendering
    weight exceeds this (0 = at every sample); elsewhere a sample's normal is zero (it contributes
    less than the threshold to any pixel). Cuts the cost of normals several-fold."""

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise InputError(f"render.num_samples must be >= 2, got {self.num_samples}")
        if self.num_importance < 0:
            raise InputError(f"render.num_importance must be >= 0, got {self.num_importance}")
        if self.radius <= 0:
            raise InputError(f"render.radius must be > 0, got {self.radius}")
        if self.chunk < 1:
            raise InputError(f"render.chunk must be >= 1, got {self.chunk}")
        if not 0 <= self.normal_weight_threshold < 1:
            raise InputError(f"render.normal_weight_threshold must be in [0, 1), got {self.normal_weight_threshold}")


@dataclass
class RenderOutput:
    """Batched renders: ``rgb (B, H, W, 3)``, ``opacity (B, H, W)``, ``depth (B, H, W)`` z-depth,
    ``normals (B, H, W, 3)`` world normals weighted by opacity (zeros where not computed),
    ``orientation`` scalar (0 where normals were not computed), ``emptiness`` scalar: the sum over
    all rays and samples of one image of ``log(1 + scale w)``, averaged over the images (SJC's emptiness
    loss before its normalisation, see ``LossConfig``; 0 unless ``emptiness_scale`` is given)."""

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    orientation: torch.Tensor
    emptiness: torch.Tensor | None = None


def camera_ray_bundle(camera: Camera, device: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """World rays of every pixel: ``origins (H*W, 3)``, unit ``dirs (H*W, 3)``, ``zscale (H*W,)``.

    ``zscale`` converts distance along the unit ray into z-depth.
    """
    d_cam = camera_rays(camera, device=device).reshape(-1, 3)
    c2w = camera.camera_to_world.to(device)
    norm = d_cam.norm(dim=-1, keepdim=True)
    dirs = (d_cam / norm) @ c2w[:3, :3].T
    origins = c2w[:3, 3].expand_as(dirs)
    return origins.contiguous(), dirs.contiguous(), (1.0 / norm[:, 0])


def sphere_bounds(origins: torch.Tensor, dirs: torch.Tensor, radius: float, near: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entry/exit distances of unit rays through the sphere; returns ``(near (R,), far (R,), hit (R,))``."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - radius * radius
    disc = b * b - c
    hit = disc > 0
    s = torch.sqrt(disc.clamp(min=0))
    t0 = (-b - s).clamp(min=near)
    t1 = -b + s
    hit = hit & (t1 > t0)
    t0 = torch.where(hit, t0, torch.full_like(t0, near))
    t1 = torch.where(hit, t1, t0 + 1e-3)
    return t0, t1, hit


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse-CDF samples ``(R, n)`` from piecewise-constant ``weights (R, M)`` over ``bins (R, M + 1)``."""
    w = weights + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if deterministic:
        u = torch.linspace(0.0, 1.0, n + 2, device=bins.device, dtype=bins.dtype)[1:-1].expand(bins.shape[0], n)
    else:
        u = torch.rand(bins.shape[0], n, generator=generator, device="cpu", dtype=bins.dtype).to(bins.device)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    lo = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    hi = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    b_lo, b_hi = bins.gather(-1, lo), bins.gather(-1, hi)
    denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return b_lo + (u - cdf_lo) / denom * (b_hi - b_lo)


def _composite(sigma: torch.Tensor, t: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Volume-rendering weights ``(R, S)`` from densities and sorted sample distances."""
    deltas = torch.cat([t[:, 1:] - t[:, :-1], (far[:, None] - t[:, -1:]).clamp(min=1e-4)], dim=-1)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]
    return alpha * trans


def render_rays(field: Any, background: Any, origins: torch.Tensor, dirs: torch.Tensor, cfg: RenderConfig, *,
                shading: Shading = "albedo", light: torch.Tensor | None = None, ambient: float = 0.1,
                bg_color: torch.Tensor | None = None, generator: torch.Generator | None = None,
                perturb: bool = True, need_normals: bool = False,
                emptiness_scale: float | None = None) -> dict[str, torch.Tensor]:
    """Render ``R`` rays: ``origins``/``dirs`` ``(R, 3)`` (unit dirs), ``light`` ``(R, 3)`` light positions.

    Returns a dict with ``rgb (R, 3)``, ``opacity (R,)``, ``t (R,)`` (expected distance),
    ``normals (R, 3)``, ``orientation (R,)`` and ``emptiness (R,)`` (sum over the ray's samples of
    ``log(1 + emptiness_scale w)``; zeros when ``emptiness_scale`` is None).
    """
    r = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    near, far, hit = sphere_bounds(origins, dirs, cfg.radius, cfg.near)
    n = cfg.num_samples
    steps = torch.arange(n, device=dev, dtype=dt)
    if perturb:
        jitter = torch.rand(r, n, generator=generator, dtype=dt).to(dev)
    else:
        jitter = torch.full((r, n), 0.5, device=dev, dtype=dt)
    t = near[:, None] + (far - near)[:, None] * (steps[None] + jitter) / n
    if cfg.num_importance > 0:
        with torch.no_grad():
            pts = origins[:, None] + dirs[:, None] * t[..., None]
            sig = field.density(pts.reshape(-1, 3)).reshape(r, n) * hit[:, None]
            w = _composite(sig, t, far)
            mids = 0.5 * (t[:, 1:] + t[:, :-1])
            bins = torch.cat([near[:, None], mids, far[:, None]], -1)
            t_fine = sample_pdf(bins, w, cfg.num_importance, deterministic=not perturb, generator=generator)
        t, _ = torch.sort(torch.cat([t, t_fine.detach()], -1), -1)
    s = t.shape[1]
    pts = (origins[:, None] + dirs[:, None] * t[..., None]).reshape(-1, 3)
    sigma, albedo = field(pts)
    sigma = sigma.reshape(r, s) * hit[:, None]
    albedo = albedo.reshape(r, s, 3)
    weights = _composite(sigma, t, far)
    opacity = weights.sum(-1)
    want_normals = need_normals or shading != "albedo"
    if want_normals:
        thr = cfg.normal_weight_threshold
        if thr > 0:
            # finite differences / autograd only where a sample can matter
            sel = (weights.detach() > thr).reshape(-1).nonzero().squeeze(1)
            nrm_sel = field.normals(pts.index_select(0, sel)) if sel.numel() else pts.new_zeros(0, 3)
            nrm = pts.new_zeros(r * s, 3).index_copy(0, sel, nrm_sel).reshape(r, s, 3)
        else:
            nrm = field.normals(pts).reshape(r, s, 3)
        normals = (weights[..., None] * nrm).sum(1)
        cosv = (nrm * dirs[:, None]).sum(-1)
        orientation = (weights.detach() * F.relu(cosv) ** 2).sum(-1)
    else:
        normals = torch.zeros(r, 3, device=dev, dtype=dt)
        orientation = torch.zeros(r, device=dev, dtype=dt)
    if shading == "albedo":
        color = albedo
    else:
        if light is None:
            light = origins
        ldir = F.normalize(light[:, None, :] - pts.reshape(r, s, 3), dim=-1)
        diffuse = (nrm * ldir).sum(-1).clamp(min=0.0)[..., None]
        shade = ambient + (1.0 - ambient) * diffuse
        color = albedo * shade if shading == "lambertian" else shade.expand(r, s, 3)
    rgb = (weights[..., None] * color).sum(1)
    bg = background(dirs, bg_color)
    rgb = rgb + (1.0 - opacity)[:, None] * bg
    depth_t = (weights * t).sum(-1)
    if emptiness_scale is not None:
        emptiness = torch.log1p(emptiness_scale * weights).sum(-1)
    else:
        emptiness = torch.zeros(r, device=dev, dtype=dt)
    return {"rgb": rgb, "opacity": opacity, "t": depth_t, "normals": normals, "orientation": orientation,
            "emptiness": emptiness}


def render_cameras(field: Any, background: Any, cameras: list[Camera], cfg: RenderConfig, *,
                   shading: Shading = "albedo", lights: torch.Tensor | None = None, ambient: float = 0.1,
                   bg_colors: torch.Tensor | None = None, generator: torch.Generator | None = None,
                   perturb: bool = True, need_normals: bool = False, device: Any = None,
                   chunk: int | None = None, emptiness_scale: float | None = None) -> RenderOutput:
    """Render ``B`` cameras (all the same size).

    Args:
        lights: ``(B, 3)`` light positions (default: at each camera centre).
        bg_colors: ``(B, 3)`` solid background colours (used by solid backgrounds; ``None`` = config colour).
        chunk: rays per chunk (no gradient chunking is done when gradients are enabled unless given).
    """
    if not cameras:
        raise InputError("render_cameras: no cameras given")
    h, w = cameras[0].height, cameras[0].width
    if any((c.height, c.width) != (h, w) for c in cameras):
        raise InputError("render_cameras: all cameras must have the same image size")
    dev = device if device is not None else _module_device(field)
    outs = []
    for i, cam in enumerate(cameras):
        o, d, zs = camera_ray_bundle(cam, device=dev)
        light = None if lights is None else lights[i].to(dev).expand_as(o)
        bgc = None if bg_colors is None else bg_colors[i].to(dev).expand_as(o)
        step = chunk or (cfg.chunk if not torch.is_grad_enabled() else o.shape[0])
        parts = []
        for a in range(0, o.shape[0], step):
            sl = slice(a, a + step)
            parts.append(render_rays(field, background, o[sl], d[sl], cfg, shading=shading,
                                     light=None if light is None else light[sl], ambient=ambient,
                                     bg_color=None if bgc is None else bgc[sl], generator=generator,
                                     perturb=perturb, need_normals=need_normals,
                                     emptiness_scale=emptiness_scale))
        res = {k: torch.cat([p[k] for p in parts], 0) for k in parts[0]}
        outs.append({
            "rgb": res["rgb"].reshape(h, w, 3),
            "opacity": res["opacity"].reshape(h, w),
            "depth": (res["t"] * zs).reshape(h, w),
            "normals": res["normals"].reshape(h, w, 3),
            "orientation": res["orientation"].mean(),
            "emptiness": res["emptiness"].sum(),
        })
    return RenderOutput(
        rgb=torch.stack([o["rgb"] for o in outs]),
        opacity=torch.stack([o["opacity"] for o in outs]),
        depth=torch.stack([o["depth"] for o in outs]),
        normals=torch.stack([o["normals"] for o in outs]),
        orientation=torch.stack([o["orientation"] for o in outs]).mean(),
        emptiness=torch.stack([o["emptiness"] for o in outs]).mean(),
    )


def _module_device(module: Any) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def orbit_pose(radius: float, elevation_deg: float, azimuth_deg: float) -> torch.Tensor:
    """``(4, 4)`` world_to_camera on a sphere around the origin, looking at it, with world up = ``-y``.

    Azimuth 0 puts the camera on ``+z`` (the object's front); positive elevation is above (towards ``-y``).
    """
    import math

    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    eye = (radius * math.cos(el) * math.sin(az), -radius * math.sin(el), radius * math.cos(el) * math.cos(az))
    up = (0.0, -1.0, 0.0)
    if abs(abs(elevation_deg) - 90.0) < 1e-3:
        up = (0.0, 0.0, -1.0)
    return Camera.look_at_pose(eye, (0.0, 0.0, 0.0), up)


def orbit_camera(radius: float, elevation_deg: float, azimuth_deg: float, fov_deg: float, size: int) -> Camera:
    """Square camera ``size x size`` at the given orbit position (see :func:`orbit_pose`)."""
    return Camera.from_fov(fov_deg, size, size, orbit_pose(radius, elevation_deg, azimuth_deg))
