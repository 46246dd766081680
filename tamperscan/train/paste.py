"""Pasting a patch into a host the way an image editor does: rotate/scale about its centre
(resampling), feather the edge, optionally match colour. Shared by splice and copy-move, whose
ground truth is the pixels this blend actually took over."""

from __future__ import annotations

import cv2
import numpy as np


def _match_color(
    patch: np.ndarray, reference: np.ndarray, patch_mask: np.ndarray, strength: float
) -> np.ndarray:
    """Move the masked patch's per-channel LAB mean/std towards the reference's (Reinhard
    transfer) by `strength` in [0, 1]; a forger's 'match colour' adjustment."""
    lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    src_pixels = lab[patch_mask]
    mean_s, std_s = src_pixels.mean(0), src_pixels.std(0) + 1e-3
    mean_r, std_r = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0) + 1e-3
    gain = np.clip(std_r / std_s, 0.5, 2.0)
    matched = (lab - mean_s) * gain + mean_r
    lab = lab + strength * (matched - lab)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def fit_transform(
    patch_shape: tuple[int, int], scale: float, angle_deg: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine (2x3) rotating/scaling a patch about its centre so that its transformed
    bounding box starts at (0, 0); returns it with that box's (height, width)."""
    h, w = patch_shape
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, scale)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
    low = corners.min(0)
    matrix[:, 2] -= low
    size = np.ceil(corners.max(0) - low).astype(int)
    return matrix, (int(size[1]), int(size[0]))


def paste(
    host: np.ndarray,
    patch: np.ndarray,
    patch_mask: np.ndarray,
    matrix: np.ndarray,
    origin: tuple[int, int],
    box: tuple[int, int],
    sigma: float,
    interpolation: int,
    color_strength: float = 0.0,
) -> np.ndarray:
    """Warp `patch` (with its region mask) by `matrix` into `host` at `origin` (y, x) with a
    feathered alpha; host is modified in place. Returns the manipulated-pixel mask (alpha >
    0.5, i.e. the warped region's own boundary)."""
    hh, hw = host.shape[:2]
    pad = int(np.ceil(3 * sigma)) + 2
    y0, x0 = max(origin[0] - pad, 0), max(origin[1] - pad, 0)
    y1, x1 = min(origin[0] + box[0] + pad, hh), min(origin[1] + box[1] + pad, hw)
    local = matrix.copy()
    local[:, 2] += (origin[1] - x0, origin[0] - y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(patch, local, size, flags=interpolation, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.warpAffine(patch_mask.astype(np.float32), local, size, flags=cv2.INTER_LINEAR)
    if sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    inside = alpha > 0.5
    region = host[y0:y1, x0:x1]
    if color_strength > 0 and inside.any():
        warped = _match_color(warped, region, inside, color_strength)
    a = alpha[..., None]
    blended = a * warped.astype(np.float32) + (1.0 - a) * region.astype(np.float32)
    region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    mask = np.zeros((hh, hw), bool)
    mask[y0:y1, x0:x1] = inside
    return mask
