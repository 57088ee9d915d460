"""The warp-inpaint step: the one function that renders the mesh into a new camera and extends it from there.

:func:`warp_inpaint_step` is scene mode's per-frame algorithm. :class:`~scenescape.pipelines.scene.ScenePipeline`
calls it for every frame after the first, and so do the evaluation's oracle fusion
(:func:`scenescape.evaluation.fuse_with_oracle`), the fidelity benchmarks and the tests: there is no other
copy of it. For a new camera:

1. render the mesh into the camera (``mask.supersample``);
2. the disocclusion mask: pixels the mesh does not cover, dilated (``mask.dilate``; ``open_kernel``,
   ``close_kernel`` and ``fill`` as :func:`~scenescape.geometry.masks.disocclusion_mask`), optionally plus
   SceneScape's floating-artifact border fix (``mask.border_fix``), plus (``mask.edge_ring``) the rendered
   pixels on the far side of a depth discontinuity (an occluder's mesh ends at its last pixel centre, so the
   background shows just outside its edge): they are inpainted, but get geometry (step 6) only where the new
   depth is nearer than the rendered one. With ``mask.opening`` the mask is opened and the slivers the opening
   removes are filled by OpenCV Telea instead of the inpainter (SceneScape);
3. inpaint the masked pixels (the given seed);
4. composite: known pixels keep EXACTLY the rendered colours; inside the mask the inpainted colours are
   feathered towards the rendered ones over ``composite.feather`` pixels (only where the mesh rendered);
5. depth for the new pixels: the depth backend's estimate, aligned to the rendered depth on the known pixels
   (``align.mode: robust``: scale and shift, :func:`~scenescape.geometry.depth_align.align_depth`, then a
   smooth seam correction, :func:`~scenescape.geometry.depth_align.blend_to_known`), or used as it is
   (``align.mode: none``);
6. extend the mesh with the new pixels, stitched to the existing surface (``mesh`` options: which triangles
   are kept).

Arrays: images ``(H, W, 3)`` float32 in [0, 1], masks ``(H, W)`` bool, depth ``(H, W)`` float32 z-depth.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
import torch

from scenescape.backends.base import DepthEstimator, Inpainter
from scenescape.errors import ScenescapeError
from scenescape.geometry.camera import Camera
from scenescape.geometry.depth_align import align_depth, blend_to_known
from scenescape.geometry.masks import confirm_nearer, disocclusion_mask
from scenescape.geometry.mesh import SceneMesh
from scenescape.geometry.raster import RenderOutput, render_mesh
from scenescape.pipelines.scene.config import AlignConfig, CompositeConfig, MaskConfig, MeshConfig
from scenescape.pipelines.scene.inputs import to_numpy, validate_depth


@contextmanager
def timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    """Add the seconds the ``with`` block takes to ``timings[stage]`` (nothing when ``timings`` is None)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t


@dataclasses.dataclass
class StepResult:
    """What :func:`warp_inpaint_step` made of one new camera.

    Attributes:
        image: ``(H, W, 3)`` float32, the new frame (rendered pixels exactly, inpainted ones composited).
        depth: ``(H, W)`` float32 z-depth of the frame (new depth where geometry was added, else rendered).
        mask: ``(H, W)`` bool, the pixels that were new (inpainted).
        geometry_mask: ``(H, W)`` bool, the pixels that got new geometry (``mask`` less the edge band where
            the existing surface was confirmed).
        render: the mesh's render into the camera before the step.
        missing: pixels the render left uncovered.
        faces_added: faces the step added to the mesh.
    """

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    geometry_mask: np.ndarray
    render: RenderOutput
    missing: int
    faces_added: int


def composite(inpainted: np.ndarray, rendered: np.ndarray, rendered_valid: np.ndarray, mask: np.ndarray,
              feather: int) -> np.ndarray:
    """Known pixels keep ``rendered`` exactly; inside ``mask`` the inpainted colours, feathered.

    Inside the mask, at distance ``d`` (1 = touching a known pixel) from the known region, the result
    is ``a * inpainted + (1 - a) * rendered`` with ``a = d / (feather + 1)`` (capped at 1), but only
    where the mesh rendered a colour (``rendered_valid``); elsewhere it is the inpainted colour.
    All arrays ``(H, W, 3)`` / ``(H, W)``.
    """
    out = np.where(mask[..., None], inpainted, rendered).astype(np.float32)
    if feather > 0 and mask.any() and (~mask).any():
        dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        a = np.clip(dist / (feather + 1.0), 0.0, 1.0)
        band = mask & rendered_valid & (a < 1.0)
        if band.any():
            aa = a[band][:, None]
            out[band] = aa * inpainted[band] + (1.0 - aa) * rendered[band]
    return out


