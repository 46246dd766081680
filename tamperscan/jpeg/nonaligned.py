"""Non-aligned double-JPEG (NA-DJPG) evidence: the picture was compressed at Q1, cropped by a
few pixels (or pasted onto a canvas) and compressed again, so the first 8x8 grid sits at an
offset (dy, dx) != (0, 0) from the stored one. The stored coefficients show nothing then, but
the DCT of the decoded plane on the first grid lies near the lattice Q1 * v, blurred by the
second compression's noise; a region pasted in carries no lattice on that grid (Bianchi &
Piva, TIFS 2012, section IV). The offset is found first (`grid_shift`), then the same
likelihood model as the aligned case is fitted on that grid (`lattice`)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tamperscan.jpeg.dct import BASIS, plane_dct, unclipped
from tamperscan.jpeg.lattice import (
    FREQUENCIES,
    MAX_STATISTICS,
    LatticeEvidence,
    lattice_evidence,
    luma_bound,
)
from tamperscan.jpeg.tables import ZIGZAG

MAX_BIN = 60  # |coefficient| (DCT units) beyond which a value is no evidence
#: Frequencies and periods the offset search looks at: DC and the lowest ACs, whose primary
#: steps are small (2..16 from IJG quality 50 up).
SHIFT_FREQUENCIES = ZIGZAG[:3]
SHIFT_PERIODS = np.arange(2, 17)
SHIFT_BLOCKS = 20  # block rows (and columns) sampled per offset
#: `grid_shift` strength below which no first grid is taken as found (no model is fitted).
#: The strength is the excess concentration times sqrt(blocks sampled), so that small
#: pictures, whose concentrations are noisier, need a larger excess. On the validation data
#: (scripts/calibrate_jpeg.py, 400 blocks sampled) real photos reach 3.2 at their 90th
#: percentile and 6.8 at the 99th (a few web photos are truly cropped re-saves); shifted
#: double-JPEG splices with a finer second quality 10.6 at the median.
MIN_GRID_STRENGTH = 5.0


#: Offsets (as dy * 8 + dx) never taken: (0, 0) is the stored grid (the aligned model's
#: business); (4, 0) and (0, 4) split the stored blocks in half along one axis, where no
#: mirror grid shares their blocking (`mirrors`), and single-compressed camera originals
#: read as first grids there (FujiFilm FinePix 4900, Ricoh DC-3Z, Kodak DC3400 in the
#: validation photos). A picture cropped by exactly 4 px along one axis goes unseen.
UNTESTED = [0, 4 * 8, 4]


def grid_shift(plane: np.ndarray) -> tuple[int, int, float]:
    """The 8x8 grid offset, other than (0, 0), on which the plane's DCT coefficients are most
    periodic: per offset, frequency and period P, the concentration |mean exp(2 pi i y / P)|
    of the coefficients y, less that on the `mirrors` offsets (a smooth coefficient
    distribution concentrates too, and so does what the last compression left, alike on
    both); the best excess wins. Returns (dy, dx, strength): the excess times sqrt(blocks
    sampled), a few units on a picture without a first grid."""
    rows, cols = plane.shape[0] // 8 - 1, plane.shape[1] // 8 - 1
    if rows < 1 or cols < 1:
        return 4, 4, 0.0
    ii = np.unique(np.linspace(0, rows - 1, min(rows, SHIFT_BLOCKS)).astype(np.int64))
    jj = np.unique(np.linspace(0, cols - 1, min(cols, SHIFT_BLOCKS)).astype(np.int64))
    eight = np.arange(8)
    # Every 8x8 window is a strided view; gathering whole windows at (8i + dy, 8j + dx)
    # lands them straight in (dy, dx, I, J, 8, 8) order (3x faster than pixel indices).
    windows = sliding_window_view(plane.astype(np.float32, copy=False), (8, 8))
    ys = (eight[:, None] + 8 * ii[None, :])[:, None, :, None]
    xs = (eight[:, None] + 8 * jj[None, :])[None, :, None, :]
    blocks = windows[ys, xs].reshape(64, -1, 64) - 128
    # (offset, F, N): only the DCT terms the search needs, blocks last so that the means
    # below reduce over contiguous memory (5x faster than over a middle axis)
    coef = (BASIS[SHIFT_FREQUENCIES].astype(np.float32) @ blocks.transpose(0, 2, 1))
    angular = (2 * np.pi / SHIFT_PERIODS).astype(np.float32)
    phase = angular[:, None, None, None] * coef[None]  # (P, 64, F, N); float32 halves the cost
    concentration = np.hypot(np.cos(phase).mean(axis=3), np.sin(phase).mean(axis=3))
    mirrored = np.stack([concentration[:, [8 * my + mx for my in mirrors(o // 8)
                                           for mx in mirrors(o % 8)]].mean(axis=1)
                         for o in range(64)], axis=1)
    excess = concentration - mirrored
    best = excess.max(axis=(0, 2))
    best[UNTESTED] = -np.inf
    shift = int(np.argmax(best))
    return shift // 8, shift % 8, float(best[shift] * np.sqrt(coef.shape[2]))


@cache
def _overlaps(dy: int, dx: int) -> np.ndarray:
    """(4 * 64, 64): coefficient f on the grid at (dy, dx) of the stored grid's basis image
    k of each of the four stored blocks it overlaps."""
    basis = BASIS.reshape(64, 8, 8)
    canvas = np.zeros((4, 64, 16, 16))
    for b, (by, bx) in enumerate(((0, 0), (0, 8), (8, 0), (8, 8))):
        canvas[b, :, by:by + 8, bx:bx + 8] = basis
    window = canvas[:, :, dy:dy + 8, dx:dx + 8].reshape(4 * 64, 64)
    return window @ BASIS.T


def noise_sigma(table: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(64,) standard deviation, per frequency on the shifted grid, of what the second
    compression added: its quantisation error (uniform, Q2^2 / 12 per stored coefficient)
    carried over to the shifted grid, and two pixel roundings (1/12 each)."""
    weights = np.tile(table.astype(np.float64) ** 2 / 12, 4)
    return np.sqrt(weights @ _overlaps(dy, dx) ** 2 + 2 / 12)


