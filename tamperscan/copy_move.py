"""Keypoint copy-move detection: SIFT matches inside one image, verified by affine RANSAC
and by the correlation of the matched points with their copies.

Why a classical detector next to the nets: a copy-move forgery is two near-identical regions
of the *same* photo, so neither ELA nor camera-noise cues separate it from its surroundings
(the localizer has to guess which half is "foreign", the WCBnet heads see one JPEG history).
Matching an image against itself finds the pair directly; the geometry check makes a
detection hard to get by chance, and the correlation check (copied pixels correlate ~1 with
their source, look-alike natural structure does not) keeps repeated real-world structure out.
The method is the standard one of the literature (Amerini et al., "A SIFT-based forensic
method for copy-move attack detection", 2011: generalised 2NN matching; localisation by
correlating the image with itself under the recovered affine map, as in Amerini et al. 2013)
built from OpenCV's SIFT and RANSAC and an exact k-NN in torch.

Output per image: the number of geometrically consistent matches of the best clone
(``inliers``: the evidence) and a map in [0, 1] that is 1 on both the source and the pasted
region (the CoMoFoD/NoSo convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class CopyMoveOptions(BaseModel):
    """Detector settings (unknown keys are errors). ``min_inliers`` and ``verify_zncc`` are
    the decision rule: calibrated on synthetic validation splits
    (scripts/calibrate_copy_move.py), never on evaluation data."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_keypoints: int = Field(default=3000, ge=50)
    #: Side of the image SIFT sees, as a fraction of the working size (points are mapped
    #: back; matching geometry and region tracing stay at the working size). SIFT's cost is
    #: its doubled first octave and one descriptor per point, so 0.5 is ~4x cheaper, with
    #: about a quarter of the points: a speed/recall trade (benchmarks/RESULTS.md).
    keypoint_scale: float = Field(default=1.0, gt=0, le=1)
    #: SIFT contrast threshold: well below OpenCV's 0.04 so flat-ish regions still get points
    #: (0.01 detects 60 % of the validation copy-moves at 0.8 % false alarms, 0.02 53 %).
    contrast_threshold: float = Field(default=0.01, gt=0)
    #: Generalised 2NN ratio (Amerini 2011: 0.5).
    ratio: float = Field(default=0.5, gt=0, lt=1)
    #: Nearest other keypoints examined per keypoint (g2NN finds up to k - 1 copies).
    neighbours: int = Field(default=6, ge=3)
    #: Matches closer than this fraction of the image side are the same structure, not a clone.
    min_shift: float = Field(default=0.03, ge=0)
    #: RANSAC reprojection error in pixels at the working size.
    ransac_px: float = Field(default=5.0, gt=0)
    #: Clones (affine models) looked for per image.
    max_clones: int = Field(default=3, ge=1)
    #: Consistent matches needed to report a clone.
    min_inliers: int = Field(default=6, ge=3)
    #: A clone must also look copied where it was matched: the median ZNCC, over its matched
    #: points, of (window x window) patches of the image and of the image warped by the clone.
    #: Pasted pixels correlate near 1 with their source; repetitive natural structure (tiles,
    #: windows, foliage) that survives RANSAC mostly does not, so fewer matches suffice.
    verify_window: int = Field(default=15, ge=3)
    verify_zncc: float = Field(default=0.93, ge=0, lt=1)
    #: Spread of the confidence above ``min_inliers``: confidence = 1 - exp(-extra / scale) / 2.
    confidence_scale: float = Field(default=10.0, gt=0)
    #: Local zero-normalised cross-correlation (window side, threshold) for the region map.
    zncc_window: int = Field(default=7, ge=3)
    zncc_threshold: float = Field(default=0.6, gt=0, lt=1)


@dataclass
class Clone:
    model: np.ndarray  # 2x3 affine map, source -> target
    src: np.ndarray  # (n, 2) matched source points (x, y)
    dst: np.ndarray  # (n, 2) their copies
    region: np.ndarray  # bool (h, w): the traced source + target

    @property
    def inliers(self) -> int:
        return len(self.src)


@dataclass
class CopyMoveResult:
    inliers: int  # consistent matches of the best reported clone (0: none)
    confidence: float  # 0 without a reported clone, else in [0.5, 1)
    region: np.ndarray  # float32 (h, w) in [0, 1]: source and pasted regions of reported clones


def confidence(inliers: int, options: CopyMoveOptions) -> float:
    """Evidence mapped to [0, 1]: 0 below ``min_inliers`` (no clone reported), 0.5 at it,
    near 1 for a few dozen consistent matches (a random match set almost never has them)."""
    if inliers < options.min_inliers:
        return 0.0
    return float(1.0 - 0.5 * np.exp(-(inliers - options.min_inliers) / options.confidence_scale))


#: Rows of the distance matrix computed at a time: a 256 x 3000 float block (3 MB) stays in
#: cache between the product and the top-k, where the whole 3000² matrix (36 MB) made both
#: passes memory-bound (benchmarks/copy_move_matching.py: 2.5x -> 3.2x vs cv2.BFMatcher).
_NEAREST_BLOCK = 256


