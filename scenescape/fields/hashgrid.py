"""Multi-resolution hash-grid encoding (Instant-NGP style) in pure torch.

No compiled extension: every level is evaluated at once with tensor ops, so it runs wherever torch
runs (CPU or CUDA) and supports double backward (normals from density gradients).

* Level ``l`` has resolution ``N_l = floor(base_resolution * b**l)`` with
  ``b = exp((ln max_resolution - ln base_resolution) / (levels - 1))``.
* A level whose ``(N_l + 1)**3`` vertices fit in the table (``2**log2_hashmap_size`` entries) is
  stored densely (index ``x + y (N+1) + z (N+1)^2``); finer levels use the spatial hash
  ``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod T``.
* Features of the 8 corners of the enclosing cell are blended trilinearly.
* Progressive levels: :meth:`HashGridEncoding.set_active_levels` masks the finer levels to zero
  (threestudio's progressive band hash grid), so training starts coarse.

Inputs are points in ``[0, 1]^3`` (the caller maps its bounding box there); outputs are
``(N, levels * features_per_level)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scenescape.errors import InputError

PRIMES = (1, 2654435761, 805459861)


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding of 3-D points.

    Args:
        levels: number of resolution levels ``L``.
        features_per_level: feature width ``F`` per level.
        log2_hashmap_size: table size per level is ``2**log2_hashmap_size`` (dense levels use less).
        base_resolution: coarsest grid resolution.
        max_resolution: finest grid resolution.
        init_scale: features start uniform in ``[-init_scale, init_scale]``.
    """

    def __init__(self, levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        if levels < 1 or features_per_level < 1:
            raise InputError(f"hash grid needs levels >= 1 and features_per_level >= 1, got {levels}, "
                             f"{features_per_level}")
        if base_resolution < 1 or max_resolution < base_resolution:
            raise InputError(f"hash grid resolutions must satisfy 1 <= base ({base_resolution}) <= max "
                             f"({max_resolution})")
        if not 4 <= log2_hashmap_size <= 26:
            raise InputError(f"log2_hashmap_size must be in [4, 26], got {log2_hashmap_size}")
        self.levels = levels
        self.features_per_level = features_per_level
        self.output_dim = levels * features_per_level
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        table = 2 ** log2_hashmap_size
        res, sizes, dense = [], [], []
        for lvl in range(levels):
            n = int(math.floor(base_resolution * growth ** lvl))
            verts = (n + 1) ** 3
            is_dense = verts <= table
            res.append(n)
            dense.append(is_dense)
            sizes.append(verts if is_dense else table)
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        # Hash products only matter modulo the table size T (a power of two), so the primes are reduced
        # mod T; with max_res * T < 2^31 every intermediate fits int32, which is several times faster
        # than int64 on CPUs.
        self._primes = tuple(p & (table - 1) for p in PRIMES)
        self._itype = torch.int32 if (max(res) + 2) * table < 2 ** 31 and offsets[-1] < 2 ** 31 else torch.int64
        self.register_buffer("resolutions", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("_res_int", torch.tensor(res, dtype=torch.int64), persistent=False)
        self.register_buffer("_dense", torch.tensor(dense, dtype=torch.bool), persistent=False)
        self.register_buffer("_sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False)
        self.embeddings = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-init_scale, init_scale))
        self.register_buffer("level_mask", torch.ones(levels), persistent=False)
        self.active_levels = levels

    def set_active_levels(self, n: int) -> None:
        """Only the ``n`` coarsest levels contribute (the finer ones output zeros and get no gradient);
        progressive coarse-to-fine training raises ``n`` over the run."""
        n = max(1, min(int(n), self.levels))
        self.active_levels = n
        self.level_mask.zero_()
        self.level_mask[:n] = 1.0

    @property
    def num_parameters(self) -> int:
        return self.embeddings.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, 3)`` in ``[0, 1]`` (clamped) -> ``(N, levels * features_per_level)``."""
        if x.shape[-1] != 3:
            raise InputError(f"hash grid expects (N, 3) points, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, 3).clamp(0.0, 1.0)
        pos = x[:, None, :] * self.resolutions.to(x.dtype)[None, :, None]  # (N, L, 3)
        res = self._res_int[None, :, None]
        # x == 1 lands in the last cell
        base_i = torch.minimum(torch.floor(pos.detach()).to(self._itype), (res - 1).to(self._itype))
        frac = pos - base_i.to(pos.dtype)  # (N, L, 3), differentiable w.r.t. x
        it = self._itype
        stride = (self._res_int + 1)[None, :].to(it)
        dense = self._dense[None, :]
        mask = (self._sizes - 1)[None, :].to(it)
        offsets = self._offsets[None, :].to(it)
        p1, p2 = self._primes[1], self._primes[2]
        # Per axis and corner bit: the index terms and interpolation weights, shared by the 8 corners.
        bx, by, bz = base_i[..., 0], base_i[..., 1], base_i[..., 2]
        d_terms = ((bx, bx + 1), (by * stride, (by + 1) * stride), (bz * stride * stride, (bz + 1) * stride * stride))
        h_terms = ((bx, bx + 1), (by * p1, (by + 1) * p1), (bz * p2, (bz + 1) * p2))
        w_terms = [(1.0 - frac[..., a], frac[..., a]) for a in range(3)]
        out = None
        # Loop over the 8 cell corners (each step is vectorised over points and levels) so no
        # (N, L, 8, 3) index tensor is materialised.
        for c in range(8):
            i, j, k = (c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1
            dense_idx = d_terms[0][i] + d_terms[1][j] + d_terms[2][k]
            hash_idx = (h_terms[0][i] ^ h_terms[1][j] ^ h_terms[2][k]) & mask
            idx = torch.where(dense, dense_idx, hash_idx) + offsets  # (N, L)
            # index_select: its backward is an index_add (much faster on CPU than embedding's).
            feats = self.embeddings.index_select(0, idx.reshape(-1).long()).reshape(*idx.shape, -1)  # (N, L, F)
            w = w_terms[0][i] * w_terms[1][j] * w_terms[2][k]  # (N, L)
            term = feats * w[..., None]
            out = term if out is None else out + term
        if self.active_levels < self.levels:
            out = out * self.level_mask.to(out.dtype)[None, :, None]
        return out.reshape(*lead, self.output_dim)
