"""Where a forgery happens: an object from a photo's segment map, or a smooth random blob at a
random place; plus the mask geometry (tight crop, padded bounding box) patches are cut with."""

from __future__ import annotations

import cv2
import numpy as np

from tamperscan.train.draws import log_uniform
from tamperscan.train.synth_config import SynthConfig


def random_blob(rng: np.random.Generator, area: float) -> np.ndarray:
    """A smooth random shape of roughly `area` pixels, tight-cropped bool mask.

    Random star polygon (sorted angles, jittered radii, random elongation) filled with
    cv2.fillPoly, then Gaussian-blurred and re-thresholded to round the corners.
    """
    radius = np.sqrt(area / np.pi)
    aspect = np.exp(rng.uniform(-0.6, 0.6))
    n_points = int(rng.integers(5, 13))
    # Evenly spread angles with jitter: a star-shaped polygon that never degenerates.
    angles = (np.arange(n_points) + rng.uniform(-0.35, 0.35, n_points)) * (2 * np.pi / n_points)
    radii = radius * rng.uniform(0.7, 1.3, n_points)
    rotation = rng.uniform(0, np.pi)
    x = radii * np.cos(angles) * aspect
    y = radii * np.sin(angles) / aspect
    x, y = x * np.cos(rotation) - y * np.sin(rotation), x * np.sin(rotation) + y * np.cos(rotation)
    pad = int(np.ceil(0.2 * radius)) + 2
    x0, y0 = x.min() - pad, y.min() - pad
    width, height = int(np.ceil(x.max() - x0)) + pad, int(np.ceil(y.max() - y0)) + pad
    canvas = np.zeros((height, width), np.float32)
    points = np.stack([x - x0, y - y0], axis=1)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1.0)
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.15 * radius, 0.5))
    blob = canvas > 0.5
    if not blob.any():  # sub-pixel request: one pixel is the smallest blob
        blob[height // 2, width // 2] = True
    return _tight(blob)


def _tight(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def bbox(mask: np.ndarray, pad: int = 0) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1), half-open, grown by `pad` on every side and clamped to the mask."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (
        max(int(ys.min()) - pad, 0),
        max(int(xs.min()) - pad, 0),
        min(int(ys.max()) + 1 + pad, h),
        min(int(xs.max()) + 1 + pad, w),
    )


def place(
    rng: np.random.Generator, blob: np.ndarray, shape: tuple[int, int]
) -> np.ndarray | None:
    """`blob` at a random position in a bool map of `shape`; None if it does not fit."""
    bh, bw = blob.shape
    if bh >= shape[0] or bw >= shape[1]:
        return None
    y, x = int(rng.integers(0, shape[0] - bh)), int(rng.integers(0, shape[1] - bw))
    region = np.zeros(shape, bool)
    region[y : y + bh, x : x + bw] = blob
    return region


def _segment_areas(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, areas) of non-zero labels present in the map."""
    counts = np.bincount(segments.ravel())
    labels = np.nonzero(counts)[0]
    labels = labels[labels > 0]
    return labels, counts[labels]


def _border_labels(segments: np.ndarray) -> np.ndarray:
    edges = (segments[0], segments[-1], segments[:, 0], segments[:, -1])
    return np.unique(np.concatenate(edges))


def pick_segment(
    rng: np.random.Generator,
    segments: np.ndarray | None,
    area_bounds: tuple[float, float],
    cfg: SynthConfig,
) -> np.ndarray | None:
    """A label whose pixel count lies in `area_bounds`, as a bool map; None if no map,
    no fitting label, or the dice say blob. Labels that touch the image border are mostly
    background (sky, ground, cut-off objects), so interior ones are usually preferred."""
    if segments is None or rng.random() >= cfg.p_use_segment:
        return None
    labels, areas = _segment_areas(segments)
    ok = (areas >= area_bounds[0]) & (areas <= area_bounds[1])
    if not ok.any():
        return None
    interior = ok & ~np.isin(labels, _border_labels(segments))
    if interior.any() and rng.random() < cfg.p_prefer_interior:
        ok = interior
    label = rng.choice(labels[ok])
    return segments == label


def random_region(
    rng: np.random.Generator,
    shape: tuple[int, int],
    segments: np.ndarray | None,
    area_range: tuple[float, float],
    cfg: SynthConfig,
) -> tuple[np.ndarray | None, str]:
    """Full-size bool mask of an object (segment) or a blob at a random place, and which."""
    area = shape[0] * shape[1]
    region = pick_segment(rng, segments, (area_range[0] * area, area_range[1] * area), cfg)
    if region is not None:
        return region, "segment"
    return place(rng, random_blob(rng, log_uniform(rng, *area_range) * area), shape), "blob"
