"""The compiled (numba) z-buffer against the pure-torch reference, frustum culling by chunk, and the
SceneMesh chunk table as the mesh grows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scenescape import Camera, SceneMesh, render_mesh
from scenescape.geometry.raster import frustum_ranges, rasterize

numba = pytest.importorskip("numba", reason="the compiled z-buffer is optional (pip install scenescape[fast])")


def _cam(k: int, size: int = 64, f: float = 60.0) -> Camera:
    yaw = 0.35 * k
    c, s = math.cos(yaw), math.sin(yaw)
    pose = torch.eye(4, dtype=torch.float64)
    r = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)
    pose[:3, :3] = r
    pose[:3, 3] = -r @ torch.tensor([0.1 * k, 0.05 * k, 0.3 * k - 0.5], dtype=torch.float64)
    return Camera(f, f, size / 2, size / 2, size, size, pose)


def _soup(n: int, seed: int) -> SceneMesh:
    """Random triangles of all sizes around the cameras: some behind, some straddling the near plane,
    shared edges, degenerate faces, huge ones."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g) * torch.tensor([2.0, 1.5, 3.0]) + torch.tensor([0.0, 0.0, 2.0])
    f = torch.randint(0, n, (2 * n, 3), generator=g)
    local = torch.randint(0, 12, (2 * n, 3), generator=g)
    f[n // 10:] = (f[n // 10:, :1] + local[n // 10:]) % n  # mostly small faces sharing vertices and edges
    f[5] = torch.tensor([1, 1, 2])  # degenerate
    return SceneMesh(v, f, torch.rand(n, 3, generator=g))


def _same(a, b) -> None:
    for k in ("face_index", "depth", "bary", "image", "mask"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_numba_zbuffer_is_bit_identical_to_torch(seed):
    mesh = _soup(1200, seed)
    for k in range(4):
        cam = _cam(k)
        for cull_back in (False, True):
            ref = render_mesh(mesh, cam, backend="torch", cull=False, cull_backfaces=cull_back)
            assert ref.mask.any()
            _same(render_mesh(mesh, cam, backend="numba", cull=False, cull_backfaces=cull_back), ref)
    # supersampling and the default backend go through the same path
    cam = _cam(1)
    _same(render_mesh(mesh, cam, supersample=2), render_mesh(mesh, cam, supersample=2, backend="torch", cull=False))


def test_numba_face_ranges_match_torch_whether_few_or_most_faces_are_kept():
    # few faces kept: the compiled path projects only their vertices; most kept: all vertices in one pass
    mesh = _soup(1200, 2)
    cam = _cam(1)
    for rg in ([[0, 100], [700, 760]], [[0, 1500], [1600, 2400]]):
        ranges = torch.tensor(rg, dtype=torch.int64)
        ref = rasterize(mesh.vertices, mesh.faces, cam, backend="torch", ranges=ranges)
        got = rasterize(mesh.vertices, mesh.faces, cam, backend="numba", ranges=ranges)
        assert (ref[0] >= 0).any()
        for a, b in zip(got, ref, strict=True):
            assert torch.equal(a, b)
        # faces outside the ranges are not drawn
        fi = ref[0][ref[0] >= 0]
        assert bool(((fi < rg[0][1]) | ((fi >= rg[1][0]) & (fi < rg[1][1]))).all())


def _rgbd_mesh(cam: Camera) -> SceneMesh:
    h, w = cam.height, cam.width
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    depth = 2.0 + 0.5 * torch.sin(xx / 7.0) + 0.02 * yy
    img = torch.stack([xx / w, yy / h, torch.full_like(xx, 0.5, dtype=torch.float32)], -1).float()
    return SceneMesh.from_rgbd(img, depth.float(), cam)


def test_frustum_culling_is_exact_and_skips_what_is_out_of_view():
    cam0 = Camera(60.0, 60.0, 64, 64, 128, 128)
    mesh = _rgbd_mesh(cam0)  # ~32k faces in 8 chunks, in pixel (row) order
    assert mesh.face_chunks()[0].shape[0] == math.ceil(mesh.num_faces / SceneMesh.CHUNK_FACES)
    # look at the top part of the patch only (camera pitched up): the lower rows' chunks are culled
    for pitch, shift in ((-0.45, 0.0), (0.0, 0.0), (0.3, 0.4), (math.pi, 0.0)):
        c, s = math.cos(pitch), math.sin(pitch)
        pose = torch.eye(4, dtype=torch.float64)
        pose[:3, :3] = torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
        pose[0, 3] = shift
        cam = Camera(60.0, 60.0, 32, 32, 64, 64, pose)
        lo, hi, st, en = mesh.face_chunks()
        ranges = frustum_ranges(lo, hi, st, en, cam, 1e-3)
        kept = int((ranges[:, 1] - ranges[:, 0]).sum()) if ranges.numel() else 0
        for backend in ("torch", "numba"):
            _same(render_mesh(mesh, cam, backend=backend), render_mesh(mesh, cam, backend="torch", cull=False))
        if pitch == -0.45:
            assert 0 < kept < mesh.num_faces  # part of the patch is outside the frustum and skipped
        if pitch == math.pi:
            assert kept == 0  # facing away: everything is behind the camera


def test_chunk_bounds_follow_the_mesh_as_it_grows_and_changes():
    cam = Camera(40.0, 40.0, 32, 32, 64, 64)
    mesh = _rgbd_mesh(cam)
    for k in range(3):
        mesh.append(torch.randn(50, 3) + 5 * k, torch.randint(0, 50, (5000, 3)), torch.rand(50, 3))
        lo, hi, st, en = mesh.face_chunks()
        assert int(en[-1]) == mesh.num_faces and torch.equal(st[1:], en[:-1])
        for b in range(lo.shape[0]):
            pts = mesh.vertices[mesh.faces[int(st[b]):int(en[b])].reshape(-1)]
            assert torch.equal(lo[b], pts.amin(0)) and torch.equal(hi[b], pts.amax(0))
    # an in-place edit of the vertices invalidates the cached bounds
    mesh.vertices[:10] += 100.0
    lo, hi, st, en = mesh.face_chunks()
    pts = mesh.vertices[mesh.faces[: int(en[0])].reshape(-1)]
    assert torch.equal(hi[0], pts.amax(0))
    # appended storage: the views stay consistent with what was added
    n = mesh.num_vertices
    mesh.append(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), torch.ones(3, 3))
    assert mesh.num_vertices == n + 3 and mesh.vertices.shape == (n + 3, 3) and mesh.colors.shape == (n + 3, 3)
    assert torch.equal(mesh.faces[-1], torch.tensor([n, n + 1, n + 2]))


def test_numba_backend_request_is_checked():
    mesh = _soup(50, 0)
    with pytest.raises(ValueError, match="backend"):
        render_mesh(mesh, _cam(0), backend="embree")
    assert np.isfinite(render_mesh(mesh, _cam(0), backend="numba").depth.numpy()).all()


def test_face_sets_split_over_threads_merge_to_the_serial_result(monkeypatch):
    # with threads, the compiled z-buffer splits the kept faces into one set per thread and merges the per-set
    # buffers by (depth, face index), and projects / decodes in slices: the output must not depend on the split
    from scenescape.geometry import raster

    mesh = _soup(1500, 3)
    cam = _cam(2)
    ref = render_mesh(mesh, cam, backend="torch", cull=False)
    monkeypatch.setattr(raster, "_PARALLEL_FACES", 0)
    for parts in (2, 3, 7):
        monkeypatch.setattr(raster, "_render_threads", lambda parts=parts: parts)
        _same(render_mesh(mesh, cam, backend="numba", cull=False), ref)
        ranges = torch.tensor([[0, 400], [900, 1000], [2000, 3000]], dtype=torch.int64)
        got = rasterize(mesh.vertices, mesh.faces, cam, backend="numba", ranges=ranges)
        for a, b in zip(got, rasterize(mesh.vertices, mesh.faces, cam, backend="torch", ranges=ranges), strict=True):
            assert torch.equal(a, b)
    split = raster._split_ranges(np.array([[0, 5], [10, 12], [20, 27]]), 3)
    faces = [f for part in split for a, b in part for f in range(a, b)]
    assert faces == [*range(0, 5), 10, 11, *range(20, 27)]
    assert [sum(int(b - a) for a, b in part) for part in split] == [4, 5, 5]


def test_render_threads_come_from_the_environment(monkeypatch):
    from scenescape.geometry import raster

    monkeypatch.delenv(raster.RENDER_THREADS_ENV, raising=False)
    assert raster._render_threads() == 1  # serial by default
    monkeypatch.setenv(raster.RENDER_THREADS_ENV, "0")
    assert raster._render_threads() == numba.config.NUMBA_NUM_THREADS
    monkeypatch.setenv(raster.RENDER_THREADS_ENV, "many")
    with pytest.raises(ValueError, match=raster.RENDER_THREADS_ENV):
        raster._render_threads()
