"""The base class :class:`Segmenter`: the machinery every segmenter shares around one hook.

Mirrors pytorch-grad-cam's ``BaseCAM``: :class:`Segmenter` holds all shared machinery (input
checks, working-resolution downscale, dropping tiny regions, ranking, dedupe, a region cap,
upscaling back to the input size) and every segmenter is a small subclass overriding one hook,
``_regions(rgb, cam) -> masks`` at the working resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tamperscan.refine.fusion import region_similarity

DEDUPE_GRID_SIDE = 128  # IoU for dedupe is measured on a grid at most this big (speed)

Masks = np.ndarray | Sequence[np.ndarray]


class Segmenter:
    """Base class: ``segment(rgb, cam)`` -> (N, H, W) bool masks at the input size.

    Pipeline: validate -> downscale so the longest side is <= ``max_side`` -> ``_regions`` ->
    drop regions smaller than ``min_area_frac`` of the image -> rank -> greedy dedupe (IoU >=
    ``dedupe_iou`` with an already kept region) -> keep at most ``max_regions`` -> upscale
    (nearest) to the input size. Ranking: with a CAM, by the fusion score S (so the cap never
    drops the region fusion would choose at the working resolution); without one, by area,
    largest first. N may be 0: no fallback full-image mask is invented; fusion handles N == 0.

    Masks come back at the size of ``rgb``: pass the image at the grid you want masks on
    (N x H x W bools; a 4K input with 64 regions is ~0.5 GB).
    """

    default_max_side: int | None = 384

    def __init__(
        self,
        *,
        max_side: int | None = None,
        min_area_frac: float = 0.0005,
        max_regions: int = 64,
        dedupe_iou: float = 0.9,
    ) -> None:
        if max_regions < 1:
            raise ValueError("max_regions must be >= 1")
        if not 0.0 <= min_area_frac < 1.0:
            raise ValueError("min_area_frac must be in [0, 1)")
        self.max_side = self.default_max_side if max_side is None else max_side
        self.min_area_frac = min_area_frac
        self.max_regions = max_regions
        self.dedupe_iou = dedupe_iou

    def segment(self, rgb: np.ndarray, cam: np.ndarray | None = None) -> np.ndarray:
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        work_rgb = _downscale(rgb, self.max_side)
        work_shape = work_rgb.shape[:2]
        work_cam = None if cam is None else _cam_to_grid(cam, work_shape)
        masks = _stack_masks(self._regions(work_rgb, work_cam), work_shape)
        masks = self._select(masks, work_cam)
        return _upscale_masks(masks, (height, width))

    __call__ = segment

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        """Hook: candidate masks for ``rgb`` (h, w, 3 uint8) at the working resolution."""
        raise NotImplementedError

    def _select(self, masks: np.ndarray, cam: np.ndarray | None) -> np.ndarray:
        areas = masks.sum(axis=(1, 2))
        min_area = max(1, int(np.ceil(self.min_area_frac * masks[0].size))) if len(masks) else 1
        masks = masks[areas >= min_area]
        if not len(masks):
            return masks
        if cam is not None:
            ranked = masks[np.argsort(-region_similarity(masks, cam), kind="stable")]
        else:
            ranked = masks[np.argsort(-masks.sum(axis=(1, 2)), kind="stable")]
        return ranked[_greedy_dedupe(ranked, self.dedupe_iou, self.max_regions)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side}, max_regions={self.max_regions})"


# ----------------------------------------------------------------------------- machinery


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if min(rgb.shape[:2]) < 2:
        raise ValueError(f"rgb too small to segment: {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _downscale(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _cam_to_grid(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2 or not np.isfinite(cam).all():
        raise ValueError(f"cam must be a finite (H, W) map, got shape {cam.shape}")
    if cam.shape == shape:
        return cam
    shrinking = cam.shape[0] > shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(cam, (shape[1], shape[0]), interpolation=interpolation)


def _stack_masks(regions: Masks, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(regions, np.ndarray) and regions.ndim == 3:
        stacked = regions
    else:
        regions = list(regions)
        stacked = np.stack(regions) if regions else np.zeros((0, *shape), dtype=bool)
    if stacked.shape[1:] != shape:
        raise ValueError(f"segmenter returned masks of shape {stacked.shape[1:]}, expected {shape}")
    return stacked.astype(bool, copy=False)


def _greedy_dedupe(ranked: np.ndarray, min_iou: float, limit: int) -> np.ndarray:
    """Indices into ``ranked`` kept in order, skipping near-duplicates of earlier picks."""
    step = max(1, int(np.ceil(max(ranked.shape[1:]) / DEDUPE_GRID_SIDE)))
    coarse = ranked[:, ::step, ::step].reshape(len(ranked), -1).astype(np.float32)
    areas = coarse.sum(axis=1)
    kept: list[int] = []
    for i in range(len(ranked)):
        if kept:
            inter = coarse[kept] @ coarse[i]
            iou = inter / np.maximum(areas[kept] + areas[i] - inter, 1.0)
            if (iou >= min_iou).any():
                continue
        kept.append(i)
        if len(kept) == limit:
            break
    return np.asarray(kept, dtype=np.intp)


def _upscale_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:] == shape:
        return np.ascontiguousarray(masks)
    out = np.empty((len(masks), *shape), dtype=bool)
    for i, mask in enumerate(masks):
        resized = cv2.resize(mask.view(np.uint8), (shape[1], shape[0]), cv2.INTER_NEAREST)
        out[i] = resized.astype(bool)
    return out
