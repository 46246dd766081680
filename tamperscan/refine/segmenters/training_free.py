"""Training-free segmenters: superpixels at several scales, no weights, the CPU default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.segmentation import felzenszwalb, slic

from tamperscan.refine.segmenters.base import Masks, Segmenter


def _partition_masks(labels: np.ndarray) -> list[np.ndarray]:
    return [labels == value for value in np.unique(labels)]


class FelzenszwalbSegmenter(Segmenter):
    """Training-free CPU default: Felzenszwalb graph segmentation at several scales.

    One scale gives a partition of superpixels; larger ``scales`` merge adjacent pixels into
    object-sized regions, so the candidates hold both small pieces and whole objects (a spliced
    object is rarely one fine superpixel). Regions = every segment of every scale.
    """

    def __init__(
        self,
        scales: Sequence[float] = (100.0, 400.0, 1600.0),
        sigma: float = 0.8,
        min_size_frac: float = 0.0005,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.scales, self.sigma, self.min_size_frac = tuple(scales), sigma, min_size_frac

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        min_size = max(1, int(self.min_size_frac * rgb.shape[0] * rgb.shape[1]))
        regions: list[np.ndarray] = []
        for scale in self.scales:
            labels = felzenszwalb(rgb, scale=scale, sigma=self.sigma, min_size=min_size)
            regions.extend(_partition_masks(labels))
        return regions


class SlicSegmenter(Segmenter):
    """SLIC superpixels at several counts (fine pieces plus coarser, object-sized regions)."""

    def __init__(
        self,
        n_segments: Sequence[int] = (300, 80, 20),
        compactness: float = 10.0,
        sigma: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.n_segments, self.compactness, self.sigma = tuple(n_segments), compactness, sigma

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        regions: list[np.ndarray] = []
        for count in self.n_segments:
            labels = slic(
                rgb,
                n_segments=count,
                compactness=self.compactness,
                sigma=self.sigma,
                start_label=0,
                channel_axis=-1,
            )
            regions.extend(_partition_masks(labels))
        return regions
