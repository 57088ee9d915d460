"""Mask morphology: disocclusion masks, opening/closing, slivers, hole filling, depth edges."""

from __future__ import annotations

import pytest
import torch

from scenescape.geometry.masks import (
    close_mask,
    confirm_nearer,
    depth_edges,
    dilate_mask,
    disocclusion_mask,
    erode_mask,
    far_edge_mask,
    fill_holes,
    open_mask,
    sliver_mask,
)


def test_disocclusion_mask_dilates_uncovered_pixels():
    cov = torch.ones(20, 20, dtype=torch.bool)
    cov[8:11, 5:9] = False  # a 3x4 hole
    m0 = disocclusion_mask(cov, dilate=0)
    assert torch.equal(m0, ~cov)
    m1 = disocclusion_mask(cov)  # default: 1 px
    assert m1.sum() == 5 * 6 and m1[7:12, 4:10].all()
    m2 = disocclusion_mask(cov, dilate=2)
    assert m2.sum() == 7 * 8
    assert disocclusion_mask(cov, 2).sum() == 7 * 8  # positional
    assert not disocclusion_mask(torch.ones(5, 5, dtype=torch.bool)).any()
    with pytest.raises(ValueError, match="dilate"):
        disocclusion_mask(cov, dilate=-1)
    with pytest.raises(ValueError, match="coverage"):
        disocclusion_mask(torch.ones(2, 3, 4, dtype=torch.bool))


def test_disocclusion_mask_cleanup_options():
    cov = torch.ones(30, 30, dtype=torch.bool)
    cov[5, 5] = False  # isolated speck
    cov[10:20, 10:20] = False  # a hole
    opened = disocclusion_mask(cov, dilate=0, open_kernel=3)
    assert not opened[5, 5] and opened[10:20, 10:20].all()
    ring = torch.ones(30, 30, dtype=torch.bool)
    ring[5:25, 5:25] = False
    ring[8:22, 8:22] = True  # a covered island inside an uncovered ring
    filled = disocclusion_mask(ring, dilate=0, fill=True)
    assert filled[5:25, 5:25].all() and not filled[0:5].any()
    closed = disocclusion_mask(torch.tensor([[True, False, True, False, True]] * 5), dilate=0, close_kernel=3)
    assert closed[1:4, 1:4].all()


def test_disocclusion_mask_edge_ring_marks_the_far_side_of_a_depth_step():
    # a near occluder (depth 2) in columns 0-9, the background (depth 10) to its right, a hole at the bottom
    depth = torch.full((12, 20), 10.0)
    depth[:, :10] = 2.0
    cov = torch.ones(12, 20, dtype=torch.bool)
    cov[10:, :] = False
    depth[~cov] = 0.0
    base = disocclusion_mask(cov, dilate=0)
    m1 = disocclusion_mask(cov, dilate=0, depth=depth, edge_ring=1)
    band = m1 & ~base
    assert band[:10, 10].all()  # the background column next to the occluder edge
    assert not band[:, :10].any()  # never on the near side
    assert not band[:, 11:].any()  # one pixel wide
    assert not band[10:].any()  # empty pixels are not an edge (they are in the mask anyway)
    m2 = disocclusion_mask(cov, dilate=0, depth=depth, edge_ring=2)
    assert (m2 & ~base)[:10, 10:12].all() and not (m2 & ~base)[:, 12:].any() and not m2[:10, :10].any()
    # a smaller jump than the threshold is not an edge; default: no ring, depth not needed
    assert torch.equal(disocclusion_mask(cov, dilate=0, depth=depth, edge_ring=1, edge_threshold=5.0), base)
    assert torch.equal(disocclusion_mask(cov, dilate=0, depth=depth), base)
    assert torch.equal(far_edge_mask(depth), band)
    with pytest.raises(ValueError, match="depth"):
        disocclusion_mask(cov, edge_ring=1)
    with pytest.raises(ValueError, match="edge_ring"):
        disocclusion_mask(cov, depth=depth, edge_ring=-1)
    with pytest.raises(ValueError, match="radius"):
        far_edge_mask(depth, 0)
    # the band stays new only where the new depth is nearer than the render (the occluder grew there)
    new_depth = depth.clone()
    new_depth[:5, 10] = 2.0  # rows 0-4: the true occluder edge is one pixel further right
    kept = confirm_nearer(m1, base, depth, new_depth)
    assert kept[:5, 10].all() and not kept[5:10, 10].any() and torch.equal(kept & base, base)


