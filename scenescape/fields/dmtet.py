"""DMTet geometry for Magic3D's second stage: a signed distance and a deformation per tet-grid vertex.

``DMTetGeometry(resolution, bound)`` holds the conforming grid of :func:`scenescape.geometry.tetra.tet_grid`
and two parameters: ``sdf (V,)`` (negative inside) and ``deform (V, 3)``; the vertex positions are
``grid + max_deform * cell * tanh(deform)`` (at most ``max_deform`` of a cell, so tetrahedra never
invert). :meth:`DMTetGeometry.mesh` runs marching tetrahedra, differentiable w.r.t. both.

:meth:`DMTetGeometry.init_from_density` initialises the SDF from a stage-1 density field: with the
iso-level ``tau`` (the level of the stage-1 mesh), ``sdf = log(tau) - log(density + 1e-6)``, negative
where the density exceeds ``tau``; its zero level set is the stage-1 surface.
"""

from __future__ import annotations

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
    def init_from_density(self, density_fn: Any, threshold: float | Any, chunk: int = 65536) -> float:
        """Set the SDF from ``density_fn((N, 3)) -> (N,)`` at the grid vertices; ``threshold`` is the
        iso-level or a callable ``densities (numpy) -> level`` (e.g. the stage-1 export's Otsu split).
        Returns the level used."""
        pts = self.grid
        dens = torch.cat([density_fn(pts[i:i + chunk]).float() for i in range(0, pts.shape[0], chunk)])
        tau = float(threshold(dens.cpu().numpy()) if callable(threshold) else threshold)
        self.sdf.copy_(torch.log(torch.tensor(tau + 1e-6)) - torch.log(dens.clamp(min=0) + 1e-6))
        self.deform.zero_()
        return tau


__all__ = ["DMTetGeometry"]
