"""Model inputs from a decoded image: the one function both inference and training call, so
the two can never drift apart (same codec, same ELA scale, same resizing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tamperscan.preprocess.ela import ela_both, resize_to


@dataclass(frozen=True)
class ModelInputs:
    rgb: np.ndarray   # (S, S, 3) uint8, localizer size
    ela: np.ndarray   # (S, S, 3) float32 absolute ELA, localizer size
    sela: np.ndarray  # (C, C, 3) float32 signed ELA, WCBnet size


def model_inputs(rgb: np.ndarray, quality: int, ts_size: int, cb_size: int) -> ModelInputs:
    """ELA at the original resolution (the JPEG grid lives there), then resize each input."""
    absolute, signed = ela_both(rgb, quality)  # one JPEG round trip for both
    return ModelInputs(
        rgb=resize_to(rgb, ts_size),
        ela=resize_to(absolute, ts_size),
        sela=resize_to(signed, cb_size),
    )
