"""Region proposals M_i for the segment-and-choose refinement, picked by name.

Every segmenter subclasses :class:`Segmenter` (``base``) and overrides one hook. Modules by
job: ``training_free`` (superpixels, the default), ``sam`` (optional segment-anything),
``semantic`` (DeepLab and PSPNet, whose net is in ``pspnet``), ``weights`` (local weight
files; nothing is downloaded). This module holds the registry behind ``build_segmenter``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tamperscan.refine.segmenters.base import DEDUPE_GRID_SIDE, Masks, Segmenter
from tamperscan.refine.segmenters.sam import SamAutomaticSegmenter, SamPromptSegmenter, load_sam
from tamperscan.refine.segmenters.semantic import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DeepLabSegmenter,
    PSPNetSegmenter,
)
from tamperscan.refine.segmenters.training_free import FelzenszwalbSegmenter, SlicSegmenter
from tamperscan.refine.segmenters.weights import load_state_dict_file

SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "felzenszwalb": FelzenszwalbSegmenter,
    "slic": SlicSegmenter,
    "sam": SamAutomaticSegmenter,
    "sam_prompt": SamPromptSegmenter,
    "deeplab": DeepLabSegmenter,
    "pspnet": PSPNetSegmenter,
}
DEFAULT_SEGMENTER = "felzenszwalb"


def build_segmenter(name: str = DEFAULT_SEGMENTER, **options: Any) -> Segmenter:
    """Segmenter by registry name; ``options`` go to its constructor."""
    try:
        factory = SEGMENTERS[name]
    except KeyError:
        raise ValueError(f"unknown segmenter {name!r}; choose from {sorted(SEGMENTERS)}") from None
    return factory(**options)


__all__ = [
    "DEDUPE_GRID_SIDE",
    "DEFAULT_SEGMENTER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SEGMENTERS",
    "DeepLabSegmenter",
    "FelzenszwalbSegmenter",
    "Masks",
    "PSPNetSegmenter",
    "SamAutomaticSegmenter",
    "SamPromptSegmenter",
    "Segmenter",
    "SlicSegmenter",
    "build_segmenter",
    "load_sam",
    "load_state_dict_file",
]