def test_morphology_basics():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[4, 4] = True
    assert dilate_mask(m, 3).sum() == 9 and dilate_mask(m, 5).sum() == 25
    assert erode_mask(dilate_mask(m, 3), 3).sum() == 1
    full = torch.ones(6, 6, dtype=torch.bool)
    assert erode_mask(full, 3).all()  # the border does not erode
    blob = torch.zeros(12, 12, dtype=torch.bool)
    blob[2:7, 2:7] = True
    blob[9, 2:10] = True  # a 1-px line
    expect = blob.clone()
    expect[9] = False  # the line goes, the 5x5 square stays
    assert torch.equal(open_mask(blob, 3), expect)
    gap = torch.ones(7, 7, dtype=torch.bool)
    gap[:, 3] = False
    assert close_mask(gap, 3)[1:6].all()
    with pytest.raises(ValueError, match="kernel"):
        dilate_mask(m, 2)


def test_dilation_is_the_square_window_any_on_random_masks():
    # brute force: a pixel is set when any pixel of its k x k window (clipped to the image) is
    g = torch.Generator().manual_seed(0)
    for h, w in ((1, 1), (1, 6), (7, 1), (5, 8), (13, 9)):
        for p in (0.05, 0.3):
            m = torch.rand(h, w, generator=g) < p
            for k in (1, 3, 5, 7, 9, 15):
                r = k // 2
                ref = torch.zeros_like(m)
                for i in range(h):
                    for j in range(w):
                        ref[i, j] = m[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].any()
                got = dilate_mask(m, k)
                assert torch.equal(got, ref), (h, w, p, k)


def test_sliver_mask_is_what_opening_removes():
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[2:8, 2:8] = True  # body: kept by the opening
    m[12, 1:15] = True  # 1-px line: sliver
    m[14, 14] = True  # speck: sliver
    s = sliver_mask(m)
    assert s[12, 1:15].all() and s[14, 14]
    assert not s[2:8, 2:8].any()
    assert torch.equal(s, m & ~open_mask(m, 3))


def test_fill_holes():
    m = torch.zeros(10, 12, dtype=torch.bool)
    m[2:8, 2:9] = True
    m[4:6, 4:6] = False  # enclosed hole
    m[0:3, 10] = True
    f = fill_holes(m)
    assert f[4:6, 4:6].all()
    assert not f[0, 0] and not f[9, 11]
    # a gap open to the border is not a hole
    c = torch.ones(8, 8, dtype=torch.bool)
    c[3:5, 0:4] = False
    assert torch.equal(fill_holes(c), c)


def test_depth_edges():
    d = torch.full((10, 10), 4.0)
    d[:, :5] = 2.0
    d[0, 0] = 0.0  # empty
    e = depth_edges(d, threshold=0.1)
    assert e[:, 4].all() and e[:, 5].all() and e.sum() == 20
    smooth = torch.linspace(2, 2.2, 10)[None].repeat(10, 1)
    assert not depth_edges(smooth, threshold=0.1).any()
    assert depth_edges(d, threshold=0.1, dilate_px=1)[:, 3:7].all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masks_on_cuda():  # pragma: no cover - only on GPU machines
    cov = torch.ones(20, 20, dtype=torch.bool)
    cov[8:11, 5:9] = False
    assert torch.equal(disocclusion_mask(cov.cuda()).cpu(), disocclusion_mask(cov))
