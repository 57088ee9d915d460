"""``SceneMesh``: a vertex-coloured triangle mesh that grows by appending RGB-D views.

* ``vertices`` ``(N, 3)`` float32 world coordinates (OpenCV world of the cameras), ``faces`` ``(M, 3)`` int64,
  ``colors`` ``(N, 3)`` float32 in [0, 1]; all on one device (CPU or CUDA).
* Faces made from a camera are counter-clockwise in that camera's image (see
  :mod:`scenescape.geometry.triangulate`).
* Mesh files (``.ply``, ``.obj``, ``.glb``) are written and read by :mod:`scenescape.io.meshes` (the world
  frame and colour encodings of files: :mod:`scenescape.io.world`), as are ``.npz`` checkpoints (exact
  float32/int64, no pickle): ``save_mesh(mesh, path)`` / ``load_mesh(path)``. Geometry sits below io, so
  ``SceneMesh`` holds no file code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from scenescape.errors import InputError
from scenescape.geometry.camera import Camera
from scenescape.geometry.masks import dilate_mask
from scenescape.geometry.projection import unproject
from scenescape.geometry.triangulate import TriangulationOptions, grid_triangles, max3, min3


@dataclass
class ExtendStats:
    """What one :meth:`SceneMesh.extend_from_rgbd` call did."""

    vertices_added: int
    faces_added: int
    faces_dropped: int  # candidate triangles dropped as stretched across depth discontinuities
    seam_vertices: int  # existing vertices reused by the new faces (stitching)
    pixels: int  # mask pixels offered

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def __getitem__(self, key: str) -> int:
        return getattr(self, key)


def _to_tensor(x: Any, name: str, device: torch.device) -> torch.Tensor:
    if torch.is_tensor(x):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as e:
            raise InputError(f"{name} must be an array or tensor: {e}") from e
    return t.to(device)


def _check_image(image: Any, cam: Camera, device: torch.device) -> torch.Tensor:
    img = _to_tensor(image, "image", device)
    h, w = cam.height, cam.width
    if img.shape != (h, w, 3):
        raise InputError(f"image must have shape (H, W, 3) = ({h}, {w}, 3) to match the camera, "
                         f"got {tuple(img.shape)}")
    if img.dtype == torch.uint8:
        return img.float() / 255.0
    if not img.is_floating_point():
        raise InputError(f"image must be float in [0, 1] (or uint8), got dtype {img.dtype}")
    img = img.float()
    lo, hi = (float(x) for x in torch.aminmax(img))  # NaN if any value is NaN, +-inf if any is infinite
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("image contains NaN or infinite values")
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"image values must be in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
    return img if lo >= 0 and hi <= 1 else img.clamp(0, 1)


def _check_mask(mask: Any, cam: Camera, device: torch.device) -> torch.Tensor:
    h, w = cam.height, cam.width
    if mask is None:
        return torch.ones(h, w, dtype=torch.bool, device=device)
    m = _to_tensor(mask, "mask", device)
    if m.shape != (h, w):
        raise InputError(f"mask must have shape (H, W) = ({h}, {w}) to match the camera, got {tuple(m.shape)}")
    m = m.bool()
    if not m.any():
        raise InputError("mask is empty (no pixel to add); pass a mask with at least one True pixel")
    return m


def _check_depth(depth: Any, cam: Camera, mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    h, w = cam.height, cam.width
    d = _to_tensor(depth, "depth", device)
    if d.dim() == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.shape != (h, w):
        raise InputError(f"depth must have shape (H, W) = ({h}, {w}) to match the camera, got {tuple(d.shape)}")
    if not (d.is_floating_point() or d.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise InputError(f"depth must be numeric, got dtype {d.dtype}")
    d = torch.where(mask, d.float(), 1.0)  # 1 outside the mask (not used there; keeps the checks to the mask)
    lo, hi = (float(x) for x in torch.aminmax(d))  # NaN if any value is NaN, +-inf if any is infinite
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("depth has NaN or infinite values inside the mask; depth must be finite z-depth > 0")
    if lo <= 0:
        raise InputError(f"depth has {int((d <= 0).sum())} non-positive values inside the mask; "
                         "depth must be z-depth > 0 wherever pixels are added")
    return d


class SceneMesh:
    """Vertex-coloured triangle mesh on a device.

    Args:
        vertices: ``(N, 3)`` float world coordinates (default empty).
        faces: ``(M, 3)`` integer vertex indices.
        colors: ``(N, 3)`` float in [0, 1] (default grey).
        device: where to keep the tensors (default: the vertices' device, else CPU).
    """

    def __init__(self, vertices: Any = None, faces: Any = None, colors: Any = None, device: Any = None) -> None:
        if device is None:
            device = vertices.device if torch.is_tensor(vertices) else torch.device("cpu")
        device = torch.device(device)
        v = torch.zeros(0, 3) if vertices is None else _to_tensor(vertices, "vertices", device)
        f = torch.zeros(0, 3, dtype=torch.int64) if faces is None else _to_tensor(faces, "faces", device)
        v = v.to(device=device, dtype=torch.float32).reshape(-1, 3) if v.numel() == 0 else v.to(device).float()
        f = f.to(device).reshape(-1, 3) if f.numel() == 0 else f.to(device)
        if v.dim() != 2 or v.shape[1] != 3:
            raise InputError(f"vertices must be (N, 3), got {tuple(v.shape)}")
        if f.dim() != 2 or f.shape[1] != 3:
            raise InputError(f"faces must be (M, 3), got {tuple(f.shape)}")
        if f.is_floating_point():
            raise InputError(f"faces must be integer indices, got dtype {f.dtype}")
        f = f.long()
        if not torch.isfinite(v).all():
            raise InputError("vertices contain NaN or infinite values")
        if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[0]):
            raise InputError(f"faces index vertices out of range [0, {v.shape[0]})")
        if colors is None:
            c = torch.full((v.shape[0], 3), 0.5, device=device)
        else:
            c = _to_tensor(colors, "colors", device)
            if c.dtype == torch.uint8:
                c = c.float() / 255.0
            c = c.float().reshape(-1, c.shape[-1]) if c.numel() else c.float().reshape(0, 3)
            if c.shape[1] == 4:
                c = c[:, :3]
            if c.shape != (v.shape[0], 3):
                raise InputError(f"colors must be (N, 3) with N = {v.shape[0]} vertices, got {tuple(c.shape)}")
        self.vertices = v.contiguous()
        self.faces = f.contiguous()
        self.colors = c.clamp(0, 1).contiguous()

    # ------------------------------------------------------------------ storage
    # ``vertices``/``faces``/``colors`` are views of buffers with spare capacity, so that appending a frame
    # costs what the frame adds, not a copy of the whole mesh (amortised: the buffers grow by half when full).
    # Assigning any of them replaces its buffer (and drops the cached chunk bounds).
    @property
    def vertices(self) -> torch.Tensor:
        return self._v[:self._nv]

    @vertices.setter
    def vertices(self, value: torch.Tensor) -> None:
        self._v, self._nv = value, int(value.shape[0])
        self._chunks = None

    @property
    def faces(self) -> torch.Tensor:
        return self._f[:self._nf]

    @faces.setter
    def faces(self, value: torch.Tensor) -> None:
        self._f, self._nf = value, int(value.shape[0])
        self._chunks = None

    @property
    def colors(self) -> torch.Tensor:
        return self._c[:self._nc]

    @colors.setter
    def colors(self, value: torch.Tensor) -> None:
        self._c, self._nc = value, int(value.shape[0])

    @staticmethod
    def _put(buf: torch.Tensor, n: int, new: torch.Tensor) -> torch.Tensor:
        """``buf`` (with ``n`` rows in use) holding ``new`` appended, grown by half when it is full."""
        need = n + new.shape[0]
        if need > buf.shape[0]:
            grown = torch.empty((max(need, buf.shape[0] + buf.shape[0] // 2, 1024), *buf.shape[1:]),
                                dtype=buf.dtype, device=buf.device)
            grown[:n] = buf[:n]
            buf = grown
        buf[n:need] = new
        return buf

    def _append_raw(self, vertices: torch.Tensor, colors: torch.Tensor, faces: torch.Tensor) -> None:
        """Append already-checked tensors (``faces`` index the whole mesh); keeps the chunk cache valid."""
        chunks = self._chunks
        if chunks is not None and (chunks[2] != self._v._version or chunks[3] != self._f._version):
            chunks = None  # changed in place since the bounds were taken
        self._v = self._put(self._v, self._nv, vertices.to(self._v.dtype))
        self._c = self._put(self._c, self._nc, colors.to(self._c.dtype))
        self._f = self._put(self._f, self._nf, faces.to(self._f.dtype))
        self._nv += int(vertices.shape[0])
        self._nc += int(colors.shape[0])
        self._nf += int(faces.shape[0])
        # appending leaves the old vertices and faces as they were: the cached bounds of full chunks still hold
        self._chunks = None if chunks is None else (chunks[0], chunks[1], self._v._version, self._f._version)

    # ------------------------------------------------------------------ chunks (frustum culling)
    CHUNK_FACES = 4096

    def face_chunks(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """World-space bounding boxes of runs of ``CHUNK_FACES`` consecutive faces, for frustum culling.

        Faces are appended a frame at a time in pixel order, so a run of consecutive faces is a compact
        piece of one frame's patch (plus its seam). Bounds of full runs are cached and extended as the mesh
        grows (each face is bounded once over a whole run); they are recomputed if the vertices or faces were
        replaced or changed in place.

        Returns:
            ``(lo, hi, starts, ends)``: ``(B, 3)`` float32 box corners and ``(B,)`` int64 face ranges
            ``[start, end)``, on the CPU.
        """
        k = self.CHUNK_FACES
        m = self.num_faces
        c = self._chunks
        if c is None or c[2] != self._v._version or c[3] != self._f._version:
            c = (torch.zeros(0, 3), torch.zeros(0, 3), self._v._version, self._f._version)
        lo, hi = c[0], c[1]
        full = m // k
        if lo.shape[0] < full:
            nlo, nhi = self._bounds(lo.shape[0] * k, full - lo.shape[0], k)
            lo, hi = torch.cat([lo, nlo]), torch.cat([hi, nhi])
        self._chunks = (lo, hi, self._v._version, self._f._version)
        if m > full * k:  # the partial last run: bounded each time (fewer than CHUNK_FACES faces)
            tlo, thi = self._bounds(full * k, 1, k)
            lo, hi = torch.cat([lo, tlo]), torch.cat([hi, thi])
        starts = torch.arange(lo.shape[0], dtype=torch.int64) * k
        ends = torch.clamp(starts + k, max=m)
        return lo, hi, starts, ends

    def _bounds(self, start: int, count: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.faces[start:start + count * k]
        n = f.shape[0]
        p = self.vertices.index_select(0, f.reshape(-1)).view(n, 3, 3).cpu()
        pad = count * k - n
        lo = min3(p)
        hi = max3(p)
        if pad:
            lo = torch.cat([lo, lo[-1:].expand(pad, 3)])
            hi = torch.cat([hi, hi[-1:].expand(pad, 3)])
        return lo.view(count, k, 3).amin(1), hi.view(count, k, 3).amax(1)

    # ------------------------------------------------------------------ basics
    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device: Any) -> SceneMesh:
        """A copy on ``device`` (``self`` if already there)."""
        if torch.device(device) == self.device:
            return self
        return SceneMesh(self.vertices.to(device), self.faces.to(device), self.colors.to(device), device=device)

    def clone(self) -> SceneMesh:
        return SceneMesh(self.vertices.clone(), self.faces.clone(), self.colors.clone(), device=self.device)

    def __repr__(self) -> str:
        return f"SceneMesh({self.num_vertices} vertices, {self.num_faces} faces, device={self.device})"

    def append(self, vertices: Any, faces: Any, colors: Any) -> None:
        """Append a mesh; its ``faces`` index its own ``vertices`` (0-based) and are offset here."""
        other = SceneMesh(vertices, faces, colors, device=self.device)
        self._append_raw(other.vertices, other.colors, other.faces + self.num_vertices)

    # ------------------------------------------------------------------ building from RGB-D
    @classmethod
    def from_rgbd(cls, image: Any, depth: Any, cam: Camera, mask: Any = None, device: Any = None,
                  **opts: Any) -> SceneMesh:
        """Mesh of one RGB-D view: one vertex per (masked) pixel, two triangles per valid 2x2 quad, triangles
        stretched across depth discontinuities dropped.

        Args:
            image: ``(H, W, 3)`` float in [0, 1] (or uint8), numpy or torch.
            depth: ``(H, W)`` z-depth, finite and > 0 wherever ``mask`` is True.
            cam: the camera of the view (H, W must match).
            mask: optional ``(H, W)`` bool, pixels to use (default all).
            device: device of the mesh (default: the depth tensor's device, else CPU).
            **opts: :class:`~scenescape.geometry.triangulate.TriangulationOptions` fields
                (``max_rel_jump``, ``min_cos``).
        """
        if device is None:
            device = depth.device if torch.is_tensor(depth) else torch.device("cpu")
        mesh = cls(device=device)
        mesh.extend_from_rgbd(image, depth, cam, mask, **opts)
        return mesh

    def extend_from_rgbd(self, image: Any, depth: Any, cam: Camera, mask: Any = None, render: Any = None,
                         **opts: Any) -> ExtendStats:
        """Add the ``mask`` pixels of an RGB-D view, stitched to the existing surface.

        New vertices: one per mask pixel (unprojected at the pixel centre). Stitching: every pixel of the
        1-pixel ring outside ``mask`` where the mesh renders reuses the existing vertex of the rendered face
        nearest that pixel (largest barycentric), so new quads that touch the ring connect to the old surface
        and no crack opens at the seam. Only triangles with at least one new vertex are added; stretched ones
        are dropped. Everything is validated before the mesh changes.

        Args:
            image: ``(H, W, 3)`` float in [0, 1]. depth: ``(H, W)`` z-depth (> 0 and finite inside ``mask``).
            cam: the view's camera. mask: ``(H, W)`` bool, non-empty (None = all pixels).
            render: the :class:`~scenescape.geometry.raster.RenderOutput` of this mesh at ``cam`` if the caller
                already has it (it is rendered otherwise).
            **opts: triangulation options (``max_rel_jump``, ``min_cos``).

        Returns:
            :class:`ExtendStats` (vertices added, faces added, faces dropped, seam vertices).
        """
        if not isinstance(cam, Camera):
            raise InputError(f"cam must be a scenescape Camera, got {type(cam).__name__}")
        topts = TriangulationOptions.from_kwargs(**opts)
        device = self.device
        h, w = cam.height, cam.width
        m = _check_mask(mask, cam, device)
        img = _check_image(image, cam, device)
        d = _check_depth(depth, cam, m, device)
        if self.num_faces > 0:
            if render is None:
                from scenescape.geometry.raster import render_mesh

                render = render_mesh(self, cam)
            fi = getattr(render, "face_index", None)
            if fi is None or tuple(fi.shape) != (h, w) or getattr(render, "bary", None) is None:
                raise InputError(f"render must be the RenderOutput of this mesh at cam ({h}x{w}) with face_index "
                                 "and bary")
            fi = fi.to(device)
            if fi.numel() and int(fi.max()) >= self.num_faces:
                raise InputError("render.face_index refers to faces this mesh does not have; "
                                 "render the mesh at this camera again")
        # ---- all input checked; nothing below raises on user input
        pts_cam = unproject(d, cam, world=False)  # (H, W, 3); d is 1 outside the mask
        valid = m.clone()
        vid = torch.full((h, w), -1, dtype=torch.int64, device=device)
        seam = 0
        if self.num_faces > 0:
            ring = dilate_mask(m, 3) & ~m & (fi >= 0)
            rp = ring.reshape(-1).nonzero().squeeze(1)  # flat ring pixels
            if rp.numel():
                rf = fi.reshape(-1).index_select(0, rp)
                rb = render.bary.to(device).reshape(-1, 3).index_select(0, rp)
                rv = self.faces[rf].gather(1, rb.argmax(1, keepdim=True)).squeeze(1)
                w2c = cam.world_to_camera.to(device)
                pc = self.vertices[rv] @ w2c[:3, :3].T + w2c[:3, 3]
                ok = pc[:, 2] > 0
                rp = rp[ok]
                pts_cam.view(-1, 3)[rp] = pc[ok]
                vid.view(-1)[rp] = rv[ok]
                valid.view(-1)[rp] = True
        tris, dropped = grid_triangles(pts_cam, valid, m, topts)  # flat pixel ids
        if tris.shape[0] > 1:
            # faces in raster order of their first pixel, so that a run of consecutive faces is a compact band
            # of rows (the chunks that frustum culling skips; see face_chunks)
            tris = tris.index_select(0, torch.argsort(min3(tris), stable=True))
        flat_new = m.reshape(-1)
        # keep only new vertices that some face uses
        used = torch.zeros(h * w, dtype=torch.bool, device=device)
        if tris.numel():
            used[tris.reshape(-1)] = True
        new_pix = (used & flat_new).nonzero().squeeze(1)
        n0 = self.num_vertices
        vid_flat = vid.reshape(-1).clone()
        vid_flat[new_pix] = n0 + torch.arange(new_pix.numel(), device=device)
        faces = vid_flat[tris]
        nondeg = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        faces = faces[nondeg]
        if faces.numel():
            seam_ids = faces[faces < n0]
            seam = int(torch.unique(seam_ids).numel()) if seam_ids.numel() else 0
        c2w = cam.camera_to_world.to(device)
        new_v = pts_cam.reshape(-1, 3)[new_pix] @ c2w[:3, :3].T + c2w[:3, 3]
        new_c = img.reshape(-1, 3)[new_pix]
        self._append_raw(new_v.float(), new_c, faces)
        return ExtendStats(vertices_added=int(new_v.shape[0]), faces_added=int(faces.shape[0]),
                           faces_dropped=dropped, seam_vertices=seam, pixels=int(m.sum()))

    # ------------------------------------------------------------------ conversions
    def to_pytorch3d(self) -> Any:
        """``pytorch3d.structures.Meshes`` with ``TexturesVertex`` colours (needs PyTorch3D)."""
        try:
            from pytorch3d.renderer import TexturesVertex
            from pytorch3d.structures import Meshes
        except ImportError as e:
            raise ImportError(
                "SceneMesh.to_pytorch3d() needs PyTorch3D, which is not installed "
                "(see https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md); "
                "use scenescape.io.meshes.to_trimesh(mesh) or the tensors vertices/faces/colors directly"
            ) from e
        return Meshes(verts=[self.vertices], faces=[self.faces], textures=TexturesVertex([self.colors]))
