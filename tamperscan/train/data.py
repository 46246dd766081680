"""Training samples: synthetic forgeries turned into model inputs by the inference code path."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.inputs import model_inputs
from tamperscan.train.synth import ForgerySynthesizer


class SyntheticForgeries(Dataset):
    """Item ``i`` is synthetic sample ``offset + i``: deterministic, nothing stored on disk."""

    def __init__(
        self,
        synth: ForgerySynthesizer,
        length: int,
        ts_size: int,
        cb_size: int,
        quality: int = 90,
        offset: int = 0,
    ) -> None:
        self.synth, self.length, self.offset = synth, length, offset
        self.ts_size, self.cb_size, self.quality = ts_size, cb_size, quality

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.synth.sample(self.offset + index)
        image = decode_image(sample.image_bytes)
        inputs = model_inputs(image.rgb, self.quality, self.ts_size, self.cb_size)
        mask = cv2.resize(
            sample.mask.astype(np.float32),
            (self.ts_size, self.ts_size),
            interpolation=cv2.INTER_AREA,
        )
        return {
            "rgb": torch.from_numpy(inputs.rgb.transpose(2, 0, 1).astype(np.float32) / 255.0),
            "ela": torch.from_numpy(np.ascontiguousarray(inputs.ela.transpose(2, 0, 1))),
            "sela": torch.from_numpy(np.ascontiguousarray(inputs.sela.transpose(2, 0, 1))),
            "mask": torch.from_numpy((mask >= 0.5).astype(np.float32))[None],
            "label": torch.tensor(float(sample.label)),
        }
