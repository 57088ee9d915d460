"""Mesh and video export of an object NeRF.

* :func:`extract_mesh` -- sample the density on a regular grid over ``[-bound, bound]^3``, run
  marching cubes (``skimage.measure.marching_cubes``) at a chosen or automatic iso-level, drop small
  floating components, colour the vertices with the albedo. Returns a
  :class:`scenescape.geometry.mesh.SceneMesh` (world coordinates, OpenCV axes).
* :func:`auto_threshold` -- Otsu's split of ``log(1 + density)`` over the grid separates empty space
  from the object (the density of a converged NeRF is bimodal); the level is then the midpoint of
  the two classes' median densities.
* :func:`orbit_video` -- RGB next to normals (or depth) on a circle of cameras.
* :func:`export_run_outputs` -- everything a run folder gets: ``mesh.{glb,obj,ply}``, ``video.mp4``.

Files are written with :func:`scenescape.io.meshes.save_mesh` in the object frame (``frame="object"``: Z up
in PLY, y up in glTF, the front - the azimuth-0 side - facing glTF's ``+Z`` / Blender's ``-Y``), with the
orbit-video cameras embedded in the GLB.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError
from scenescape.fields.volume import camera_ray_bundle, render_cameras
from scenescape.geometry.camera import Camera
from scenescape.io import colorize_depth, write_video


def _device(module: Any) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def density_grid(fld: Any, resolution: int = 128, bound: float | None = None, chunk: int = 65536) -> np.ndarray:
    """``(R, R, R)`` float32 densities at the grid points ``linspace(-bound, bound, R)`` (index order x, y, z)."""
    bound = float(bound if bound is not None else fld.bound)
    dev = _device(fld)
    lin = torch.linspace(-bound, bound, resolution, device=dev)
    gx, gy, gz = torch.meshgrid(lin, lin, lin, indexing="ij")
    pts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)
    out = torch.cat([fld.density(pts[i:i + chunk]).float() for i in range(0, pts.shape[0], chunk)])
    return out.reshape(resolution, resolution, resolution).cpu().numpy()


def auto_threshold(grid: np.ndarray) -> float:
    """Iso-level separating empty space from the object.

    Otsu's method on ``log1p(density)`` splits the grid values into empty and solid; the level is the
    midpoint of the two classes' median densities.
    """
    v = np.log1p(np.clip(grid.reshape(-1).astype(np.float64), 0, None))
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-9:
        raise InputError("the density field is constant; there is no surface to extract (train longer?)")
    hist, edges = np.histogram(v, bins=256, range=(lo, hi))
    p = hist.astype(np.float64) / hist.sum()
    centers = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centers)
    mt = m0[-1]
    w1 = 1 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0) ** 2 / (w0 * w1)
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    k = int(np.argmax(between[:-1]))
    split = edges[k + 1]
    d = np.expm1(v)
    # Midway (in density) between the typical empty and the typical solid value: the iso-surface of a
    # smooth step then sits at its middle rather than at Otsu's log-space split.
    return float(0.5 * (np.median(d[v < split]) + np.median(d[v >= split])))


def remove_small_components(faces: np.ndarray, n_vertices: int, min_fraction: float) -> np.ndarray:
    """Keep faces whose connected component has at least ``min_fraction`` x the faces of the largest."""
    if faces.shape[0] == 0 or min_fraction <= 0:
        return faces
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones_like(a), (a, b)), shape=(n_vertices, n_vertices))
    _, labels = connected_components(graph, directed=False)
    face_label = labels[faces[:, 0]]
    counts = np.bincount(face_label)
    keep = counts[face_label] >= min_fraction * counts.max()
    return faces[keep]


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.unique(faces)
    remap = np.full(vertices.shape[0], -1, np.int64)
    remap[used] = np.arange(used.size)
    return vertices[used], remap[faces]


@torch.no_grad()
def extract_mesh(fld: Any, resolution: int = 128, threshold: float | None = None, bound: float | None = None,
                 min_component: float = 0.05, chunk: int = 65536) -> Any:
    """Marching-cubes mesh of ``fld``'s density with albedo vertex colours.

    Args:
        fld: a field with ``density(x (N, 3)) -> (N,)`` and ``forward(x) -> (sigma, albedo (N, 3))``.
        resolution: grid points per axis.
        threshold: density iso-level (None = :func:`auto_threshold`).
        bound: half-size of the grid cube (default ``fld.bound``).
        min_component: drop components with fewer faces than this fraction of the largest (0 keeps all).

    Returns:
        :class:`scenescape.geometry.mesh.SceneMesh` in world coordinates.
    """
    from skimage.measure import marching_cubes

    from scenescape.geometry.mesh import SceneMesh

    if resolution < 8:
        raise InputError(f"mesh resolution must be >= 8, got {resolution}")
    bound = float(bound if bound is not None else fld.bound)
    grid = density_grid(fld, resolution, bound, chunk)
    level = auto_threshold(grid) if threshold is None else float(threshold)
    how = "automatic (Otsu) level" if threshold is None else "output.mesh_threshold"
    lo, hi = float(grid.min()), float(grid.max())
    if not lo < level < hi:
        raise InputError(f"mesh threshold {level:.4g} ({how}) is outside the density range "
                         f"[{lo:.4g}, {hi:.4g}]; choose output.mesh_threshold inside it")
    spacing = (2 * bound / (resolution - 1),) * 3
    verts, faces, _, _ = marching_cubes(grid, level=level, spacing=spacing, gradient_direction="ascent")
    verts = (verts - bound).astype(np.float32)
    faces = remove_small_components(faces.astype(np.int64), verts.shape[0], min_component)
    if faces.shape[0] == 0:
        raise InputError(f"marching cubes found no surface at density threshold {level:.4g} ({how}; density "
                         f"range [{lo:.4g}, {hi:.4g}]); choose output.mesh_threshold inside that range")
    verts, faces = _compact(verts, faces)
    dev = _device(fld)
    vt = torch.from_numpy(verts).to(dev)
    colors = torch.cat([fld(vt[i:i + chunk])[1].float() for i in range(0, vt.shape[0], chunk)]).cpu()
    return SceneMesh(torch.from_numpy(verts), torch.from_numpy(faces), colors)


@torch.no_grad()
def surface_normals(fld: Any, camera: Camera, depth: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """``(H, W, 3)`` normals in ``[0, 1]`` colours at the rendered surface (white where empty).

    Normals are evaluated once per pixel at the expected depth (cheaper than per sample).
    """
    dev = depth.device
    o, d, zs = camera_ray_bundle(camera, device=dev)
    t = depth.reshape(-1) / zs
    pts = o + d * t[:, None]
    n = fld.normals(pts)  # world, outward
    cam_n = n @ camera.world_to_camera[:3, :3].to(dev).T  # camera axes
    col = (cam_n * torch.tensor([1.0, -1.0, -1.0], device=dev) + 1) / 2  # x right, y up, z towards viewer
    a = opacity.reshape(-1, 1).clamp(0, 1)
    col = a * col + (1 - a)
    return col.reshape(camera.height, camera.width, 3)


def orbit_cameras(radius: float, elevation: float, fov: float, size: int, frames: int) -> list[Camera]:
    from scenescape.fields.volume import orbit_camera

    return [orbit_camera(radius, elevation, 360.0 * k / frames - 180.0, fov, size) for k in range(frames)]


@torch.no_grad()
def orbit_frames(fld: Any, bg: Any, render_cfg: Any, cameras: list[Camera], extra: str = "normals",
                 bg_color: tuple[float, float, float] | None = (1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """Frames ``(H, 2W, 3)`` uint8: albedo RGB | normals or depth for each camera."""
    frames = []
    for cam in cameras:
        bgc = None if bg_color is None else torch.tensor(bg_color).expand(1, 3)
        r = render_cameras(fld, bg, [cam], render_cfg, shading="albedo", bg_colors=bgc, perturb=False,
                           device=_device(fld))
        rgb = (r.rgb[0].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        if extra == "depth":
            side = colorize_depth(r.depth[0].cpu().numpy(), r.opacity[0].cpu().numpy() > 0.5)
        else:
            nrm = surface_normals(fld, cam, r.depth[0], r.opacity[0])
            side = (nrm.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        frames.append(np.concatenate([rgb, side], axis=1))
    return frames


def orbit_video(fld: Any, bg: Any, cfg: Any, path: str | Path) -> Path:
    """Write the orbit video of an :class:`~scenescape.pipelines.object.pipeline.ObjectConfig` run to ``path``."""
    o = cfg.output
    cams = orbit_cameras(cfg.camera.eval_radius, cfg.camera.eval_elevation, cfg.camera.eval_fov, o.video_size,
                         o.video_frames)
    bgc = None if cfg.background.kind == "mlp" else tuple(cfg.background.color)
    frames = orbit_frames(fld, bg, cfg.render, cams, o.video_extra, bgc)
    write_video(path, frames, fps=o.video_fps)
    return Path(path)


def export_run_outputs(fld: Any, bg: Any, cfg: Any, out_dir: str | Path,
                       not_written: dict[str, str] | None = None) -> dict[str, str]:
    """Mesh files (``output.mesh_formats``) and ``video.mp4`` in ``out_dir``; returns ``{name: path}``.

    With ``not_written`` (a dict), a mesh that cannot be extracted (no surface at the threshold, a
    constant density) does not stop the export: ``not_written["mesh"]`` gets the reason and how to
    re-export, and the video is still written. Without it the :class:`InputError` propagates.
    """
    out = Path(out_dir)
    files: dict[str, str] = {}
    was = fld.training
    fld.eval()
    try:
        o = cfg.output
        from scenescape.io.meshes import save_mesh

        cams = orbit_cameras(cfg.camera.eval_radius, cfg.camera.eval_elevation, cfg.camera.eval_fov,
                             o.video_size, o.video_frames)
        try:
            mesh = extract_mesh(fld, o.mesh_resolution, o.mesh_threshold, min_component=o.mesh_min_component)
        except InputError as e:
            if not_written is None:
                raise
            mesh = None
            not_written["mesh"] = (f"{e}, then re-export with `scenescape object --export {out} "
                                   "output.mesh_threshold=VALUE` (or train longer)")
        for fmt in o.mesh_formats if mesh is not None else ():
            p = out / f"mesh.{fmt}"
            save_mesh(mesh, p, frame="object", cameras=cams)
            files[f"mesh_{fmt}"] = str(p)
        files["video"] = str(orbit_video(fld, bg, cfg, out / "video.mp4"))
    finally:
        fld.train(was)
    return files


def sphere_radius_error(mesh: Any, radius: float, center: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> float:
    """Relative error of the mean vertex distance from ``center`` vs ``radius`` (for checks)."""
    v = mesh.vertices.detach().cpu().double()
    r = (v - torch.tensor(center, dtype=torch.float64)).norm(dim=-1).mean().item()
    return abs(r - radius) / radius if math.isfinite(r) else float("inf")
