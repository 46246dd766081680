"""The edges: every encoding and colouring of computed values, in one place.

The graph computes scores, maps and masks once, as values (`tamperscan.graph.Fuse`). What
leaves the process is encoded here: the scan sink writes masks and heatmaps as PNGs, the
endpoint sends PNG + RLE masks and overlays, `explain` and the report draw overlays. Heatmaps
are stored as their values (8-bit greyscale, level = round(255 x value)), never as colours:
colour is applied only for display (`colorize`), so every reader gets the numbers back.

Mask RLE (the endpoint's format): COCO's *uncompressed* RLE, ``{"size": [height, width],
"counts": [...]}``, flattened in **column-major** (Fortran) order as COCO does; ``counts``
alternates run lengths of 0s and 1s starting with 0s (a mask whose first pixel is set starts
with a 0-length run). It decodes with :func:`rle_decode` or with pycocotools.
"""

from __future__ import annotations

import cv2
import numpy as np


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def mask_png(mask: np.ndarray) -> bytes:
    """Binary mask as an 8-bit PNG (0/255); an empty (0-size) mask -- error rows -- as b""."""
    return encode_png(mask.astype(np.uint8) * 255) if mask.size else b""


def mask_from_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) > 127


def heat_levels(heat: np.ndarray) -> np.ndarray:
    """Heat values in [0, 1] as the uint8 levels a heatmap PNG stores."""
    return np.round(np.clip(heat.astype(np.float32), 0, 1) * 255).astype(np.uint8)


def heatmap_png(heat: np.ndarray) -> bytes:
    """The heatmap's values as a greyscale PNG (see the module docstring)."""
    return encode_png(heat_levels(heat))


def heatmap_from_png(data: bytes) -> np.ndarray:
    """Heat values in [0, 1] from a heatmap PNG. A colour PNG is refused: scans before
    heatmaps were stored as values wrote JET colours, which are not values."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("not a PNG image")
    if image.ndim != 2:
        raise ValueError("colour heatmap (written by an older scan): re-scan for values")
    return image.astype(np.float32) / 255.0


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a map (float, linear) or mask (bool, nearest) to ``width`` x ``height``."""
    if image.dtype == bool:
        return cv2.resize(image.astype(np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def colorize(heat: np.ndarray) -> np.ndarray:
    """Heat values in [0, 1] -> JET colours (BGR), for display only."""
    return cv2.applyColorMap(heat_levels(heat), cv2.COLORMAP_JET)


def heat_overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """JET-coloured map blended over the image (BGR, for OpenCV writing)."""
    h, w = rgb.shape[:2]
    colour = colorize(fit(heat, w, h))
    return cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 1 - alpha, colour, alpha, 0)


def outline_overlay(rgb: np.ndarray, mask: np.ndarray,
                    colour: tuple[int, int, int] = (0, 0, 255)) -> np.ndarray:
    """The mask's outline drawn over the image (BGR)."""
    h, w = rgb.shape[:2]
    full = fit(mask.astype(bool), w, h).astype(np.uint8)
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.drawContours(out, contours, -1, colour, max(2, w // 300))
    return out


def preview(rgb: np.ndarray, width: int, height: int, max_side: int) -> np.ndarray:
    """``rgb`` resized to the image's aspect ratio, longest side at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, shape, interpolation=cv2.INTER_AREA if scale < 1 else
                      cv2.INTER_LINEAR)


def overlay_png(rgb_small: np.ndarray, heat: np.ndarray, width: int, height: int,
                max_side: int) -> bytes:
    """The endpoint's preview: the heatmap over the image at the image's aspect ratio. The
    base picture is the localizer-size RGB the models saw (the original pixels are not kept
    past decoding), so this is a preview, not a full-resolution render."""
    return encode_png(heat_overlay(preview(rgb_small, width, height, max_side), heat, 0.45))


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major, counts start with a run of 0s)."""
    mask = np.asarray(mask, bool)
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`: (height, width) bool."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")
