"""NeRF fields for object mode: density + albedo in a bounded box, and a background model.

World convention (OpenCV, as everywhere in scenescape): y points down, so "up" is ``-y``; the
object sits at the origin inside ``[-bound, bound]^3``.

* :class:`NeRFField` -- hash-grid (:mod:`scenescape.fields.hashgrid`) or frequency encoding with
  progressive bands, a small MLP to density and albedo, a density "blob" added before the
  activation so optimisation starts from a ball in the middle, and normals from the density
  gradient (finite differences or autograd).
* :class:`Background` -- a small MLP of the view direction, or a solid colour (random per step
  while training when ``kind="random_solid"``).
* :class:`AnalyticField` -- a known synthetic object (two coloured spheres) with the same interface;
  it is the optimum of the analytic score model used by tests and benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from scenescape.errors import InputError
from scenescape.fields.hashgrid import HashGridEncoding


@dataclass
class FieldConfig:
    """The NeRF density/albedo field."""

    encoding: Literal["hashgrid", "frequency"] = "hashgrid"
    bound: float = 1.0
    """Half-size of the cube the encoding covers (world units)."""
    # hash grid
    levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    grid_start_levels: int = 8
    """Progressive hash grid: only this many coarse levels are live until ``grid_start_step``, then
    one more every ``grid_update_steps`` (threestudio's progressive band grid; >= levels = all at once)."""
    grid_start_step: int = 2000
    grid_update_steps: int = 500
    # frequency encoding
    frequencies: int = 6
    progressive_steps: int = 0
    """Frequency bands are switched on one by one over this many steps (0 = all bands at once)."""
    hidden: int = 64
    layers: int = 2
    density_activation: Literal["softplus", "exp"] = "softplus"
    blob: Literal["gaussian", "linear", "none"] = "linear"
    """Density added before the activation: ``linear`` = Magic3D's ``d (1 - r / radius)`` (threestudio's
    default; the frame stays mostly empty), ``gaussian`` = DreamFusion's ``d exp(-r^2 / (2 radius^2))``."""
    blob_density: float = 10.0
    blob_radius: float = 0.5
    density_bias: float = 0.0
    normals: Literal["finite_difference", "autograd"] = "finite_difference"
    fd_eps: float = 0.01

    def __post_init__(self) -> None:
        if self.bound <= 0:
            raise InputError(f"nerf.bound must be > 0, got {self.bound}")
        if self.hidden < 1 or self.layers < 1:
            raise InputError(f"nerf.hidden and nerf.layers must be >= 1, got {self.hidden}, {self.layers}")
        if self.frequencies < 0:
            raise InputError(f"nerf.frequencies must be >= 0, got {self.frequencies}")
        if self.blob_radius <= 0:
            raise InputError(f"nerf.blob_radius must be > 0, got {self.blob_radius}")
        if self.fd_eps <= 0:
            raise InputError(f"nerf.fd_eps must be > 0, got {self.fd_eps}")
        if self.grid_start_levels < 1 or self.grid_update_steps < 1 or self.grid_start_step < 0:
            raise InputError("nerf.grid_start_levels and nerf.grid_update_steps must be >= 1 and "
                             f"nerf.grid_start_step >= 0, got {self.grid_start_levels}, {self.grid_update_steps}, "
                             f"{self.grid_start_step}")

    def grid_levels(self, step: int) -> int:
        """Live hash-grid levels at ``step`` (a pure function of the step)."""
        if self.grid_start_levels >= self.levels:
            return self.levels
        extra = 0 if step < self.grid_start_step else 1 + (step - self.grid_start_step) // self.grid_update_steps
        return min(self.levels, self.grid_start_levels + extra)


@dataclass
class BackgroundConfig:
    """``mlp``: learned colour of the view direction; ``random_solid``: a random colour per training
    step (``color`` at evaluation); ``solid``: always ``color``."""

    kind: Literal["mlp", "random_solid", "solid"] = "mlp"
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    hidden: int = 32
    frequencies: int = 4

    def __post_init__(self) -> None:
        if any(not 0.0 <= c <= 1.0 for c in self.color):
            raise InputError(f"background.color must be three values in [0, 1], got {self.color}")


def frequency_encode(x: torch.Tensor, frequencies: int, band_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, D)`` -> ``(N, D + 2 D frequencies)``: ``[x, sin(2^k pi x), cos(2^k pi x)]`` per band ``k``.

    ``band_weights`` ``(frequencies,)`` scales each band (progressive coarse-to-fine training).
    """
    if frequencies == 0:
        return x
    k = 2.0 ** torch.arange(frequencies, device=x.device, dtype=x.dtype) * math.pi
    xb = x[..., None, :] * k[:, None]  # (N, K, D)
    enc = torch.cat([torch.sin(xb), torch.cos(xb)], dim=-1)  # (N, K, 2D)
    if band_weights is not None:
        enc = enc * band_weights.to(x)[:, None]
    return torch.cat([x, enc.flatten(-2)], dim=-1)


def _mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


class _FieldBase(nn.Module):
    """Shared helpers: normals from the density gradient."""

    bound: float
    normal_method: str = "finite_difference"
    fd_eps: float = 0.01

    def density(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def normals(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Unit outward normals ``(N, 3)`` = ``-grad(density) / |grad(density)|`` at ``x`` ``(N, 3)``.

        Finite differences (central, step ``fd_eps``) stay differentiable w.r.t. the parameters, so
        the orientation loss trains geometry; ``autograd`` uses a double-backward graph instead.
        """
        if self.normal_method == "autograd":
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                s = self.density(xg)
                g = torch.autograd.grad(s.sum(), xg, create_graph=torch.is_grad_enabled() and self.training)[0]
        else:
            e = self.fd_eps
            offs = torch.tensor([[e, 0, 0], [-e, 0, 0], [0, e, 0], [0, -e, 0], [0, 0, e], [0, 0, -e]],
                                dtype=x.dtype, device=x.device)
            pts = (x[:, None, :] + offs[None]).reshape(-1, 3)
            s = self.density(pts).reshape(-1, 6)
            g = torch.stack([s[:, 0] - s[:, 1], s[:, 2] - s[:, 3], s[:, 4] - s[:, 5]], dim=-1) / (2 * e)
        return -F.normalize(g, dim=-1, eps=1e-8)


class NeRFField(_FieldBase):
    """Density and albedo of world points.

    ``forward(x)`` with ``x`` ``(N, 3)`` world points returns ``(sigma (N,), albedo (N, 3))``;
    points outside the box get zero density.
    """

    def __init__(self, cfg: FieldConfig | None = None):
        super().__init__()
        cfg = cfg or FieldConfig()
        self.cfg = cfg
        self.bound = cfg.bound
        self.normal_method = cfg.normals
        self.fd_eps = cfg.fd_eps
        if cfg.encoding == "hashgrid":
            self.encoder: nn.Module | None = HashGridEncoding(cfg.levels, cfg.features_per_level,
                                                              cfg.log2_hashmap_size, cfg.base_resolution,
                                                              cfg.max_resolution)
            n_in = self.encoder.output_dim + 3
        else:
            self.encoder = None
            n_in = 3 + 6 * cfg.frequencies
        self.mlp = _mlp(n_in, cfg.hidden, cfg.layers, 4)
        self.register_buffer("band_weights", torch.ones(max(cfg.frequencies, 1)), persistent=False)

    def set_progress(self, step: int) -> None:
        """Coarse-to-fine schedule at ``step`` (a pure function of it): hash-grid levels
        (:meth:`FieldConfig.grid_levels`) or progressive frequency bands (BARF-style cosine ramp)."""
        cfg = self.cfg
        if isinstance(self.encoder, HashGridEncoding):
            self.encoder.set_active_levels(cfg.grid_levels(step))
        if cfg.encoding != "frequency" or cfg.progressive_steps <= 0 or cfg.frequencies == 0:
            self.band_weights.fill_(1.0)
            return
        alpha = cfg.frequencies * min(max(step, 0) / cfg.progressive_steps, 1.0)
        k = torch.arange(cfg.frequencies, dtype=torch.float32)
        self.band_weights.copy_((1 - torch.cos(math.pi * (alpha - k).clamp(0, 1))) / 2)

    def _blob(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.blob == "none":
            return torch.zeros_like(x[:, 0])
        r2 = (x * x).sum(-1)
        if cfg.blob == "gaussian":
            return cfg.blob_density * torch.exp(-r2 / (2 * cfg.blob_radius ** 2))
        return cfg.blob_density * (1 - torch.sqrt(r2 + 1e-12) / cfg.blob_radius)

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        xn = x / self.bound  # [-1, 1]
        if self.encoder is not None:
            h = torch.cat([xn, self.encoder((xn + 1) / 2)], dim=-1)
        else:
            h = frequency_encode(xn, self.cfg.frequencies, self.band_weights[: self.cfg.frequencies])
        return self.mlp(h)

    def _activate(self, raw_sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pre = raw_sigma + self._blob(x) + self.cfg.density_bias
        if self.cfg.density_activation == "exp":
            sigma = torch.exp(pre.clamp(max=15.0))
        else:
            sigma = F.softplus(pre)
        inside = (x.abs() <= self.bound).all(dim=-1)
        return sigma * inside.to(sigma.dtype)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` -> ``(N,)`` volume density (>= 0)."""
        return self._activate(self._raw(x)[:, 0], x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._raw(x)
        return self._activate(out[:, 0], x), torch.sigmoid(out[:, 1:4])


class Background(nn.Module):
    """Background colour for rays: ``forward(dirs (R, 3), colors (R, 3) or None) -> (R, 3)``."""

    def __init__(self, cfg: BackgroundConfig | None = None):
        super().__init__()
        self.cfg = cfg or BackgroundConfig()
        self.mlp = _mlp(3 + 6 * self.cfg.frequencies, self.cfg.hidden, 1, 3) if self.cfg.kind == "mlp" else None

    def forward(self, dirs: torch.Tensor, solid: torch.Tensor | None = None) -> torch.Tensor:
        if self.mlp is not None:
            return torch.sigmoid(self.mlp(frequency_encode(dirs, self.cfg.frequencies)))
        if solid is None:
            solid = torch.tensor(self.cfg.color, dtype=dirs.dtype, device=dirs.device)
        return solid.to(dirs).expand(dirs.shape[0], 3)


class AnalyticField(_FieldBase):
    """A known object with the NeRF interface (the optimum of the analytic score model).

    ``shape="pair"`` (default of object runs): two separate shapes away from the centre -- a sphere
    (centre ``(-0.27, 0.06, -0.05)``, radius 0.26) and a rounded box (centre ``(0.27, -0.1, 0.1)``, half
    sizes ``(0.16, 0.2, 0.14)``) -- so a centred starting blob must move and split to reach it.
    ``shape="snowman"``: a large sphere near the centre with a smaller red sphere on its side.

    Density is ``peak * sigmoid(-sdf / softness)`` (``sdf`` the signed distance to the union), albedo
    varies smoothly with position. Both are asymmetric, so views from different sides differ.
    """

    def __init__(self, peak: float = 60.0, softness: float = 0.015, bound: float = 1.0,
                 shape: Literal["pair", "snowman"] = "snowman", detail: float = 0.0, detail_period: float = 0.1):
        super().__init__()
        if not 0 <= detail <= 1 or detail_period <= 0:
            raise InputError(f"analytic detail must be in [0, 1] and its period > 0, got {detail}, {detail_period}")
        self.detail = float(detail)
        self.detail_period = float(detail_period)
        if shape not in ("pair", "snowman"):
            raise InputError(f"analytic shape must be 'pair' or 'snowman', got {shape!r}")
        self.peak = peak
        self.softness = softness
        self.bound = bound
        self.shape = shape
        self.normal_method = "finite_difference"
        if shape == "snowman":
            self.register_buffer("centers", torch.tensor([[0.0, 0.05, 0.0], [0.28, -0.22, 0.18]]))
            self.register_buffer("radii", torch.tensor([0.38, 0.17]))
        else:
            self.register_buffer("centers", torch.tensor([[-0.27, 0.06, -0.05], [0.27, -0.1, 0.1]]))
            self.register_buffer("radii", torch.tensor([0.26, 0.0]))
            self.register_buffer("half_size", torch.tensor([0.16, 0.2, 0.14]))
        self.rounding = 0.03

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` signed distances to the two parts (negative inside)."""
        if self.shape == "snowman":
            return torch.linalg.norm(x[:, None, :] - self.centers[None], dim=-1) - self.radii[None]
        d0 = torch.linalg.norm(x - self.centers[0], dim=-1) - self.radii[0]
        q = (x - self.centers[1]).abs() - (self.half_size - self.rounding)
        d1 = torch.linalg.norm(q.clamp(min=0), dim=-1) + q.amax(-1).clamp(max=0) - self.rounding
        return torch.stack([d0, d1], -1)

    def _occupancy(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-self.sdf(x) / self.softness)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        occ = self._occupancy(x)
        return self.peak * occ.max(dim=-1).values

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        occ = self._occupancy(x)
        sigma = self.peak * occ.max(dim=-1).values
        w = (occ[:, 1] / (occ.sum(-1) + 1e-6))[:, None]
        if self.shape == "snowman":
            body = torch.stack([0.5 + 0.35 * torch.tanh(2.5 * x[:, 0]),
                                0.45 + 0.3 * torch.tanh(-2.5 * x[:, 1]),
                                0.55 + 0.35 * torch.tanh(2.5 * x[:, 2])], dim=-1)
            head = torch.tensor([0.9, 0.15, 0.1], dtype=x.dtype, device=x.device).expand_as(body)
            return sigma, self._detailed(x, (1 - w) * body + w * head)
        a = torch.stack([0.2 + 0.15 * torch.tanh(3 * x[:, 1]), 0.45 + 0.3 * torch.tanh(3 * x[:, 2]),
                         0.75 + 0.15 * torch.tanh(3 * x[:, 0])], dim=-1)
        b = torch.stack([0.85 + 0.1 * torch.tanh(3 * x[:, 2]), 0.5 + 0.3 * torch.tanh(-4 * x[:, 1]),
                         0.15 + 0.1 * torch.tanh(3 * x[:, 0])], dim=-1)
        return sigma, self._detailed(x, (1 - w) * a + w * b)

    def _detailed(self, x: torch.Tensor, albedo: torch.Tensor) -> torch.Tensor:
        """Albedo times a 3D sine pattern of period ``detail_period`` and amplitude ``detail`` (fine texture
        that a coarse render cannot resolve; 0 = none)."""
        if self.detail == 0:
            return albedo
        k = 2 * math.pi / self.detail_period
        pat = torch.sin(k * x[:, 0]) * torch.sin(k * x[:, 1]) * torch.sin(k * x[:, 2])
        return albedo * (1 - 0.5 * self.detail + 0.5 * self.detail * pat)[:, None]


__all__ = ["AnalyticField", "Background", "BackgroundConfig", "FieldConfig", "NeRFField", "frequency_encode"]
