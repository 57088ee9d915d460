"""harmonic_fill's AMG solve against the direct (SuperLU) solve it replaces on large regions."""

from __future__ import annotations

import numpy as np
import pytest

from scenescape.errors import InputError
from scenescape.geometry.depth_align import edge_weights, harmonic_fill, seam_correction


def _case(size: int = 90, seed: int = 0):
    """Mostly-unknown frame: 1-px Dirichlet border + islands, a wall line, a sealed-off pocket."""
    rng = np.random.default_rng(seed)
    known = np.zeros((size, size), bool)
    known[0] = known[-1] = known[:, 0] = known[:, -1] = True
    for i, j in rng.integers(4, size - 8, (12, 2)):
        known[i:i + 3, j:j + 3] = True
    region = ~known
    region[size // 3, 1:size - 10] = False  # a wall (Neumann) with a gap
    # a pocket sealed off by walls: touches no Dirichlet pixel
    region[60:70, 60] = region[60:70, 70] = region[60, 60:71] = region[70, 60:71] = False
    fixed = known
    values = 0.3 * np.sin(np.arange(size)[:, None] / 7.0) + rng.normal(0, 0.05, (size, size))
    return values, fixed, region


@pytest.mark.parametrize("weighted", [False, True])
def test_amg_matches_the_direct_solve(weighted):
    values, fixed, region = _case()
    wts = edge_weights(np.random.default_rng(1).random((90, 90, 3)), sigma=0.3) if weighted else None
    amg = harmonic_fill(values, fixed, region=region, weights=wts, default=0.25, solver="amg")
    direct = harmonic_fill(values, fixed, region=region, weights=wts, default=0.25, solver="direct")
    scale = np.abs(direct[region]).max()
    assert np.abs(amg - direct).max() <= 1e-4 * scale  # the bar; in practice ~1e-8
    assert np.abs(amg - direct).max() <= 1e-6 * scale
    # the sealed pocket has no boundary data: it takes the default, in both solvers
    assert np.all(amg[61:70, 61:70] == 0.25) and np.allclose(direct[61:70, 61:70], 0.25)
    # Dirichlet pixels keep their values, walls are 0, the solution obeys the maximum principle
    assert np.array_equal(amg[fixed], values[fixed])
    wall = ~fixed & ~region
    assert np.all(amg[wall] == 0.0)
    open_part = region.copy()
    open_part[60:71, 60:71] = False
    assert amg[open_part].max() <= values[fixed].max() + 1e-9
    assert amg[open_part].min() >= values[fixed].min() - 1e-9


def test_auto_uses_amg_beyond_the_direct_size_and_gives_the_same_seam_correction():
    # 98% new pixels, a 1-px known border: the shape that made the direct solve explode at 512x512
    size = 120
    rng = np.random.default_rng(2)
    known = np.zeros((size, size), bool)
    known[0] = known[-1] = known[:, 0] = known[:, -1] = True
    yy, xx = np.mgrid[0:size, 0:size] / size
    plane = 2.0 + xx + 0.5 * yy
    aligned = plane * 1.03 * np.exp(rng.normal(0, 0.01, plane.shape))
    kd = np.where(known, plane, 0.0)
    f_auto = seam_correction(aligned, kd, known, ~known).numpy()
    import scenescape.geometry.depth_align as da

    orig = da.harmonic_fill
    try:
        da.harmonic_fill = lambda *a, **k: orig(*a, **{**k, "solver": "direct"})
        f_direct = seam_correction(aligned, kd, known, ~known).numpy()
    finally:
        da.harmonic_fill = orig
    assert np.abs(np.log(f_auto) - np.log(f_direct)).max() <= 1e-4 * np.abs(np.log(f_direct)).max()
    # the correction pulls the 3%-too-far depth back towards the border (not a no-op)
    assert f_auto[1, size // 2] < 0.985 and f_auto[size // 2, size // 2] < 1.0


def test_bad_solver_name_is_a_clear_error():
    with pytest.raises(InputError, match="solver"):
        harmonic_fill(np.zeros((4, 4)), np.eye(4, dtype=bool), solver="cholesky")
