"""Image to object (RealFusion): one photo, a reference camera, and score distillation elsewhere.

The photo gives the object at one known view; the score model (with a token learned from the photo
by textual inversion) gives every other view. Pieces, each usable alone:

* :func:`load_rgba` / :func:`object_mask`: the photo and its object mask -- from the alpha channel,
  a mask file, or OpenCV GrabCut (a classical foreground estimate) when neither is given;
* :func:`reference_view`: the square reference image, soft mask and camera (elevation, azimuth,
  fov set; distance set or estimated from the mask's extent, :func:`estimate_radius`);
* :class:`ReferenceLoss`: the reconstruction loss at the reference view, added to the training
  loss every ``reference_every`` steps -- ``image * MSE(rgb, photo on white) + mask * MSE(opacity,
  mask) + normal_smooth * ||grad of the rendered normal image||^2 + depth * (1 - pearson(depth,
  estimated depth))`` inside the mask (RealFusion's weights: image 5, mask 0.5, normal smoothness 0.5);
* :func:`setup_image_run`: writes ``reference.png`` / ``reference_mask.png`` into the run folder, runs
  (or reuses, or resumes) textual inversion into ``textual_inversion/`` and loads the token into the
  guidance model, and returns the :class:`ReferenceLoss` the pipeline adds.

Camera conventions are the object pipeline's (:func:`scenescape.fields.volume.orbit_camera`):
azimuth 0 is the object's front (+z), elevation in degrees above the horizon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from scenescape.backends.base import BackendConfig
from scenescape.backends.guidance.textual_inversion import TextualInversionConfig
from scenescape.errors import ConfigError, InputError
from scenescape.fields.volume import RenderConfig, orbit_camera, render_cameras
from scenescape.geometry.camera import Camera


@dataclass
class ReferenceConfig:
    """The reference view's camera. ``radius: null`` estimates the distance from the mask's extent."""

    elevation: float = 0.0
    azimuth: float = 0.0
    radius: float | None = 1.8
    fov: float = 40.0
    resolution: int = 64
    """Size of the square reference image and of its renders (pixels)."""
    object_radius: float = 0.5
    """Radius of the object's bounding sphere assumed by the distance estimate (world units)."""


@dataclass
class ImageLossConfig:
    image: float = 5.0
    mask: float = 0.5
    normal_smooth: float = 0.5
    depth: float = 0.0
    """Weight of the depth term (needs ``image.depth.name``)."""


@dataclass
class ImageConfig:
    """Image-to-object options (``scenescape object --image photo.png``); ``path`` empty = text mode."""

    path: str = ""
    mask: str = ""
    """A mask file (white = object) of the photo's size; empty = alpha channel or GrabCut."""
    mask_source: Literal["auto", "alpha", "file", "grabcut"] = "auto"
    """``auto``: the mask file if given, else the alpha channel if the photo has one, else GrabCut."""
    prompt: str = "a photo of a"
    """Text before the learned token (the CLI's prompt replaces it; ``{token}`` places the token)."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    loss: ImageLossConfig = field(default_factory=ImageLossConfig)
    reference_every: int = 1
    """Add the reference loss every N steps."""
    min_mask_fraction: float = 0.002
    """Masks covering less of the photo than this are an error (no object found)."""
    depth: BackendConfig = field(default_factory=BackendConfig)
    """Depth backend (``DEPTH`` registry) for the optional depth term at the reference view."""
    textual_inversion: TextualInversionConfig = field(default_factory=TextualInversionConfig)

    def __post_init__(self) -> None:
        if self.reference_every < 1:
            raise InputError(f"image.reference_every must be >= 1, got {self.reference_every}")
        if self.reference.resolution < 8:
            raise InputError(f"image.reference.resolution must be >= 8, got {self.reference.resolution}")
        if self.loss.depth > 0 and self.path and not self.depth.name:
            raise ConfigError("image.loss.depth > 0 needs a depth backend: set image.depth.name (e.g. transformers)")


def load_rgba(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb (H, W, 3) float32 in [0, 1], alpha (H, W) float32 in [0, 1] or None)`` of an image file."""
    from scenescape.io.files import load_image_alpha

    return load_image_alpha(path)  # EXIF orientation applied, every PIL mode read as scene mode reads it