def _nearest(desc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other descriptors of each descriptor (indices, L2 distances), sorted.

    Exact, like cv2.BFMatcher.knnMatch, but blocked matrix products + top-k in torch: 3x
    faster on one thread for the pipeline's descriptors (benchmarks/copy_move_matching.py)."""
    import torch

    d = torch.from_numpy(np.ascontiguousarray(desc, np.float32))
    n, k = len(d), min(k, len(desc) - 1)
    sq = (d * d).sum(dim=1)
    d_t = d.T.contiguous()
    idx = torch.empty((n, k), dtype=torch.long)
    values = torch.empty((n, k), dtype=torch.float32)
    for start in range(0, n, _NEAREST_BLOCK):
        stop = min(n, start + _NEAREST_BLOCK)
        # |a - b|^2 = |a|^2 + |b|^2 - 2ab; |a|^2 is constant along a row, so rank without it.
        partial = torch.addmm(sq[None, :], d[start:stop], d_t, alpha=-2.0)
        rows = torch.arange(stop - start)
        partial[rows, rows + start] = float("inf")  # a descriptor is not its own neighbour
        values[start:stop], idx[start:stop] = partial.topk(k, dim=1, largest=False)
    dist = (values + sq[:, None]).clamp_min(0.0).sqrt()
    return idx.numpy(), dist.numpy()


def _self_matches(gray: np.ndarray, options: CopyMoveOptions) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of keypoint positions whose descriptors match under the generalised 2NN test."""
    sift = cv2.SIFT_create(nfeatures=options.max_keypoints,
                           contrastThreshold=options.contrast_threshold)
    scale = options.keypoint_scale
    small = gray if scale == 1.0 else cv2.resize(
        gray, (max(16, round(gray.shape[1] * scale)), max(16, round(gray.shape[0] * scale))),
        interpolation=cv2.INTER_AREA)
    keypoints, desc = sift.detectAndCompute(small, None)
    empty = np.zeros((0, 2), np.float32)
    if desc is None or len(keypoints) < 4:
        return empty, empty
    points = np.array([kp.pt for kp in keypoints], np.float32)
    if small is not gray:  # pixel centres: (x + 0.5) / scale - 0.5
        points = (points + 0.5) * np.array([gray.shape[1] / small.shape[1],
                                            gray.shape[0] / small.shape[0]], np.float32) - 0.5
    idx, dist = _nearest(desc, options.neighbours)
    # g2NN: neighbour j is a match while every ratio d_i / d_(i+1) up to it stays below
    # ``ratio`` (the first jump in distance separates the copies from everything else).
    ratios = dist[:, :-1] < options.ratio * dist[:, 1:]
    accepted = np.cumprod(ratios, axis=1).astype(bool)
    rows, cols = np.nonzero(accepted)
    i, j = rows, idx[rows, cols]
    i, j = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.zeros((0, 2), int)
    src, dst = points[pairs[:, 0]], points[pairs[:, 1]]
    far = np.hypot(*(src - dst).T) >= options.min_shift * max(gray.shape)
    return src[far], dst[far]


def _orient(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each unordered pair the same way (by x, then y) so that one affine map can
    explain all pairs of one clone."""
    swap = (src[:, 0] > dst[:, 0]) | ((src[:, 0] == dst[:, 0]) & (src[:, 1] > dst[:, 1]))
    a, b = src.copy(), dst.copy()
    a[swap], b[swap] = dst[swap], src[swap]
    return a, b


def _plausible(model: np.ndarray, min_shift: float) -> bool:
    """Reject degenerate models: near-identity (no displacement) or extreme scale/shear."""
    if not np.isfinite(model).all():
        return False
    linear = model[:, :2]
    singular = np.linalg.svd(linear, compute_uv=False)
    if singular.min() < 0.4 or singular.max() > 2.5:
        return False
    return float(np.hypot(*model[:, 2])) >= min_shift or not np.allclose(linear, np.eye(2),
                                                                           atol=0.05)


def find_clones(gray: np.ndarray, options: CopyMoveOptions
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Affine models (2x3, src -> dst) with their inlier points, best first."""
    src, dst = _self_matches(gray, options)
    if len(src) < 3:
        return []
    src, dst = _orient(src, dst)
    min_shift = options.min_shift * max(gray.shape)
    clones = []
    cv2.setRNGSeed(0)  # RANSAC is randomised: the same image must give the same answer
    while len(src) >= 3 and len(clones) < options.max_clones:
        model, keep = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC,
                                           ransacReprojThreshold=options.ransac_px,
                                           maxIters=2000, confidence=0.995)
        if model is None:
            break
        keep = keep.ravel().astype(bool)
        if keep.sum() < 3:
            break
        if _plausible(model, min_shift):
            clones.append((model, src[keep], dst[keep]))
        src, dst = src[~keep], dst[~keep]
    clones.sort(key=lambda c: -len(c[1]))
    return clones


def _zncc(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Local zero-normalised cross-correlation of two float images (box window); 0 where
    either is flat, so uniform areas never count as copied."""
    size = (window, window)
    mean_a, mean_b = cv2.blur(a, size), cv2.blur(b, size)
    var_a = cv2.blur(a * a, size) - mean_a**2
    var_b = cv2.blur(b * b, size) - mean_b**2
    cov = cv2.blur(a * b, size) - mean_a * mean_b
    flat = (var_a < 4.0) | (var_b < 4.0)  # std < 2 grey levels
    out = cov / np.sqrt(np.maximum(var_a * var_b, 1e-6))
    out[flat] = 0.0
    return out


def _warp(image: np.ndarray, model: np.ndarray) -> np.ndarray:
    h, w = image.shape
    return cv2.warpAffine(image, model, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _pixels(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of (x, y) points, rounded and clipped into the image."""
    xs = np.clip(np.round(points[:, 0]).astype(int), 0, shape[1] - 1)
    ys = np.clip(np.round(points[:, 1]).astype(int), 0, shape[0] - 1)
    return ys, xs


def seed_correlation(gray: np.ndarray, model: np.ndarray, dst: np.ndarray,
                     window: int) -> float:
    """Median local ZNCC between the image and its warp by ``model`` (src -> dst) at the
    clone's matched destination points: near 1 for copied pixels."""
    image = gray.astype(np.float32)
    zncc = _zncc(image, _warp(image, model), window)
    return float(np.median(zncc[_pixels(dst, gray.shape)]))


def _region(gray: np.ndarray, model: np.ndarray, seeds: np.ndarray,
            options: CopyMoveOptions) -> np.ndarray:
    """Pixels whose neighbourhood reappears under ``model`` (image correlated with itself
    warped), kept only in connected pieces that contain a matched keypoint."""
    h, w = gray.shape
    image = gray.astype(np.float32)
    valid = cv2.warpAffine(np.ones_like(image), model, (w, h), flags=cv2.INTER_NEAREST) > 0
    similar = (_zncc(image, _warp(image, model), options.zncc_window)
               >= options.zncc_threshold) & valid
    # Everything within a few pixels of its own position correlates with itself: the
    # displacement is checked by the model's plausibility, so drop nothing more here.
    mask = similar.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return np.zeros((h, w), bool)
    hit = np.unique(labels[_pixels(seeds, (h, w))])
    hit = hit[hit > 0]
    return np.isin(labels, hit)


def clone_region(gray: np.ndarray, model: np.ndarray, src: np.ndarray, dst: np.ndarray,
                 options: CopyMoveOptions) -> np.ndarray:
    """Source + target of one clone: the pasted side matches its source warped forward by
    the model, the source side matches the paste warped back."""
    return (_region(gray, model, dst, options)
            | _region(gray, cv2.invertAffineTransform(model), src, options))


def passes(inliers, correlation, options: CopyMoveOptions):
    """The decision rule on a clone's evidence (matches, seed correlation): at least
    ``min_inliers`` matches and the correlation check (``verify_zncc``; 0 turns it off).
    Written with broadcasting operators so calibration scores stored evidence of thousands
    of clones with this same function (scripts/calibrate_copy_move.py). (A few-match rule on
    the traced area was measured and not adopted: MODEL_CARD.md, seventh session.)"""
    checked = (correlation >= options.verify_zncc) | (options.verify_zncc <= 0)
    return (inliers >= options.min_inliers) & checked


def verified_clones(gray: np.ndarray, options: CopyMoveOptions) -> list[Clone]:
    """`find_clones` that pass the decision rule (`passes`), best first, each with its
    traced region. Clones with fewer matches than the rule needs are never checked: most
    images have only those, and the checks then cost nothing."""
    clones = []
    for model, src, dst in find_clones(gray, options):
        if len(src) < options.min_inliers:
            continue
        # Without the correlation rule (verify_zncc 0) the value is never read: skip the warp.
        correlation = (1.0 if options.verify_zncc <= 0
                       else seed_correlation(gray, model, dst, options.verify_window))
        if passes(len(src), correlation, options):
            clones.append(Clone(model, src, dst, clone_region(gray, model, src, dst, options)))
    return clones


def detect_copy_move(rgb: np.ndarray, options: CopyMoveOptions | None = None) -> CopyMoveResult:
    """Copy-move evidence and region map for one RGB uint8 image (any size)."""
    options = options or CopyMoveOptions()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    region = np.zeros((h, w), np.float32)
    if not options.enabled:
        return CopyMoveResult(0, 0.0, region)
    clones = verified_clones(gray, options)
    inliers = clones[0].inliers if clones else 0
    conf = confidence(inliers, options)
    for clone in clones:
        region[clone.region] = 1.0
    return CopyMoveResult(inliers, conf, region)
