"""Model inputs from a decoded image: the one function both inference and training call, so
the two can never drift apart (same codec, same ELA scale, same resizing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tamperscan.preprocess.ela import ela_both, resize_to

#: The ModelInputs field (and decoder / training-batch column) behind each net input name:
#: the nets name their inputs (``config.input_names``), the decoder makes these columns.
INPUT_COLUMNS = {"rgb": "rgb", "ela": "ela", "signed_ela": "sela"}


@dataclass(frozen=True)
class ModelInputs:
    rgb: np.ndarray   # (S, S, 3) uint8, localizer size
    ela: np.ndarray   # (S, S, 3) float32 absolute ELA, localizer size
    sela: np.ndarray | None  # (C, C, 3) float32 signed ELA, WCBnet size; None when C is 0
    #: (H, W) float32 channel-mean absolute ELA at the original size, when asked for
    ela_level: np.ndarray | None = None


def model_inputs(rgb: np.ndarray, quality: int, ts_size: int, cb_size: int,
                 keep_level: bool = False) -> ModelInputs:
    """ELA at the original resolution (the JPEG grid lives there), then resize each input.
    ``keep_level``: also the full-resolution ELA level map (the ELA baseline's map).
    ``cb_size`` 0: no signed ELA (no net reads it)."""
    absolute, signed = ela_both(rgb, quality)  # one JPEG round trip for both
    return ModelInputs(
        rgb=resize_to(rgb, ts_size),
        ela=resize_to(absolute, ts_size),
        sela=resize_to(signed, cb_size) if cb_size else None,
        ela_level=absolute.mean(axis=2) if keep_level else None,
    )