def load_mask_file(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)`` mask from a file (> 50% grey or alpha = object); it must match ``shape``."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise InputError(f"mask '{p}' does not exist (check image.mask / --mask)")
    try:
        from PIL import ImageOps

        with Image.open(p) as im:
            im.load()
            a = np.asarray(ImageOps.exif_transpose(im).convert("LA"))
    except Exception as e:
        raise InputError(f"mask '{p}' cannot be read as an image ({type(e).__name__}: {e})") from e
    if a.shape[:2] != tuple(shape):
        raise InputError(f"mask '{p}' is {a.shape[1]}x{a.shape[0]} but the photo is {shape[1]}x{shape[0]}; "
                         "give a mask of the photo's size")
    grey, alpha = a[..., 0], a[..., 1]
    return (grey > 127) & (alpha > 127)


def grabcut_mask(rgb: np.ndarray, border: float = 0.05, iterations: int = 5) -> np.ndarray:
    """Classical foreground estimate: OpenCV GrabCut initialised with everything but a border of
    ``border`` x the image size as "probably foreground"; the largest connected component is kept."""
    import cv2

    h, w = rgb.shape[:2]
    img = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1].copy()  # OpenCV wants BGR
    bx, by = max(1, int(round(border * w))), max(1, int(round(border * h)))
    if w - 2 * bx < 2 or h - 2 * by < 2:
        raise InputError(f"image {w}x{h} is too small for GrabCut; give a mask or an RGBA image")
    mask = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img, mask, (bx, by, w - 2 * bx, h - 2 * by), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == keep


def object_mask(rgb: np.ndarray, alpha: np.ndarray | None, cfg: ImageConfig) -> tuple[np.ndarray, str]:
    """Bool ``(H, W)`` object mask and where it came from (``alpha``, ``file`` or ``grabcut``)."""
    src = cfg.mask_source
    if src == "auto":
        src = "file" if cfg.mask else ("alpha" if alpha is not None and alpha.min() < 0.5 else "grabcut")
    if src == "file":
        if not cfg.mask:
            raise ConfigError("image.mask_source=file needs image.mask (a mask file)")
        m = load_mask_file(cfg.mask, rgb.shape[:2])
    elif src == "alpha":
        if alpha is None:
            raise InputError(f"image '{cfg.path}' has no alpha channel; use mask_source=grabcut or give a mask")
        m = alpha > 0.5
    else:
        m = grabcut_mask(rgb)
    frac = float(m.mean())
    if frac < cfg.min_mask_fraction:
        raise InputError(f"no object found in '{cfg.path}': the {src} mask covers {100 * frac:.2g}% of the image "
                         f"(< {100 * cfg.min_mask_fraction:.2g}%); give a mask file (--mask) or an RGBA photo "
                         "whose alpha marks the object")
    if frac > 0.98:
        raise InputError(f"the {src} mask of '{cfg.path}' covers the whole image; the object needs a background "
                         "around it (give a mask file or an RGBA photo)")
    return m, src


