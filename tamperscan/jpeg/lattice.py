"""Double-quantisation evidence per 8x8 block, after Bianchi & Piva, "Image forgery
localization via block-grained analysis of JPEG artifacts", IEEE TIFS 7(3), 2012: one
likelihood model serves the aligned (A-DJPG) and the non-aligned (NA-DJPG) case.

Why it works: a region quantised at step Q1 on some 8x8 grid keeps, on that grid, DCT
coefficients near the lattice Q1 * v -- blurred by the rounding noise of what came after --
while a region pasted in from elsewhere carries no such lattice. Per DCT frequency, for an
observed value binned at c (bin width ``step``: the final quantiser Q2 in the aligned case,
one unit on a shifted grid), the two hypotheses are

    single:  p1(c) = P0([step (c - 1/2), step (c + 1/2)))
    double:  p2(c) = sum_v P0([Q1(v - 1/2), Q1(v + 1/2))) * P(Q1 v + e in that bin)

with P0 the distribution of the unquantised coefficients (estimated by calibration: the DCT
of the decoded plane on a grid where no quantisation lattice lives) and e ~ N(0, sigma^2) the
noise between the two quantisations. Q1 and the share of double-quantised coefficients are
estimated per frequency by maximum likelihood over the whole image (EM on the mixture,
vectorised over every candidate Q1 at once); a frequency joins the evidence only when its best
Q1 beats the single model by ``MIN_GAIN`` nats. A block's log-likelihood ratio log p2/p1 is the
sum over the frequencies that joined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from tamperscan.jpeg.tables import LUMA, ZIGZAG

#: AC frequencies used, in zig-zag order (the low ones: most non-zero coefficients).
FREQUENCIES = ZIGZAG[1:21]
MIN_GAIN = 8.0  # nats a frequency's double model must gain over the single one to count
CLIP = 4.0  # per-coefficient log-likelihood ratio bound: one outlier cannot decide a block
EM_STEPS = 12
MAX_STATISTICS = 6000  # blocks the histograms use at most
_EPS = 1e-6


@dataclass(frozen=True)
class LatticeEvidence:
    """``llr``: (rows, cols) log p(double)/p(single) per block (0 where nothing joined);
    ``q1``: (64,) estimated primary steps (0 = not estimated); ``gain``: nats the double
    model gains over the single one, summed over the frequencies that joined; ``share``: the
    estimated fraction of double-quantised coefficients; ``usable``: (rows, cols) the blocks
    that count; ``origin``: (dy, dx) pixel offset of the block grid ``llr`` and ``usable``
    live on, from the stored image's top-left corner; ``grid_strength``: how clearly that
    grid was found (`nonaligned.grid_shift`; 0 for the stored grid)."""

    llr: np.ndarray
    usable: np.ndarray
    q1: np.ndarray
    gain: float
    share: float
    frequencies: int
    origin: tuple[int, int] = (0, 0)
    grid_strength: float = 0.0


class _Cdf:
    """CDFs of the calibrated coefficients, one per frequency, tabulated on a fine grid:
    the empirical one blended with a Laplacian of the same mean absolute value, so that bins
    with few samples keep a sane probability. Evaluated by gather + linear interpolation,
    for every frequency, candidate and bin edge at once."""

    STEP = 0.25

    def __init__(self, values: np.ndarray, blend: float) -> None:  # values (m, K)
        k = values.shape[1]
        self.half = float(min(np.abs(values).max(initial=0.0), 4096.0)) + 1.0
        size = int(2 * self.half / self.STEP) + 2
        index = np.clip(((values + self.half) / self.STEP).astype(np.int64), 0, size - 1)
        counts = np.bincount((index + size * np.arange(k)).ravel(), minlength=k * size)
        empirical = np.cumsum(counts.reshape(k, size), axis=1) / max(len(values), 1)
        grid = np.arange(size) * self.STEP - self.half + self.STEP  # right edge of each cell
        scale = np.maximum(np.abs(values).mean(axis=0), 0.5)[:, None]
        laplace = np.where(grid < 0, 0.5 * np.exp(np.minimum(grid, 0) / scale),
                           1 - 0.5 * np.exp(-np.maximum(grid, 0) / scale))
        self.table = ((1 - blend) * empirical + blend * laplace).ravel()
        self.size = size
        self.offset = (np.arange(k) * size).reshape((k,) + (1,) * 2)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """F_k(t) for t of shape (K, a, b)."""
        x = (np.clip(t, -self.half, self.half) + self.half) / self.STEP - 1
        i = np.clip(np.floor(x).astype(np.int64), 0, self.size - 2)
        frac = np.clip(x - i, 0, 1)
        lo = self.table[i + self.offset]
        return lo + frac * (self.table[i + 1 + self.offset] - lo)


def _models(cdf: _Cdf, q1: np.ndarray, step: np.ndarray, bins: np.ndarray, sigma: np.ndarray):
    """(single (K, 1, B), double (K, C, B)) bin probabilities. The noise is small next to
    Q1 where there is evidence at all, so only the lattice points nearest each bin edge
    matter: the CDF of the twice-quantised value at edge t is F0(below them) + their masses *
    Phi((t - lattice point) / sigma)."""
    edges = step[:, None, None] * (np.append(bins, bins[-1] + 1) - 0.5)[None, None, :]
    single = np.diff(cdf(edges), axis=2) + _EPS
    q1 = q1[None, :, None]
    sigma = sigma[:, None, None]
    nearest = np.rint(edges / q1)
    cuts = [cdf(q1 * (nearest + j - 0.5)) for j in (-2, -1, 0, 1, 2, 3)]
    total = cuts[0]
    for j in (-2, -1, 0, 1, 2):
        total = total + (cuts[j + 3] - cuts[j + 2]) * ndtr((edges - q1 * (nearest + j)) / sigma)
    return single, np.diff(total, axis=2) + _EPS


def lattice_evidence(coef: np.ndarray, step: np.ndarray, calibrated: np.ndarray,
                     usable: np.ndarray, sigma: np.ndarray, top: np.ndarray,
                     max_bin: int, frequencies: np.ndarray = FREQUENCIES) -> LatticeEvidence:
    """``coef``: (rows, cols, K) observed values of the K natural-order ``frequencies`` in
    units of ``step`` (K,), integers;
    ``calibrated``: (m, K) unquantised coefficients; ``usable``: (rows, cols) bool, blocks
    whose pixels were not clipped (clipping breaks the rounding model); ``sigma``: (K,) noise
    between the two quantisations, in coefficient units; ``top``: (K,) largest Q1 tried;
    ``max_bin``: |value| beyond which a value is no evidence. The histograms use at most
    ``MAX_STATISTICS`` blocks (evenly spread): Q1 and the share are global quantities, and
    this bounds the cost on large images."""
    rows, cols, kk = coef.shape
    coef = coef.reshape(-1, kk).astype(np.int32)  # (N, K)
    keep = usable.reshape(-1)
    used = coef[np.flatnonzero(keep)[:: max(int(keep.sum()) // MAX_STATISTICS, 1)]]
    calibrated = calibrated[:: max(len(calibrated) // MAX_STATISTICS, 1)]
    step = step.astype(np.float64)
    reach = int(min(np.percentile(np.abs(used), 99) if len(used) else 0, max_bin)) + 1
    bins = np.arange(-reach, reach + 1)
    nb = len(bins)
    offsets = (nb * np.arange(kk)).astype(np.int32)
    # Out-of-range values land in the two end bins, whose ratio is set to 0 below.
    counts = np.bincount((np.clip(used, -reach, reach) + reach + offsets).ravel(),
                         minlength=kk * nb).reshape(kk, 1, nb)
    counts[:, :, [0, -1]] = 0
    cdf = _Cdf(calibrated.astype(np.float64),
               float(np.clip(200.0 / max(len(used), 1), 0.05, 0.5)))  # few blocks: Laplacian
    candidates = np.arange(2, int(top.max()) + 1)
    valid = (candidates[None, :] <= top[:, None]) & (candidates[None, :] != step[:, None])
    p1, p2 = _models(cdf, candidates.astype(np.float64), step, bins, sigma)
    # Q1 by the likelihood of a mixture with a fixed share, then the share by EM for it.
    fixed = (counts * (np.log(0.8 * p2 + 0.2 * p1) - np.log(p1))).sum(axis=2)
    best = np.argmax(np.where(valid, fixed, -np.inf), axis=1)
    d2 = np.take_along_axis(p2, best[:, None, None], axis=1)[:, 0]  # (K, B)
    d1, h = p1[:, 0], counts[:, 0]
    share = np.full((kk, 1), 0.8)
    for _ in range(EM_STEPS):
        share = np.clip((h * share * d2 / (share * d2 + (1 - share) * d1)).sum(1, keepdims=True)
                        / np.maximum(h.sum(1, keepdims=True), 1), 0.02, 0.98)
    gain = (h * (np.log(share * d2 + (1 - share) * d1) - np.log(d1))).sum(axis=1)
    gain *= max(int(keep.sum()), 1) / max(len(used), 1)  # back to the whole image
    joined = valid[np.arange(kk), best] & (gain >= MIN_GAIN)
    ratio = np.where(joined[:, None], np.clip(np.log(d2) - np.log(d1), -CLIP, CLIP), 0)
    ratio[:, [0, -1]] = 0
    index = np.clip(coef, -reach, reach)
    index += reach + offsets
    llr = ratio.astype(np.float32).ravel()[index].sum(axis=1)
    llr[~keep] = 0
    q1 = np.zeros(64, np.int64)
    q1[frequencies[joined]] = candidates[best[joined]]
    return LatticeEvidence(llr=llr.reshape(rows, cols), usable=usable, q1=q1,
                           gain=float(gain[joined].sum()),
                           share=float(np.median(share[joined])) if joined.any() else 0.0,
                           frequencies=int(joined.sum()))


def luma_bound(frequencies: np.ndarray) -> np.ndarray:
    """Largest primary step worth trying per frequency: the IJG quality-50 luma step + 2
    (primary qualities below 50 are rare and leave little to localise)."""
    return np.minimum(LUMA[frequencies] + 2, 80)
