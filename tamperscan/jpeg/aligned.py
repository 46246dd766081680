"""Aligned double-JPEG (A-DJPG) evidence: the picture was compressed at Q1 and again, on the
same 8x8 grid, at Q2, so the stored (quantised) coefficients themselves carry the periodic
histogram of double quantisation (`lattice`); a region pasted in was quantised by Q2 only."""

from __future__ import annotations

import numpy as np

from tamperscan.jpeg.lattice import FREQUENCIES, LatticeEvidence, lattice_evidence, luma_bound

SIGMA = 0.6  # rounding error of the first decompression, in DCT units (~sqrt(1/12) + IDCT)
MAX_BIN = 40  # |quantised coefficient| beyond which a coefficient is no evidence


def aligned_evidence(blocks: np.ndarray, table: np.ndarray, calibrated: np.ndarray,
                     usable: np.ndarray) -> LatticeEvidence:
    """``blocks``: (rows, cols, 64) quantised coefficients; ``table``: (64,) steps Q2;
    ``calibrated``: (m, 64) unquantised coefficients on a grid without a lattice."""
    q2 = table[FREQUENCIES].astype(np.float64)
    top = np.minimum(np.maximum(luma_bound(FREQUENCIES), 2 * q2 + 2), 80)
    return lattice_evidence(blocks[..., FREQUENCIES], q2, calibrated[:, FREQUENCIES], usable,
                            np.full(len(FREQUENCIES), SIGMA), top, MAX_BIN)