def telea(image: np.ndarray, mask: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """OpenCV Telea fill of ``mask`` ``(H, W)`` in ``image`` ``(H, W, 3)`` (8-bit internally)."""
    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.inpaint(u8, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0


def border_mask(prev_depth: np.ndarray, prev_cam: Camera, cam: Camera, pad: int, device: Any) -> np.ndarray:
    """SceneScape's floating-artifact fix: where the previous view, padded by ``pad`` px (edge depth
    replicated), shows its padding when rendered into ``cam``. ``prev_depth`` ``(H, W)``; returns bool."""
    d = np.pad(to_numpy(prev_depth), pad, mode="edge")
    flag = np.ones((*d.shape, 3), np.float32)
    flag[pad:pad + prev_cam.height, pad:pad + prev_cam.width] = 0.0
    pcam = prev_cam.cropped(-pad, -pad, prev_cam.width + 2 * pad, prev_cam.height + 2 * pad)
    tmp = SceneMesh.from_rgbd(torch.as_tensor(flag, device=device), torch.as_tensor(d, device=device), pcam)
    r = render_mesh(tmp, cam)
    return to_numpy(r.mask, bool) & (to_numpy(r.image)[..., 0] > 0.5)


def new_view_masks(render: RenderOutput, cfg: MaskConfig, cam: Camera, prev_cam: Camera | None = None,
                   prev_depth: np.ndarray | None = None, device: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, base)`` of a new view: the inpainting mask and the part of it that is new whatever the depth
    (``mask & ~base`` is the ``edge_ring`` band: geometry only where the new depth is nearer)."""
    opts = cfg.disocclusion_options()
    base = to_numpy(disocclusion_mask(render.mask, **opts), bool)
    if cfg.border_fix and prev_depth is not None and prev_cam is not None:
        base |= border_mask(prev_depth, prev_cam, cam, cfg.border_pad, device)
    mask = base
    if cfg.edge_ring:
        mask = base | to_numpy(disocclusion_mask(render.mask, depth=render.depth, edge_ring=cfg.edge_ring,
                                                 edge_threshold=cfg.edge_threshold, **opts), bool)
    return mask, base


def call_inpainter(inpainter: Inpainter, image: np.ndarray, mask: np.ndarray, cam: Camera, prompt: str,
                   seed: int | None, negative_prompt: str = "") -> np.ndarray:
    """``inpainter.inpaint`` with the checks every caller needs: shape kept, finite, clipped to [0, 1]."""
    out = to_numpy(inpainter.inpaint(image, mask, cam, prompt, seed=seed, negative_prompt=negative_prompt or None))
    if out.shape != image.shape:
        raise ScenescapeError(f"inpainter {type(inpainter).__name__} returned shape {out.shape}, "
                              f"expected {image.shape}")
    if not np.isfinite(out).all():
        raise ScenescapeError(f"inpainter {type(inpainter).__name__} returned NaN or infinite values")
    return np.clip(out, 0.0, 1.0)


def call_depth(estimator: DepthEstimator, image: np.ndarray, cam: Camera, known_depth: Any = None,
               known_mask: Any = None) -> np.ndarray:
    """``estimator.estimate`` with its output checked: ``(H, W)`` float32, finite."""
    d = to_numpy(estimator.estimate(image, cam, known_depth, known_mask), np.float32)
    if d.shape != image.shape[:2]:
        raise ScenescapeError(f"depth backend {type(estimator).__name__} returned shape {d.shape}, "
                              f"expected {image.shape[:2]}")
    if not np.isfinite(d).all():
        raise ScenescapeError(f"depth backend {type(estimator).__name__} returned NaN or infinite depth")
    return d


def to_depth_space(pred: np.ndarray, prediction: str, space: str) -> np.ndarray:
    """Convert a depth backend's output (``prediction``: depth or disparity) to the fitting ``space``."""
    if prediction == "disparity" and space == "depth":
        return 1.0 / np.maximum(pred, 1e-6 * max(float(pred.max()), 1e-12))
    if prediction == "depth" and space == "disparity":
        return 1.0 / np.maximum(pred, 1e-12)
    return pred


def warp_inpaint_step(mesh: SceneMesh, cam: Camera, *, depth: DepthEstimator, inpainter: Inpainter,
                      prompt: str = "", seed: int | None = None, negative_prompt: str = "",
                      mask: MaskConfig | None = None, align: AlignConfig | None = None,
                      composite_cfg: CompositeConfig | None = None, mesh_cfg: MeshConfig | None = None,
                      prev_cam: Camera | None = None, prev_depth: np.ndarray | None = None,
                      timings: dict[str, float] | None = None, frame: int | None = None) -> StepResult:
    """Render ``mesh`` into ``cam``, inpaint and estimate what is new, and extend ``mesh`` in place.

    Args:
        mesh: the scene so far (extended in place).
        cam: the new camera.
        depth, inpainter: the backends (:class:`~scenescape.backends.base.DepthEstimator`,
            :class:`~scenescape.backends.base.Inpainter`).
        prompt, seed, negative_prompt: passed to the inpainter (``seed``: this frame's noise seed).
        mask, align, composite_cfg, mesh_cfg: the config sections (defaults when None).
        prev_cam, prev_depth: the previous camera and its ``(H, W)`` depth (only ``mask.border_fix`` uses them).
        timings: seconds per stage (``render, mask, inpaint, depth, align, extend``) are added to it.
        frame: the frame index, for messages.

    Returns:
        a :class:`StepResult`.
    """
    mcfg = mask or MaskConfig()
    acfg = align or AlignConfig()
    ccfg = composite_cfg or CompositeConfig()
    tri = (mesh_cfg or MeshConfig()).options()
    where = f"frame {frame}" if frame is not None else "new view"
    n_faces = mesh.num_faces
    with timed(timings, "render"):
        render = render_mesh(mesh, cam, supersample=mcfg.supersample)
        rimg = to_numpy(render.image)
        rdepth = to_numpy(render.depth)
        rvalid = to_numpy(render.mask, bool)
    missing = int((~rvalid).sum())

    with timed(timings, "mask"):
        new_mask, base_mask = new_view_masks(render, mcfg, cam, prev_cam, prev_depth, mesh.device)
        inpaint_mask = new_mask
        base = np.where(new_mask[..., None], 0.0, rimg).astype(np.float32)
        if mcfg.opening > 1 and new_mask.any():
            k = np.ones((mcfg.opening, mcfg.opening), np.uint8)
            opened = cv2.morphologyEx(new_mask.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)
            slivers = new_mask & ~opened
            if mcfg.sliver_fill and slivers.any():
                filled = telea(base, new_mask)
                base[slivers] = filled[slivers]
                inpaint_mask = opened

    if not new_mask.any():
        # nothing new to see: the frame is the render, the mesh is unchanged
        return StepResult(rimg.astype(np.float32), np.where(rvalid, rdepth, 0).astype(np.float32), new_mask,
                          new_mask, render, missing, 0)

    with timed(timings, "inpaint"):
        inpainted = (call_inpainter(inpainter, base, inpaint_mask, cam, prompt, seed, negative_prompt)
                     if inpaint_mask.any() else base)
        known = ~new_mask
        image = composite(inpainted, rimg, rvalid, new_mask, ccfg.feather)
        image[known] = rimg[known]

    with timed(timings, "depth"):
        known_mask = rvalid & known & (rdepth > 0)
        pred = call_depth(depth, image, cam, np.where(known_mask, rdepth, 0.0).astype(np.float32), known_mask)

    with timed(timings, "align"):
        if acfg.mode == "none":
            new_depth = validate_depth(to_depth_space(pred, acfg.prediction, "depth"), pred.shape,
                                       where=f"{where} depth")
        else:
            pred = to_depth_space(pred, acfg.prediction, acfg.space)
            if known_mask.sum() >= 16:
                aligned, _, _ = align_depth(pred, rdepth, known_mask, space=acfg.space, trim=acfg.trim)
                new_depth = blend_to_known(aligned, rdepth, known_mask, new_mask, seam=acfg.seam,
                                           max_step=acfg.max_step)
            else:
                warnings.warn(f"{where}: fewer than 16 known pixels, new depth is used without alignment",
                              stacklevel=2)
                new_depth = pred if acfg.space == "depth" else 1.0 / np.maximum(pred, 1e-12)
                new_depth = validate_depth(new_depth, pred.shape, where=f"{where} depth")
        new_depth = to_numpy(new_depth)
        geo_mask = new_mask
        if not np.array_equal(new_mask, base_mask):
            # the edge band gets geometry only where the new surface is nearer than the rendered one
            geo_mask = to_numpy(confirm_nearer(new_mask, base_mask, rdepth, new_depth, mcfg.edge_threshold), bool)

    with timed(timings, "extend"):
        if geo_mask.any():
            dev = mesh.device
            mesh.extend_from_rgbd(torch.as_tensor(image, device=dev), torch.as_tensor(new_depth, device=dev),
                                  cam, torch.as_tensor(geo_mask, device=dev), render=render,
                                  **dataclasses.asdict(tri))
    out_depth = np.where(geo_mask, new_depth, np.where(rvalid, rdepth, new_depth)).astype(np.float32)
    return StepResult(image.astype(np.float32), out_depth, new_mask, geo_mask, render, missing,
                      mesh.num_faces - n_faces)


__all__ = ["StepResult", "border_mask", "call_depth", "call_inpainter", "composite", "new_view_masks", "telea",
           "timed", "to_depth_space", "to_numpy", "warp_inpaint_step"]
