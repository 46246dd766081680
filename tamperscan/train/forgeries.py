"""The three manipulations. Each paints on the host in place, records its parameters in `info`
and returns its ground truth: splice (an object from another photo, with that photo's own JPEG
history), copy-move (a region of the host itself) and removal (inpainting)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tamperscan.train.compression import draw_quality, draw_subsampling, jpeg_recompress
from tamperscan.train.draws import log_uniform, uniform
from tamperscan.train.paste import fit_transform, paste
from tamperscan.train.regions import bbox, pick_segment, place, random_blob, random_region
from tamperscan.train.synth_config import SynthConfig


def _feather(rng: np.random.Generator, cfg: SynthConfig) -> float:
    return uniform(rng, cfg.feather_sigma_range)


def _angle(rng: np.random.Generator, cfg: SynthConfig) -> float:
    if rng.random() < cfg.p_rotate:
        return uniform(rng, (-cfg.max_rotation_deg, cfg.max_rotation_deg))
    return 0.0


def _interpolation(rng: np.random.Generator) -> int:
    return int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4]))


def splice(
    rng: np.random.Generator,
    host: np.ndarray,
    donor: np.ndarray,
    donor_segments: np.ndarray | None,
    donor_name: str,
    cfg: SynthConfig,
    info: dict[str, Any],
) -> np.ndarray | None:
    hh, hw = host.shape[:2]
    host_area = hh * hw
    dh, dw = donor.shape[:2]
    low, high = cfg.splice_area_range
    s_low, s_high = cfg.splice_scale_range
    # A segment is usable if some scale in splice_scale_range brings it into the area range.
    region = pick_segment(
        rng, donor_segments, (low * host_area / s_high**2, high * host_area / s_low**2), cfg
    )
    if region is not None:
        region_area = float(region.sum())
        lo = max(low, region_area * s_low**2 / host_area)
        hi = min(high, region_area * s_high**2 / host_area)
        scale = np.sqrt(log_uniform(rng, lo, hi) * host_area / region_area)
        info["object"] = "segment"
    else:
        scale = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
        blob = random_blob(rng, log_uniform(rng, low, high) * host_area / scale**2)
        region = place(rng, blob, (dh, dw))
        if region is None:
            return None
        info["object"] = "blob"
    info.update(donor=donor_name, q_src=None, scale=round(float(scale), 3))

    # Context beyond the object for feathering and resampling support.
    y0, x0, y1, x1 = bbox(region, pad=8)
    patch = np.ascontiguousarray(donor[y0:y1, x0:x1])
    if rng.random() < cfg.p_source_recompress:
        info["q_src"] = draw_quality(rng, cfg.source_quality_range)
        patch = jpeg_recompress(patch, info["q_src"], draw_subsampling(rng, cfg.p_chroma_444))
    angle = _angle(rng, cfg)
    matrix, box = fit_transform(patch.shape[:2], float(scale), angle)
    if box[0] >= hh or box[1] >= hw:
        return None
    origin = (int(rng.integers(0, hh - box[0])), int(rng.integers(0, hw - box[1])))
    strength = 0.0
    if rng.random() < cfg.p_color_match:
        strength = uniform(rng, cfg.color_match_strength_range)
    info.update(angle=round(angle, 2), color_match=round(strength, 3))
    return paste(
        host,
        patch,
        region[y0:y1, x0:x1],
        matrix,
        origin,
        box,
        _feather(rng, cfg),
        _interpolation(rng),
        strength,
    )


def copy_move(
    rng: np.random.Generator,
    host: np.ndarray,
    segments: np.ndarray | None,
    cfg: SynthConfig,
    info: dict[str, Any],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(pasted-region mask, copied-from mask outside the paste)."""
    hh, hw = host.shape[:2]
    region, origin_kind = random_region(rng, (hh, hw), segments, cfg.copy_move_area_range, cfg)
    if region is None:
        return None, None
    y0, x0, y1, x1 = bbox(region, pad=4)
    patch = host[y0:y1, x0:x1].copy()  # copied before pasting: source stays pristine
    scale = 1.0
    if rng.random() < cfg.p_copy_move_rescale:
        scale = log_uniform(rng, *cfg.copy_move_scale_range)
    angle = _angle(rng, cfg)
    matrix, box = fit_transform(patch.shape[:2], scale, angle)
    if box[0] >= hh or box[1] >= hw:
        return None, None
    # Prefer a target that does not cover the source (best of a few random tries).
    best, best_overlap = None, np.inf
    for _ in range(8):
        oy, ox = int(rng.integers(0, hh - box[0])), int(rng.integers(0, hw - box[1]))
        overlap = max(0, min(oy + box[0], y1) - max(oy, y0)) * max(
            0, min(ox + box[1], x1) - max(ox, x0)
        )
        if overlap < best_overlap:
            best, best_overlap = (oy, ox), overlap
        if overlap == 0:
            break
    info.update(scale=round(scale, 3), angle=round(angle, 2), object=origin_kind)
    mask = paste(
        host,
        patch,
        region[y0:y1, x0:x1],
        matrix,
        best,
        box,
        _feather(rng, cfg),
        _interpolation(rng),
    )
    return mask, region & ~mask


def removal(
    rng: np.random.Generator,
    host: np.ndarray,
    segments: np.ndarray | None,
    cfg: SynthConfig,
    info: dict[str, Any],
) -> np.ndarray | None:
    hh, hw = host.shape[:2]
    region, origin_kind = random_region(rng, (hh, hw), segments, cfg.removal_area_range, cfg)
    if region is None:
        return None
    # Forgers select an object with a margin; dilate a few pixels.
    grow = int(rng.integers(1, 6))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    region = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
    radius = int(rng.integers(3, 8))
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    # Inpainting only reads a band around the hole.
    y0, x0, y1, x1 = bbox(region, pad=2 * radius + 8)
    window = np.ascontiguousarray(host[y0:y1, x0:x1])
    hole = region[y0:y1, x0:x1]
    filled = cv2.inpaint(window, hole.astype(np.uint8), radius, method)
    grain = 0.0
    if rng.random() < cfg.p_inpaint_grain:
        # Noise level of the surroundings (MAD of a Laplacian), added back inside the hole.
        laplacian = cv2.Laplacian(window.astype(np.float32).mean(2), cv2.CV_32F)
        grain = float(np.median(np.abs(laplacian[~hole])) / 0.6745 / np.sqrt(20))
        noise = rng.standard_normal(filled.shape).astype(np.float32) * grain
        noisy = np.clip(filled.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
        filled = np.where(hole[..., None], noisy, filled)
    host[y0:y1, x0:x1][hole] = filled[hole]
    info.update(
        inpaint="telea" if method == cv2.INPAINT_TELEA else "ns",
        radius=radius,
        grain=round(grain, 2),
        object=origin_kind,
    )
    return region
