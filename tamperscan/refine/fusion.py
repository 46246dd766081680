"""Choose the segment that best explains the CAM, then fuse the two by Bayes' rule.

Paper (Wang & Abhayaratne): S(M_i, A) = sum(D(M_i) * A) / sum(M_i), i* = argmax_i S, and
A* = E(A, M_i*) with E "Bayesian inference", P(A|M) = P(M|A) P(A) / P(M), left otherwise open.
The reading implemented here (design.md) is parameter-free; see :func:`bayesian_fusion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class RefineResult:
    """Output of :func:`refine_cam`; ``region_index`` is -1 when no region could be chosen."""

    heatmap: np.ndarray  # (H, W) float32 in [0, 1]
    region_index: int
    region_mask: np.ndarray  # (H, W) bool, all False when region_index == -1
    similarities: np.ndarray  # (N,) float64, -inf for empty masks


def _check_cam(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {cam.shape}")
    if not np.isfinite(cam).all():
        raise ValueError("cam contains NaN or inf")
    return cam


def _check_masks(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != shape:
        raise ValueError(f"masks must be (N, {shape[0]}, {shape[1]}), got shape {masks.shape}")
    return masks.astype(bool, copy=False)


def inner_distance(mask: np.ndarray) -> np.ndarray:
    """D(M): Euclidean distance from each pixel of M to the nearest pixel outside M (0 outside).

    Pixels beyond the image edge count as outside, so the image border is a region boundary:
    a region touching the edge is not treated as infinitely thick, and a full-image mask gets
    finite, well-defined distances. Computed on the region's bounding box only (exact, because
    everything outside the box is outside M), which keeps many small regions cheap.
    """
    mask = np.asarray(mask, dtype=bool)
    distance = np.zeros(mask.shape, dtype=np.float64)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return distance
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    padded = np.pad(mask[box], 1, constant_values=False)
    distance[box] = distance_transform_edt(padded)[1:-1, 1:-1]
    return distance


def region_similarity(masks: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """S_i = sum(D(M_i) * A) / sum(M_i) for each mask; -inf for an empty mask.

    The distance weight favours regions whose interior (not just a rim) holds the activation;
    the size normalisation keeps large regions from winning on area alone. Empty masks get
    -inf so an argmax can never pick them. S is in pixel units, so compare S only between
    masks on the same grid.
    """
    cam = _check_cam(cam)
    masks = _check_masks(masks, cam.shape)
    scores = np.full(len(masks), -np.inf, dtype=np.float64)
    for i, mask in enumerate(masks):
        area = np.count_nonzero(mask)
        if area:
            scores[i] = float((inner_distance(mask) * cam).sum() / area)
    return scores


def choose_region(masks: np.ndarray, cam: np.ndarray) -> tuple[int, np.ndarray]:
    """(i*, M_i*) with i* = argmax S; (-1, all-False mask) when there is no non-empty mask."""
    scores = region_similarity(masks, cam)
    return _pick(np.asarray(masks, dtype=bool), scores, np.shape(cam))


def _pick(masks: np.ndarray, scores: np.ndarray, shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    if scores.size == 0 or not np.isfinite(scores).any():
        return -1, np.zeros(shape, dtype=bool)
    index = int(np.argmax(scores))  # first index on ties: deterministic
    return index, masks[index].copy()


def bayesian_fusion(cam: np.ndarray, mask: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Posterior tamper probability H = P(t=1 | m) per pixel.

    Prior P(t=1) = A(x). The mask is treated as a noisy observation of t whose rates are
    estimated from the image itself: alpha = P(m=1 | t=1) = sum(A*M)/sum(A) and
    beta = P(m=1 | t=0) = sum((1-A)*M)/sum(1-A). With L1 = P(m(x) | t=1), L0 = P(m(x) | t=0),
    H = A*L1 / (A*L1 + (1-A)*L0). Inside M the odds of A are multiplied by alpha/beta, outside
    by (1-alpha)/(1-beta): when M overlaps the CAM's mass more than its complement (alpha >
    beta), H rises inside M and falls outside; when it does not, the mask is discounted.

    Degenerate inputs: A is clipped to [0, 1]. If sum(A) or sum(1-A) is ~0 the missing rate is
    set to the mask's pixel fraction, which makes alpha == beta (the mask carries no
    information) so H == A. alpha and beta are clipped to [eps, 1-eps], so the denominator is
    at least eps and H is finite and in [0, 1] for any input (empty or full M gives H == A).
    """
    prior = np.clip(_check_cam(cam), 0.0, 1.0)
    observed = np.asarray(mask, dtype=bool)
    if observed.shape != prior.shape:
        raise ValueError(f"mask shape {observed.shape} != cam shape {prior.shape}")
    coverage = float(observed.mean())
    tampered_mass, clean_mass = float(prior.sum()), float((1.0 - prior).sum())
    alpha = float(prior[observed].sum()) / tampered_mass if tampered_mass > eps else coverage
    beta = float((1.0 - prior[observed]).sum()) / clean_mass if clean_mass > eps else coverage
    alpha, beta = np.clip([alpha, beta], eps, 1.0 - eps)
    like_tampered = np.where(observed, alpha, 1.0 - alpha)
    like_clean = np.where(observed, beta, 1.0 - beta)
    numerator = prior * like_tampered
    posterior = numerator / (numerator + (1.0 - prior) * like_clean)
    return np.clip(posterior, 0.0, 1.0).astype(np.float32)


def refine_cam(cam: np.ndarray, masks: np.ndarray, eps: float = DEFAULT_EPS) -> RefineResult:
    """Segment-and-choose + Bayesian fusion in one call (masks and cam on the same grid).

    With no usable region (N == 0 or all masks empty) the heatmap is the clipped CAM unchanged.
    """
    cam = _check_cam(cam)
    masks = _check_masks(masks, cam.shape)
    scores = region_similarity(masks, cam)
    index, region = _pick(masks, scores, cam.shape)
    heatmap = (
        bayesian_fusion(cam, region, eps) if index >= 0 else np.clip(cam, 0, 1).astype(np.float32)
    )
    return RefineResult(
        heatmap=heatmap, region_index=index, region_mask=region, similarities=scores
    )
