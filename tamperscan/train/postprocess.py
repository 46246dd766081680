"""Global changes after the manipulation, applied to forged and authentic images alike so that
the label cannot be read off the chain: mild downscale, a CoMoFoD-style photometric change, a
1-7 px crop that shifts the 8x8 JPEG grid. Masks follow the pixels."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tamperscan.train.draws import uniform
from tamperscan.train.synth_config import SynthConfig

PHOTOMETRIC = ("brightness", "contrast", "blur", "noise", "colour_reduction")


def photometric(rng: np.random.Generator, image: np.ndarray,
                cfg: SynthConfig) -> tuple[np.ndarray, str]:
    """One CoMoFoD-style global change of the whole image (geometry untouched, so masks stay)."""
    kind = PHOTOMETRIC[int(rng.integers(len(PHOTOMETRIC)))]
    pixels = image.astype(np.float32)
    if kind == "brightness":
        pixels += uniform(rng, cfg.brightness_range) * rng.choice([-1.0, 1.0])
    elif kind == "contrast":
        mean = pixels.mean(axis=(0, 1), keepdims=True)
        pixels = mean + (pixels - mean) * uniform(rng, cfg.contrast_range)
    elif kind == "blur":
        pixels = cv2.GaussianBlur(pixels, (0, 0), uniform(rng, cfg.blur_sigma_range))
    elif kind == "noise":
        sigma = uniform(rng, cfg.noise_sigma_range)
        pixels += rng.standard_normal(pixels.shape).astype(np.float32) * sigma
    else:
        step = 256.0 / int(rng.integers(cfg.colour_levels_range[0], cfg.colour_levels_range[1] + 1))
        pixels = (np.floor(pixels / step) + 0.5) * step
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8), kind


def post_process(
    rng: np.random.Generator,
    image: np.ndarray,
    masks: list[np.ndarray | None],
    cfg: SynthConfig,
    info: dict[str, Any],
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Global operations applied to every kind alike; masks follow the pixels."""
    info["resize"] = None
    if rng.random() < cfg.p_global_resize:
        scale = uniform(rng, cfg.global_resize_range)
        h, w = image.shape[:2]
        size = (max(round(w * scale), 8), max(round(h * scale), 8))
        flag = int(rng.choice([cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC]))
        image = cv2.resize(image, size, interpolation=flag)
        masks = [
            None
            if m is None
            else cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
            for m in masks
        ]
        info["resize"] = round(scale, 3)
    info["photometric"] = None
    if cfg.p_photometric > 0 and rng.random() < cfg.p_photometric:
        image, info["photometric"] = photometric(rng, image, cfg)
    info["grid_shift"] = (0, 0)
    if rng.random() < cfg.p_grid_shift:
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = int(rng.integers(0, 8)), int(rng.integers(0, 8))
        image = image[dy:, dx:]
        masks = [None if m is None else m[dy:, dx:] for m in masks]
        info["grid_shift"] = (dy, dx)
    image = np.ascontiguousarray(image)
    masks = [None if m is None else np.ascontiguousarray(m) for m in masks]
    return image, masks
