"""Pick `refine.cam_weight` and `mask_threshold` for the shipped weights and operating point on
the synthetic validation split (held-apart training photos; scripts/make_val_set.py), never on
evaluation data: the pair that maximises the mean per-image F1 of the reported masks over
forged images, among the weights that keep the final map's mean pixel AUC within
``AUC_TOLERANCE`` of refinement off (the reported masks count the flagged images only; the
heatmap is shown for every image) and that keep every flagged image's mask non-empty:
(1 - cam_weight) * (2 * tamper_threshold - 1) >= mask_threshold, a lower bound of a flagged
image's final-map maximum (tests/test_operating_point.py). The image threshold is the
operating point's (`tamperscan calibrate`, in the config) unless --tamper-threshold says
otherwise.

The graph runs once per image with refinement on every row; each candidate pair is then
applied through the graph's own rules (`graph.final_map`: the localizer map blended with the
refined CAM on the rows the cascade refines, the evidence regions on top; `graph.final_mask`:
empty below the image threshold, a verified clone's regions where one was found, else the
heatmap at or over the mask threshold). A weight of 0 is refinement switched off.

    .venv/bin/python scripts/calibrate.py /tmp/tamperscan-val [--config candidate.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from tamperscan.config import load_pipeline_config
from tamperscan.evaluate import Evaluator, load_mask, read_manifest
from tamperscan.graph import Fuse, cascade, final_map, final_mask, joined
from tamperscan.render import fit

MASK_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)
WEIGHT_GRID = np.round(np.arange(0.0, 1.01, 0.1), 1)
AUC_TOLERANCE = 0.005
#: Every second pixel of each axis: the F1 of a mask changes by far less than the grid step.
STEP = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--tamper-threshold", type=float, default=None,
                        help="image threshold (default: the config's operating point)")
    parser.add_argument("--config", type=Path,
                        help="pipeline YAML (e.g. candidate wcbnet_weights)")
    args = parser.parse_args()
    config = load_pipeline_config(args.config)
    image_threshold = args.tamper_threshold or config.tamper_threshold
    evaluator = Evaluator(config)  # refinement on every row; the weights are applied below
    regions, exact = joined("region_column"), Fuse(config).exact
    # the rows the cascade refines once refinement is on (any weight > 0)
    refining = config.model_copy(update={"refine": config.refine.model_copy(
        update={"cam_weight": 1.0})})
    rows, n_images = [], 0
    for item in read_manifest(args.dataset):
        row = evaluator.row(item.image.read_bytes())
        if row["status"] != "ok":
            continue
        n_images += 1
        if item.label != 1 or item.mask is None:
            continue
        truth = load_mask(item.mask, (int(row["height"]), int(row["width"])))[::STEP, ::STEP]
        if not truth.any():
            continue
        rows.append({"ts_map": row["ts_map"][None], "refined_map": row["refined_map"][None],
                     **{c: row[c][None] for c in regions},
                     "refined": cascade(np.array([row["score"]]), np.array([True]), refining),
                     "score": float(row["score"]), "truth": truth, "size": truth.shape[::-1]})

    def masks_f1(weight: float) -> dict[float, float]:
        f1s = {float(t): [] for t in MASK_GRID}
        aucs = []
        for r in rows:
            heat = fit(final_map(r, 0, weight), *r["size"])
            found = [fit(r[c][0].astype(np.float32), *r["size"]) for c in exact if r[c][0].any()]
            aucs.append(roc_auc_score(r["truth"].ravel(), heat.ravel()))
            for t in MASK_GRID:
                candidate = config.model_copy(update={"mask_threshold": float(t)})
                mask = final_mask(heat, r["score"] >= image_threshold, candidate, found)
                f1s[float(t)].append(f1_score(r["truth"].ravel(), mask.ravel(),
                                              zero_division=0.0))
        return {"pixel_auc": float(np.mean(aucs)), **{t: float(np.mean(v))
                                                      for t, v in f1s.items()}}

    table = {float(w): masks_f1(float(w)) for w in WEIGHT_GRID}
    kept = [w for w in table if table[w]["pixel_auc"] >= table[0.0]["pixel_auc"] - AUC_TOLERANCE]
    best = max(((w, t) for w in kept for t in map(float, MASK_GRID)
                if (1 - w) * (2 * image_threshold - 1) >= t),
               key=lambda pair: table[pair[0]][pair[1]])
    print(json.dumps({
        "tamper_threshold": image_threshold, "cam_weight": best[0], "mask_threshold": best[1],
        "mean_reported_mask_f1": table[best[0]][best[1]],
        "off": {"mask_threshold": max(map(float, MASK_GRID), key=table[0.0].get),
                "mean_reported_mask_f1": max(table[0.0][float(t)] for t in MASK_GRID)},
        "pixel_auc_by_cam_weight": {w: v["pixel_auc"] for w, v in table.items()},
        "best_f1_by_cam_weight": {w: max(v[float(t)] for t in MASK_GRID)
                                  for w, v in table.items()},
        "n_images": n_images, "n_forged_with_masks": len(rows)}, indent=2))


if __name__ == "__main__":
    main()
