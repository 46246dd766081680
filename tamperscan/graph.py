"""The scan graph, defined once: the stages in order, the cascade, the score and mask rules.

    bytes ─► DecodeELA ─► evidence: FindCopyMove, JpegEvidence, Nets (localizer + WCBnet)
                          (each reads only DecodeELA's columns)
          ─► Score ─► Refine (rows the cascade selects) ─► Fuse

Every front door derives from this module: the fused and staged Ray Data layouts
(`tamperscan.pipeline`), the Serve deployments (`tamperscan.serve`), `evaluate`, `explain` and
the benchmarks. The evidence stages read only the decoded inputs, so a front door may run
them in any order or concurrently (the endpoint does); stages of ``kind`` "model" run in
model actors / deployments, "cpu" ones in CPU actors (bulk) or in the endpoint's ingress.

Adding evidence is one stage class plus one line in ``EVIDENCE``. A stage that declares
``score_column`` joins the image score by noisy-OR; one that declares ``region_column`` joins
the heatmap by max, and with ``exact_regions`` its regions are the mask where it found any;
its ``row_columns`` (findings such as a JPEG's primary quality) reach the output rows.

Values are computed once as columns here (``score``, ``tampered``, ``heatmap``, ``mask``);
encodings and colours are applied at the edges (`tamperscan.render`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from tamperscan.batch import Batch, objects, ok_rows, size, strings
from tamperscan.config import PipelineConfig
from tamperscan.provenance import model_versions
from tamperscan.stages import DecodeELA, FindCopyMove, JpegEvidence, Nets, Refine

Stage = Callable[[Batch], Batch]

#: Evidence stages, each reading only DecodeELA's columns. The nets' scores (``Nets``) are
#: averaged; every other evidence stage joins as its class declares (module docstring).
EVIDENCE: tuple[type, ...] = (FindCopyMove, JpegEvidence, Nets)


def last_file_reader(stages: Sequence) -> int:
    """Index in ``stages`` (classes or built) of the last one that reads the original file
    bytes (``reads_file``), -1 if none: past it a front door need not carry them (the staged
    layout drops them before the model actors)."""
    readers = [i for i, s in enumerate(stages) if getattr(s, "reads_file", False)]
    return max(readers, default=-1)


def joined(kind: str) -> list[str]:
    """The columns of kind ``score_column`` / ``region_column`` the evidence stages add."""
    return [getattr(stage, kind) for stage in EVIDENCE if getattr(stage, kind, None)]


def findings() -> dict[str, str]:
    """Per-row findings evidence stages keep in the output rows (``row_columns``: name ->
    pyarrow type name), e.g. the JPEG stage's estimated primary quality."""
    return {name: kind for stage in EVIDENCE
            for name, kind in getattr(stage, "row_columns", {}).items()}


# --- the rules -------------------------------------------------------------------------------

def noisy_or(*scores: np.ndarray) -> np.ndarray:
    """1 - prod(1 - s): any one piece of evidence alone can make the score high."""
    keep = np.ones_like(np.asarray(scores[0], np.float32))
    for s in scores:
        keep = keep * (1 - np.asarray(s, np.float32))
    return 1 - keep


def image_score(batch: Batch) -> np.ndarray:
    """The image score: the mean of the localizer's and WCBnet's scores, combined with every
    other evidence score by noisy-OR, 1 - (1 - nets)(1 - copy_move)(1 - jpeg): any kind of
    evidence can flag an image, and a verified clone or a found double-JPEG region (score
    >= 0.5, 0 without one) always lifts an image above every image with the same net score
    and none. On both
    synthetic validation splits noisy-OR ranked images better than the larger of the two
    (image AUC 0.688 vs 0.670, 0.670 vs 0.655; MODEL_CARD.md)."""
    nets = (batch["score_two_stream"] + batch["score_wcbnet"]) / 2
    return noisy_or(nets, *(batch[c] for c in joined("score_column"))).astype(np.float32)


def cascade(scores: np.ndarray, ok: np.ndarray, config: PipelineConfig) -> np.ndarray:
    """Rows that go through refinement: ok, scored at least ``refine.threshold``, and only
    while refinement can change the output (``cam_weight`` > 0)."""
    return ok & (scores >= config.refine.threshold) & config.refine.active


def final_map(batch: Batch, i: int, cam_weight: float) -> np.ndarray:
    """Row ``i``'s final heatmap at the localizer size: the localizer map, blended with the
    refined CAM heatmap (weight ``cam_weight``) where refinement ran, the evidence regions
    (copy-move source and paste...) on top."""
    heat = batch["ts_map"][i].astype(np.float32)
    if "refined" in batch and batch["refined"][i]:
        heat = (1 - cam_weight) * heat + cam_weight * batch["refined_map"][i].astype(np.float32)
    for column in joined("region_column"):
        heat = np.maximum(heat, batch[column][i].astype(np.float32))
    return heat