def square_pad(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pad to a square (centred) with white and mask 0."""
    h, w = mask.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    out = np.ones((s, s, 3), np.float32)
    m = np.zeros((s, s), np.float32)
    out[top:top + h, left:left + w] = rgb
    m[top:top + h, left:left + w] = mask
    return out, m


def estimate_radius(mask: np.ndarray, fov_deg: float, object_radius: float = 0.5) -> float:
    """Camera distance at which a sphere of ``object_radius`` spans the mask's extent.

    A sphere of radius ``r`` at distance ``d`` subtends a half-angle ``asin(r / d)``; the mask's
    half-extent (the larger side of its bounding box, a fraction ``f`` of a square image) subtends
    ``atan(f tan(fov / 2))``, so ``d = r / sin(atan(f tan(fov / 2)))``.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InputError("cannot estimate the reference distance from an empty mask")
    side = max(mask.shape)
    f = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / side
    half = math.atan(f * math.tan(math.radians(fov_deg) / 2))
    return object_radius / math.sin(half)


def check_reference_camera(ref: ReferenceConfig, radius: float, render: RenderConfig) -> None:
    if not -90.0 <= ref.elevation <= 90.0:
        raise InputError(f"image.reference.elevation must be in [-90, 90] degrees, got {ref.elevation}")
    if not -360.0 <= ref.azimuth <= 360.0:
        raise InputError(f"image.reference.azimuth must be in [-360, 360] degrees, got {ref.azimuth}")
    if not 1.0 <= ref.fov <= 150.0:
        raise InputError(f"image.reference.fov must be in [1, 150] degrees, got {ref.fov}")
    if not render.radius < radius <= 20 * render.radius:
        raise InputError(f"the reference camera's distance {radius:.3g} is out of range: it must be outside the "
                         f"scene sphere (render.radius {render.radius}) and at most {20 * render.radius:g}; set "
                         "image.reference.radius (or null to estimate it from the mask)")


@dataclass
class ReferenceView:
    """``rgb (S, S, 3)`` the photo composited on white, ``mask (S, S)`` soft, the camera, the source
    of the mask, and ``depth (S, S)`` from the depth backend (or None)."""

    rgb: torch.Tensor
    mask: torch.Tensor
    camera: Camera
    radius: float
    mask_source: str
    depth: torch.Tensor | None = None


def reference_view(cfg: ImageConfig, render: RenderConfig) -> ReferenceView:
    """Read the photo and its mask and build the reference view (errors name the problem)."""
    import cv2

    if not cfg.path:
        raise ConfigError("image-to-object needs image.path (--image photo.png)")
    rgb, alpha = load_rgba(cfg.path)
    mask, src = object_mask(rgb, alpha, cfg)
    if alpha is not None and src == "alpha":  # un-premultiply nothing: composite the photo on white
        a = alpha[..., None]
        rgb = rgb * a + (1 - a)
    else:
        rgb = rgb * mask[..., None] + (1 - mask[..., None])
    sq, m = square_pad(rgb, mask.astype(np.float32) if alpha is None or src != "alpha" else alpha)
    s = cfg.reference.resolution
    interp = cv2.INTER_AREA if sq.shape[0] > s else cv2.INTER_LINEAR
    sq = cv2.resize(sq, (s, s), interpolation=interp)
    m = cv2.resize(m, (s, s), interpolation=interp)
    ref = cfg.reference
    radius = ref.radius if ref.radius is not None else estimate_radius(m > 0.5, ref.fov, ref.object_radius)
    check_reference_camera(ref, radius, render)
    cam = orbit_camera(radius, ref.elevation, ref.azimuth, ref.fov, s)
    return ReferenceView(torch.from_numpy(np.ascontiguousarray(sq)).float().clamp(0, 1),
                         torch.from_numpy(np.ascontiguousarray(m)).float().clamp(0, 1), cam, float(radius), src)


def normal_smoothness(normals: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels of a normal image ``(..., H, W, 3)``."""
    dy = normals[..., 1:, :, :] - normals[..., :-1, :, :]
    dx = normals[..., :, 1:, :] - normals[..., :, :-1, :]
    return (dy ** 2).mean() + (dx ** 2).mean()


def pearson_depth_loss(depth: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - corr(depth, target)`` over the mask (scale- and shift-invariant)."""
    sel = mask > 0.5
    if int(sel.sum()) < 2:
        return depth.sum() * 0
    a, b = depth[sel], target[sel].to(depth)
    a, b = a - a.mean(), b - b.mean()
    return 1 - (a * b).sum() / (a.norm() * b.norm() + 1e-8)


class ReferenceLoss:
    """The reconstruction loss at the reference view: ``(step, field, background, generator) -> (loss, stats)``."""

    is_reference_loss = True

    def __init__(self, ref: ReferenceView, cfg: ImageConfig, render: RenderConfig, device: Any = "cpu"):
        self.ref = ref
        self.cfg = cfg
        self.render = render
        self.device = device
        self.white = torch.ones(1, 3)

    def __call__(self, step: int, fld: Any, bg: Any, g: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.cfg.loss
        if step % self.cfg.reference_every:
            return torch.zeros((), device=self.device), {}
        need_normals = w.normal_smooth > 0
        r = render_cameras(fld, bg, [self.ref.camera], self.render, shading="albedo", bg_colors=self.white,
                           generator=g, perturb=True, need_normals=need_normals, device=self.device)
        rgb, opa = r.rgb[0], r.opacity[0]
        gt, m = self.ref.rgb.to(rgb.device), self.ref.mask.to(rgb.device)
        l_img = torch.mean((rgb - gt) ** 2)
        l_mask = torch.mean((opa - m) ** 2)
        loss = w.image * l_img + w.mask * l_mask
        stats = {"ref_image": float(l_img.detach()), "ref_mask": float(l_mask.detach())}
        if need_normals:
            l_ns = normal_smoothness(r.normals[0])
            loss = loss + w.normal_smooth * l_ns
            stats["ref_normal_smooth"] = float(l_ns.detach())
        if w.depth > 0 and self.ref.depth is not None:
            l_d = pearson_depth_loss(r.depth[0], self.ref.depth, m)
            loss = loss + w.depth * l_d
            stats["ref_depth"] = float(l_d.detach())
        return loss, stats


def image_prompt(prompt: str | None, cfg: ImageConfig) -> str:
    """The run's prompt: ``prompt`` (or ``cfg.prompt``) with the learned token placed at ``{token}``
    or appended (when textual inversion is on)."""
    text = (prompt or "").strip() or cfg.prompt.strip()
    ti = cfg.textual_inversion
    if not ti.enabled:
        text = text.replace("{token}", "").strip()
        if not text:
            raise InputError("image-to-object without textual inversion needs a prompt (e.g. \"a teddy bear\")")
        return text
    if "{token}" in text:
        return text.replace("{token}", ti.token)
    if ti.token in text.split():  # already placed (a resumed run passes its saved prompt)
        return text
    return f"{text} {ti.token}".strip()


def setup_image_run(cfg: Any, out: Path, guidance: Any, device: Any = "cpu", progress: bool = False) -> ReferenceLoss:
    """Prepare an image run in ``out`` (``cfg`` an :class:`ObjectConfig`): reference files, depth,
    textual inversion (trained, reused or resumed; loaded into ``guidance``). Returns the loss to add."""
    from scenescape.io import save_image, save_mask

    icfg: ImageConfig = cfg.image
    ref = reference_view(icfg, cfg.render)
    save_image(out / "reference.png", ref.rgb)
    save_mask(out / "reference_mask.png", ref.mask > 0.5)
    if icfg.loss.depth > 0:
        from scenescape.backends.base import DEPTH

        est = icfg.depth.build(DEPTH)
        d = est.estimate(ref.rgb.numpy(), ref.camera)
        ref.depth = torch.as_tensor(np.asarray(d), dtype=torch.float32)
    ti = icfg.textual_inversion
    if ti.enabled:
        model = getattr(guidance, "model", None)
        if model is None or not hasattr(model, "load_textual_inversion"):
            raise ConfigError(f"textual inversion needs a text-conditioned score model (stable_diffusion), not "
                              f"'{cfg.guidance.name}'; set image.textual_inversion.enabled=false")
        from scenescape.backends.guidance.textual_inversion import train_textual_inversion

        if ti.token not in model.tokenizer.get_vocab():
            # the photo as the reference crops see it: composited, square, at the model's resolution
            rgb, alpha = load_rgba(icfg.path)
            mask, _ = object_mask(rgb, alpha, icfg)
            train_textual_inversion(model, rgb, mask, out / "textual_inversion", ti, seed=cfg.seed,
                                    progress=progress)
    return ReferenceLoss(ref, icfg, cfg.render, device)


__all__ = [
    "ImageConfig", "ImageLossConfig", "ReferenceConfig", "ReferenceLoss", "ReferenceView", "check_reference_camera",
    "estimate_radius", "grabcut_mask", "image_prompt", "load_mask_file", "load_rgba", "normal_smoothness",
    "object_mask", "pearson_depth_loss", "reference_view", "setup_image_run",
]
