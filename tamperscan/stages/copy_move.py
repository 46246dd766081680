"""The keypoint copy-move detector (`tamperscan.copy_move`) as an evidence stage."""

from __future__ import annotations

import time

import numpy as np

from tamperscan.batch import Batch, mark_error, ok_rows, size, with_row_state
from tamperscan.config import PipelineConfig
from tamperscan.copy_move import detect_copy_move


class FindCopyMove:
    """Clone evidence on the localizer-size RGB: ``score_copy_move`` (0 without a verified
    clone, else >= 0.5) and ``cm_map`` (1 on both the source and the pasted region). CPU
    work with no model: the staged layout gives it CPU actors of its own."""

    kind, timing = "cpu", "t_copy_move"
    #: How the graph joins this evidence (tamperscan.graph): image score, region map, and
    #: whether its regions are exact enough to be the mask when found.
    score_column, region_column, exact_regions = "score_copy_move", "cm_map", True

    def __init__(self, config: PipelineConfig) -> None:
        self.options = config.copy_move

    def __call__(self, batch: Batch) -> Batch:
        n, s = size(batch), batch["rgb"].shape[1]
        out = {**with_row_state(batch), "cm_map": np.zeros((n, s, s), np.float16),
               "score_copy_move": np.zeros(n, np.float32), "t_copy_move": np.zeros(n, np.float32)}
        if not self.options.enabled:
            return out
        for i in np.flatnonzero(ok_rows(batch)):
            start = time.perf_counter()
            try:
                found = detect_copy_move(batch["rgb"][i], self.options)
                out["cm_map"][i], out["score_copy_move"][i] = found.region, found.confidence
            except Exception as exc:
                mark_error(out, i, "internal",
                           f"copy-move detection failed: {type(exc).__name__}: {exc}")
            out["t_copy_move"][i] = time.perf_counter() - start
        return out
