"""Decode + ELA: bytes -> the model inputs every evidence stage reads."""

from __future__ import annotations

import time

import numpy as np

from tamperscan.batch import Batch, mark_error, objects, size, strings
from tamperscan.config import PipelineConfig
from tamperscan.nets.build import load_config, parse_config
from tamperscan.preprocess.decode import DecodeLimits, ImageError, decode_image
from tamperscan.preprocess.inputs import model_inputs


def input_sizes(config: PipelineConfig) -> tuple[int, int]:
    """(two-stream input size, signed-ELA size) from the model configs; the second is 0 when
    no net reads signed ELA (a WCBnet on the localizer's streams reads the localizer's
    inputs, which must then be its size too)."""
    localizer = int(load_config(config.two_stream_config)["input_size"])
    wcbnet = parse_config(load_config(config.wcbnet_config))
    if "signed_ela" in wcbnet.input_names:
        return localizer, int(wcbnet.input_size)
    if wcbnet.input_size != localizer:
        raise ValueError(f"{config.wcbnet_config}: a WCBnet that reads the localizer's inputs "
                         f"takes its size, {localizer}, not {wcbnet.input_size}")
    return localizer, 0


class DecodeELA:
    """bytes -> RGB and absolute ELA at the localizer size, signed ELA at the WCBnet size when
    it reads it (ELA at the original resolution, where the JPEG grid lives, then resized). The bytes
    pass through for evidence stages that read the file itself.

    ``originals=True`` also keeps, per row, the decoded RGB and the channel-mean absolute ELA
    at the original resolution (``original``, ``ela_level``): for `evaluate`'s ELA baseline
    and `explain`'s figures, so neither decodes the image a second time. The bulk scan and
    the endpoint never hold full-resolution arrays past this stage."""

    kind, timing = "cpu", "t_decode"

    def __init__(self, config: PipelineConfig, originals: bool = False) -> None:
        self.quality = config.ela_quality
        self.limits = DecodeLimits(max_bytes=config.max_image_bytes,
                                   max_pixels=config.max_image_pixels)
        self.ts_size, self.cb_size = input_sizes(config)
        self.originals = originals

    def __call__(self, batch: Batch) -> Batch:
        n, ts, cb = size(batch), self.ts_size, self.cb_size
        out = {
            "uri": strings(batch["uri"]),
            "status": strings(batch.get("status", ["ok"] * n)),
            "error": strings(batch.get("error", [""] * n)),
            "width": np.zeros(n, np.int32), "height": np.zeros(n, np.int32),
            "rgb": np.zeros((n, ts, ts, 3), np.uint8),
            "ela": np.zeros((n, ts, ts, 3), np.float16),
            "t_decode": np.zeros(n, np.float32),
        }
        if cb:
            out["sela"] = np.zeros((n, cb, cb, 3), np.float16)
        originals: list = [None] * n
        levels: list = [None] * n
        for i in np.flatnonzero(out["status"] == "ok"):
            start = time.perf_counter()
            try:
                image = decode_image(bytes(batch["data"][i]), self.limits)
                out["width"][i], out["height"][i] = image.width, image.height
                inputs = model_inputs(image.rgb, self.quality, ts, cb, self.originals)
                out["rgb"][i], out["ela"][i] = inputs.rgb, inputs.ela
                if cb:
                    out["sela"][i] = inputs.sela
                if self.originals:
                    originals[i], levels[i] = image.rgb, inputs.ela_level
            except ImageError as exc:
                mark_error(out, i, exc.code, str(exc))
            except Exception as exc:  # a decoder bug must not take the batch down
                mark_error(out, i, "internal", f"{type(exc).__name__}: {exc}")
            out["t_decode"][i] = time.perf_counter() - start
        if self.originals:
            out["original"], out["ela_level"] = objects(originals), objects(levels)
        out["data"] = batch["data"]  # the original bytes: evidence in the file itself (JPEG)
        return out
