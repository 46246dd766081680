"""CAM + segmentation refinement (the CAM paper): segment, choose the region that best
matches the CAM, fuse them by Bayesian inference. The cascade decides which rows need it."""

from __future__ import annotations

import time

import cv2
import numpy as np

from tamperscan.batch import Batch, mark_error, ok_rows, size, with_row_state
from tamperscan.config import PipelineConfig
from tamperscan.refine.fusion import refine_cam
from tamperscan.refine.segmenters import build_segmenter


def refine_at(segmenter, rgb: np.ndarray, cam: np.ndarray,
              size: int) -> tuple[np.ndarray, np.ndarray]:
    """Segment-and-fuse at ``size`` x ``size`` (the segmenter dominates the cost, so it runs
    at a reduced resolution); returns (refined heatmap, chosen region mask) at the
    resolution of ``rgb``."""
    work_rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    work_cam = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    result = refine_cam(work_cam, segmenter.segment(work_rgb, work_cam))
    shape = rgb.shape[1::-1]
    region = cv2.resize(result.region_mask.astype(np.uint8), shape,
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(result.heatmap, shape, interpolation=cv2.INTER_LINEAR), region


class Refine:
    """Segment-and-fuse for the rows the cascade selected (column ``refine``, set by the
    graph's Score stage); other rows pass through at near-zero cost. ``refined`` says where
    the refined map ``refined_map`` enters the final map.

    ``every_row=True`` (evaluation, explain) also refines the rows the cascade skipped, to
    measure or show the refined CAM everywhere; ``refined`` still follows the cascade, so the
    final map is the scan's. (Ray Data cannot fan a stream out to two branches without
    re-running or materialising the upstream, so the cascade lives inside the stage.)"""

    kind, timing = "cpu", "t_refine"

    @classmethod
    def reads(cls, config: PipelineConfig) -> tuple[str, ...]:
        """The columns the endpoint sends to its deployment (as ``NetStage.reads``)."""
        return ("rgb", "cam", "refine")

    def __init__(self, config: PipelineConfig, every_row: bool = False) -> None:
        self.options = config.refine
        self.every_row = every_row
        self.segmenter = None
        if self.options.active or every_row:  # SAM & co. are only loaded when they can run
            self.segmenter = build_segmenter(self.options.segmenter,
                                             **self.options.segmenter_options)

    def __call__(self, batch: Batch) -> Batch:
        n, s = size(batch), batch["rgb"].shape[1]
        wanted = np.asarray(batch["refine"], bool) & ok_rows(batch)
        out = {**with_row_state(batch), "refined_map": np.zeros((n, s, s), np.float16),
               "refine_region": np.zeros((n, s, s), bool), "refined": np.zeros(n, bool),
               "t_refine": np.zeros(n, np.float32)}
        rows = ok_rows(batch) if self.every_row else wanted
        for i in np.flatnonzero(rows):
            start = time.perf_counter()
            try:
                out["refined_map"][i], out["refine_region"][i] = refine_at(
                    self.segmenter, batch["rgb"][i], batch["cam"][i], self.options.size)
                out["refined"][i] = wanted[i]
            except Exception as exc:
                mark_error(out, i, "internal", f"refinement failed: {type(exc).__name__}: {exc}")
            out["t_refine"][i] = time.perf_counter() - start
        return out
