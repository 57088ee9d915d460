"""Mesh export: marching cubes on a density field, thresholds, floating components, colours, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scenescape.io.meshes import load_mesh, save_mesh
from scenescape.pipelines.object.export import (
    auto_threshold,
    extract_mesh,
    remove_small_components,
    sphere_radius_error,
)


class SphereDensity(nn.Module):
    """Density ``peak * sigmoid((r - |x - c|) / s)``; albedo red above the equator (y < 0), blue below."""

    def __init__(self, radius=0.5, center=(0.0, 0.0, 0.0), peak=100.0, softness=0.01, extra_blob=False):
        super().__init__()
        self.radius, self.peak, self.softness, self.bound = radius, peak, softness, 1.0
        self.register_buffer("center", torch.tensor(center))
        self.extra_blob = extra_blob

    def density(self, x):
        d = self.peak * torch.sigmoid((self.radius - (x - self.center).norm(dim=-1)) / self.softness)
        if self.extra_blob:  # a small floater far from the sphere
            d = d + self.peak * torch.sigmoid((0.06 - (x - torch.tensor([0.8, 0.8, 0.8])).norm(dim=-1)) / self.softness)
        return d

    def forward(self, x):
        up = (x[:, 1] < 0).float()[:, None]
        return self.density(x), up * torch.tensor([1.0, 0.0, 0.0]) + (1 - up) * torch.tensor([0.0, 0.0, 1.0])


@pytest.mark.parametrize("threshold", [50.0, None])
def test_marching_cubes_of_a_sphere_gives_its_radius(threshold):
    fld = SphereDensity(radius=0.5, center=(0.1, -0.05, 0.0))
    mesh = extract_mesh(fld, resolution=64, threshold=threshold, min_component=0.0)
    assert mesh.num_faces > 1000
    err = sphere_radius_error(mesh, 0.5, (0.1, -0.05, 0.0))
    assert err < 0.02, f"radius error {err:.4f}"
    v = mesh.vertices
    assert (mesh.colors[v[:, 1] < -0.2] == torch.tensor([1.0, 0.0, 0.0])).all()  # colours from the albedo
    assert (mesh.colors[v[:, 1] > 0.2] == torch.tensor([0.0, 0.0, 1.0])).all()
    # outward winding: face normals point away from the centre
    f = mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    nrm = torch.linalg.cross(b - a, c - a)
    out = ((a + b + c) / 3 - torch.tensor([0.1, -0.05, 0.0]))
    assert ((nrm * out).sum(-1) > 0).float().mean() > 0.99


def test_auto_threshold_separates_empty_from_solid():
    grid = np.zeros((20, 20, 20), np.float32)
    grid[5:15, 5:15, 5:15] = 80.0
    t = auto_threshold(grid)
    assert 0.0 < t < 80.0
    with pytest.raises(ValueError, match="constant"):
        auto_threshold(np.ones((4, 4, 4)))


def test_small_floating_components_are_removed():
    fld = SphereDensity(radius=0.4, extra_blob=True)
    kept = extract_mesh(fld, resolution=64, threshold=50.0, min_component=0.05)
    both = extract_mesh(fld, resolution=64, threshold=50.0, min_component=0.0)
    assert both.num_faces > kept.num_faces
    assert kept.vertices.norm(dim=-1).max() < 0.45  # the floater near (0.8, 0.8, 0.8) is gone
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    assert remove_small_components(faces, 6, 0.5).shape == (2, 3)  # equal sizes: both kept


def test_threshold_outside_the_density_range_is_a_clear_error():
    with pytest.raises(ValueError, match="mesh_threshold"):
        extract_mesh(SphereDensity(), resolution=16, threshold=1000.0)


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_exported_mesh_reloads_with_its_colours(tmp_path, fmt):
    mesh = extract_mesh(SphereDensity(radius=0.5), resolution=32, threshold=50.0)
    path = save_mesh(mesh, tmp_path / f"mesh.{fmt}")
    back = load_mesh(path)
    assert back.num_faces == mesh.num_faces
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-4)
    assert torch.allclose(back.colors, mesh.colors, atol=1 / 255)
    assert (back.colors[:, 0] > 0.9).any() and (back.colors[:, 2] > 0.9).any()
    if fmt == "glb":
        import trimesh

        scene = trimesh.load(str(path), process=False)
        (geom,) = scene.geometry.values()
        rgba = np.asarray(geom.visual.vertex_attributes["color"])  # glTF COLOR_0 (linear floats)
        assert {tuple(float(x) for x in c[:3]) for c in rgba} == {(1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}
