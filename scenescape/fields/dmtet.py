"""DMTet geometry for Magic3D's second stage: a signed distance and a deformation per tet-grid vertex.

``DMTetGeometry(resolution, bound)`` holds the conforming grid of :func:`scenescape.geometry.tetra.tet_grid`
and two parameters: ``sdf (V,)`` (negative inside) and ``deform (V, 3)``; the vertex positions are
``grid + max_deform * cell * tanh(deform)`` (at most ``max_deform`` of a cell, so tetrahedra never
invert). :meth:`DMTetGeometry.mesh` runs marching tetrahedra, differentiable w.r.t. both.

:meth:`DMTetGeometry.set_level` initialises the SDF from a stage-1 density field (its log from
:meth:`DMTetGeometry.log_density`, evaluated once): with the iso-level ``tau``, the level
``log(tau) - log(density)`` is negative where the density exceeds ``tau``; it is turned into an approximate signed distance in world units (:func:`metric_sdf`: the level divided
by its gradient's norm, clamped to +-2 cells), so that ``mesh.lr_sdf`` is a distance per step whatever
the stage-1 density's scale. The zero level set is unchanged: it is the stage-1 surface at ``tau``.
Several iso-levels can be tried cheaply (the mesh stage picks the one whose silhouettes match the NeRF's).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from scenescape.geometry.tetra import marching_tets, tet_grid


class DMTetGeometry(nn.Module):
    def __init__(self, resolution: int, bound: float = 1.0, max_deform: float = 0.45):
        super().__init__()
        verts, tets = tet_grid(resolution, bound)
        self.resolution = int(resolution)
        self.bound = float(bound)
        self.max_deform = float(max_deform)
        self.register_buffer("grid", verts, persistent=False)
        self.register_buffer("tets", tets, persistent=False)
        self.sdf = nn.Parameter(torch.zeros(verts.shape[0]))
        self.deform = nn.Parameter(torch.zeros(verts.shape[0], 3))

    @property
    def cell(self) -> float:
        return 2.0 * self.bound / self.resolution

    def vertices(self) -> torch.Tensor:
        """Deformed grid vertices ``(V, 3)``."""
        return self.grid + self.max_deform * self.cell * torch.tanh(self.deform)

    def mesh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(verts (M, 3), faces (F, 3))`` of the zero level set (differentiable)."""
        return marching_tets(self.vertices(), self.tets, self.sdf)

    @torch.no_grad()
    def log_density(self, density_fn: Any, chunk: int = 65536) -> torch.Tensor:
        """``log(density + 1e-6)`` ``(V,)`` of ``density_fn((N, 3)) -> (N,)`` at the grid vertices."""
        pts = self.grid
        dens = torch.cat([density_fn(pts[i:i + chunk]).float() for i in range(0, pts.shape[0], chunk)])
        return torch.log(dens.clamp(min=0) + 1e-6)

    @torch.no_grad()
    def set_level(self, log_density: torch.Tensor, tau: float) -> None:
        """SDF = :func:`metric_sdf` of ``log(tau) - log_density`` (zero deformation)."""
        level = math.log(tau + 1e-6) - log_density
        self.sdf.copy_(metric_sdf(level, self.resolution, self.cell))
        self.deform.zero_()


def metric_sdf(level: torch.Tensor, resolution: int, cell: float, clamp_cells: float = 2.0) -> torch.Tensor:
    """Approximate signed distance ``(V,)`` (world units) from a level ``(V,)`` on the regular
    ``(resolution + 1)^3`` lattice of :func:`tet_grid` (index ``i s^2 + j s + k``): ``level / |grad level|``
    (central differences), clamped to ``+-clamp_cells`` cells; where the gradient vanishes, the sign of
    the level times the clamp. Same sign as ``level`` everywhere, so the zero level set keeps its topology,
    and first-order exact next to it."""
    s = int(resolution) + 1
    lv = level.reshape(s, s, s).double()
    grads = torch.gradient(lv, spacing=float(cell))
    norm = torch.sqrt(sum(g * g for g in grads)).reshape(-1)
    lim = clamp_cells * cell
    lv = lv.reshape(-1)
    sign = torch.where(lv < 0, -1.0, 1.0).to(lv)
    d = torch.where(norm > 1e-12, lv / norm.clamp(min=1e-12), sign * lim)
    return d.clamp(-lim, lim).to(level.dtype)


__all__ = ["DMTetGeometry", "metric_sdf"]