def mirrors(shift: int) -> tuple[int, ...]:
    """The offsets, along one axis, whose grids overlap the stored blocks in the mirrored
    proportions (shift/8 <-> (8 - shift)/8): what the last compression left on them has the
    same statistics as on ``shift``'s grid, but a first grid at ``shift`` is not on them.
    4 mirrors onto itself, so its two neighbours stand in together."""
    return (3, 5) if shift == 4 else ((8 - shift) % 8,)


def mirror_dct(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(m, 64) DCT coefficients on the mirror grids of (dy, dx), pooled: at most
    ``MAX_STATISTICS`` blocks in all, the histograms' own bound."""
    grids = [(my, mx) for my in mirrors(dy) for mx in mirrors(dx)]
    return np.concatenate([plane_dct(plane, my, mx, MAX_STATISTICS // len(grids)).reshape(-1, 64)
                           for my, mx in grids])


def nonaligned_evidence(plane: np.ndarray, table: np.ndarray) -> LatticeEvidence:
    """``plane``: the decoded component plane cropped to the image; ``table``: (64,) its
    stored steps Q2. ``llr`` lives on the grid at ``origin``."""
    dy, dx, strength = grid_shift(plane)
    if strength < MIN_GRID_STRENGTH:
        return LatticeEvidence(llr=np.zeros((0, 0), np.float32), usable=np.zeros((0, 0), bool),
                               q1=np.zeros(64, np.int64), gain=0.0, share=0.0, frequencies=0,
                               origin=(dy, dx), grid_strength=strength)
    coef = plane_dct(plane, dy, dx)
    rows, cols = coef.shape[:2]
    usable = unclipped(plane[dy:dy + 8 * rows, dx:dx + 8 * cols], rows, cols)
    calibrated = mirror_dct(plane, dy, dx)[:, FREQUENCIES]
    sigma = noise_sigma(table, dy, dx)[FREQUENCIES]
    found = lattice_evidence(np.rint(coef[..., FREQUENCIES]), np.ones(len(FREQUENCIES)),
                             calibrated, usable, sigma, luma_bound(FREQUENCIES), MAX_BIN)
    return replace(found, origin=(dy, dx), grid_strength=strength)