def final_mask(heat: np.ndarray, tampered: bool, config: PipelineConfig,
               regions: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The reported mask at the resolution of ``heat``, only in tampered images: the first
    exact evidence region found (a verified clone: the localizer's other hot pixels are then
    false alarms, mean mask F1 on the validation split 0.370 vs 0.334 for the union,
    MODEL_CARD.md), else the heatmap pixels at or over ``mask_threshold``. ``regions``: the
    exact evidence maps at the resolution of ``heat``."""
    if not tampered:
        return np.zeros(heat.shape, bool)
    for region in regions:
        found = region >= 0.5
        if found.any():
            return found
    return heat >= config.mask_threshold


# --- the stages that apply them --------------------------------------------------------------

class Score:
    """The image score, the verdict and the cascade decision, computed once per row."""

    kind = "cpu"

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def __call__(self, batch: Batch) -> Batch:
        ok = ok_rows(batch)
        scores = np.where(ok, image_score(batch), np.nan).astype(np.float32)
        return {**batch, "score": scores,
                "tampered": ok & (np.nan_to_num(scores) >= self.config.tamper_threshold),
                "refine": cascade(np.nan_to_num(scores), ok, self.config)}


#: Columns of an output row (besides per-stage timings ``t_*``): what Fuse hands on.
ROW_COLUMNS = ("uri", "status", "error", "width", "height", "score", "tampered",
               "score_two_stream", "score_wcbnet", "score_wcbnet_heads", "refined",
               "mask_fraction", "mask", "heatmap", "model_versions")


class Fuse:
    """The final heatmap (values at the localizer size) and the binary mask at the original
    resolution, per row. Drops the large intermediate arrays unless ``keep_inputs`` (explain
    and evaluation read them): what leaves this stage is one output row each."""

    kind, timing = "cpu", "t_fuse"

    def __init__(self, config: PipelineConfig, keep_inputs: bool = False) -> None:
        self.config = config
        self.versions = model_versions(config)
        self.keep_inputs = keep_inputs
        self.exact = [s.region_column for s in EVIDENCE if getattr(s, "exact_regions", False)]

    def __call__(self, batch: Batch) -> Batch:
        n, s = size(batch), batch["rgb"].shape[1]
        start = time.perf_counter()
        heatmaps = np.zeros((n, s, s), np.float16)
        masks: list[np.ndarray] = [np.zeros((0, 0), bool)] * n
        fractions = np.zeros(n, np.float32)
        for i in np.flatnonzero(ok_rows(batch)):
            heat = final_map(batch, i, self.config.refine.cam_weight)
            heatmaps[i] = heat
            w, h = int(batch["width"][i]), int(batch["height"][i])
            full = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
            # Exact regions are resized to the original only when there is one.
            regions = [cv2.resize(batch[c][i].astype(np.float32), (w, h),
                                  interpolation=cv2.INTER_LINEAR)
                       for c in self.exact if batch[c][i].any()]
            masks[i] = final_mask(full, bool(batch["tampered"][i]), self.config, regions)
            fractions[i] = masks[i].mean()
        ok = ok_rows(batch)
        row = {**batch, "heatmap": heatmaps, "mask": objects(masks), "mask_fraction": fractions,
               "model_versions": strings([self.versions] * n),
               "t_fuse": np.full(n, (time.perf_counter() - start) / max(n, 1), np.float32)}
        for column in ("score_two_stream", "score_wcbnet", *joined("score_column")):
            row[column] = np.where(ok, batch[column], np.nan).astype(np.float32)
        row.setdefault("refined", np.zeros(n, bool))
        if self.keep_inputs:
            return row
        keep = {*ROW_COLUMNS, *joined("score_column"), *findings()}
        return {k: v for k, v in row.items() if k in keep or k.startswith("t_")}


# --- the graph -------------------------------------------------------------------------------

#: The stage classes in order, after ReadBytes (storage) and before the sink.
STAGES: tuple[type, ...] = (DecodeELA, *EVIDENCE, Score, Refine, Fuse)


def build_stages(config: PipelineConfig, inspect: bool = False) -> list[Stage]:
    """The in-process graph from bytes to output rows. ``inspect=True`` (evaluate, explain):
    the decoder keeps the original pixels and ELA, refinement runs on every row (the final
    map still follows the cascade) and Fuse keeps every intermediate column."""
    if not inspect:
        return [stage(config) for stage in STAGES]
    special = {DecodeELA: lambda: DecodeELA(config, originals=True),
               Refine: lambda: Refine(config, every_row=True),
               Fuse: lambda: Fuse(config, keep_inputs=True)}
    return [special[stage]() if stage in special else stage(config) for stage in STAGES]


def analyse(stages: Sequence[Stage], batch: Batch) -> Batch:
    """Run stages in order on one batch: the whole graph in-process."""
    for stage in stages:
        batch = stage(batch)
    return batch


def split(stages: Sequence) -> tuple[list, list, list]:
    """(front, evidence, back) of the graph's stages (built, or the classes of ``STAGES``):
    the decoder, the evidence stages, and Score/Refine/Fuse. The staged layout and the
    endpoint place each part differently."""
    kinds = [s if isinstance(s, type) else type(s) for s in stages]
    first = min(kinds.index(e) for e in EVIDENCE)
    last = max(kinds.index(e) for e in EVIDENCE)
    return list(stages[:first]), list(stages[first:last + 1]), list(stages[last + 1:])
