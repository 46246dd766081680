"""JPEG-domain evidence (`tamperscan.jpeg`) as an evidence stage: aligned double-JPEG
localisation on the file's own DCT coefficients."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from tamperscan.batch import Batch, mark_error, ok_rows, size, strings, with_row_state
from tamperscan.config import PipelineConfig
from tamperscan.jpeg import jpeg_findings, upright_map


class JpegEvidence:
    """Double-compression evidence from the original bytes (column ``data``): a region whose
    blocks lack the double-JPEG trace of the rest of the picture, on the stored grid or on a
    first grid the picture was shifted from.

    Adds ``score_jpeg`` (0 unless a region is found at the <= 1 % false-alarm point on real
    photos and authentic double-JPEGs, then >= 0.5; scripts/calibrate_jpeg.py), ``jpeg_map``
    (n, s, s) float16, the found region's per-block probability of 'not double-compressed',
    upright and at the localizer size), and the analyst columns ``jpeg_quality`` (estimated
    primary quality, -1 unknown), ``jpeg_double`` (compressed more than once), ``jpeg_table``
    (table fingerprint ``ijg:qQ`` / ``nonstandard:<hash>``; "" for non-JPEG, "unreadable"
    when libjpeg cannot read the coefficients, ";truncated" appended for truncated files).
    Non-JPEG, unreadable and truncated files get no evidence, not an error."""

    kind, timing = "cpu", "t_jpeg"
    #: It reads the file itself (DecodeELA's ``data`` column): front doors carry the bytes
    #: only as far as the last stage that does (`graph.last_file_reader`).
    reads_file = True
    #: How the graph joins this evidence: the score by noisy-OR, the region by max. Only a
    #: found region counts (the score is 0 otherwise), as for a verified clone: on the
    #: validation split that ranked images better than the graded score (MODEL_CARD.md).
    score_column, region_column = "score_jpeg", "jpeg_map"
    row_columns: ClassVar[dict[str, str]] = {"jpeg_quality": "int16", "jpeg_double": "bool",
                                             "jpeg_table": "string"}

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def __call__(self, batch: Batch) -> Batch:
        n, s = size(batch), batch["rgb"].shape[1]
        out = {**with_row_state(batch), "jpeg_map": np.zeros((n, s, s), np.float16),
               "score_jpeg": np.zeros(n, np.float32), "jpeg_quality": np.full(n, -1, np.int16),
               "jpeg_double": np.zeros(n, bool), "jpeg_table": strings([""] * n),
               "t_jpeg": np.zeros(n, np.float32)}
        # One BLAS thread: the block transforms are small matrix products, where threads
        # only contend with the other CPU stages.
        with threadpool_limits(1):
            for i in np.flatnonzero(ok_rows(batch)):
                start = time.perf_counter()
                try:
                    found = jpeg_findings(bytes(batch["data"][i]))
                    out["jpeg_table"][i] = found.table
                    out["jpeg_quality"][i] = found.quality
                    out["jpeg_double"][i] = found.double
                    out["score_jpeg"][i] = found.score
                    if found.score > 0:
                        out["jpeg_map"][i] = upright_map(found.tamper, found.height,
                                                         found.width, found.orientation, s,
                                                         origin=found.origin)
                except Exception as exc:
                    mark_error(out, i, "internal",
                               f"JPEG evidence failed: {type(exc).__name__}: {exc}")
                out["t_jpeg"][i] = time.perf_counter() - start
        return out
