"""Compare image-score rules on the synthetic validation split (never on evaluation data).

The image score decides the cascade and the `tampered` flag; this prints the image AUC of each
candidate rule over the localizer map and the WCBnet heads so the shipped rule is a measured
choice, not a guess.

    .venv/bin/python scripts/image_score_study.py /tmp/tamperscan-val [--config weights.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from tamperscan.batch import bytes_batch
from tamperscan.config import load_pipeline_config
from tamperscan.evaluate import read_manifest
from tamperscan.graph import STAGES, analyse, image_score, noisy_or, split
from tamperscan.stages import map_score


def top_mean(prob: np.ndarray, q: float) -> float:
    flat = np.sort(prob.ravel())
    return float(flat[int(len(flat) * (1 - q)):].mean())


# Each rule: (localizer map, WCBnet score, copy-move confidence) -> image score.
RULES = {
    "ts_blurmax_32": lambda m, w, c: map_score(m, 32),
    "ts_blurmax_16": lambda m, w, c: map_score(m, 16),
    "ts_top1pct": lambda m, w, c: top_mean(m, 0.01),
    "ts_top5pct": lambda m, w, c: top_mean(m, 0.05),
    "ts_mean": lambda m, w, c: float(m.mean()),
    "ts_contrast": lambda m, w, c: map_score(m, 32) - float(np.median(m)),
    "ts_area_0.5": lambda m, w, c: float((m >= 0.5).mean()),
    "wcbnet": lambda m, w, c: w,
    "mean_blurmax_wcbnet": lambda m, w, c: (map_score(m, 32) + w) / 2,
    "mean_contrast_wcbnet": lambda m, w, c: (map_score(m, 32) - float(np.median(m)) + w) / 2,
    "copy_move": lambda m, w, c: c,
    # the shipped noisy-OR without one of its net inputs
    "ts_or_copy_move": lambda m, w, c: noisy_or(map_score(m, 32), c),
    "wcbnet_or_copy_move": lambda m, w, c: noisy_or(w, c),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--config", type=Path,
                        help="YAML with PipelineConfig fields (e.g. two_stream_weights)")
    parser.add_argument("--save", type=Path,
                        help="also write each image's label and rule values here (.npz)")
    args = parser.parse_args()
    config = load_pipeline_config(args.config, runtime={"backend": "torch"})  # fp32 maps
    # The graph up to its evidence (decode; copy-move, localizer, WCBnet): every rule reads
    # the evidence columns, the shipped one as the graph's Score stage does.
    front, evidence, _ = split(STAGES)
    stages = [stage(config) for stage in (*front, *evidence)]
    labels, values = [], {name: [] for name in (*RULES, "shipped_final")}
    for item in read_manifest(args.dataset):
        data = item.image.read_bytes()
        batch = analyse(stages, bytes_batch([data]))
        if batch["status"][0] != "ok":
            continue
        labels.append(item.label)
        for name, rule in RULES.items():
            values[name].append(rule(batch["ts_map"][0], float(batch["score_wcbnet"][0]),
                                     float(batch["score_copy_move"][0])))
        # the shipped score, copy-move included
        values["shipped_final"].append(float(image_score(batch)[0]))
    result = {name: round(float(roc_auc_score(labels, v)), 3) for name, v in values.items()}
    if args.save:
        np.savez(args.save, label=np.array(labels), **{k: np.array(v) for k, v in values.items()})
    print(json.dumps({"n": len(labels), "n_forged": int(sum(labels)), "image_auc": result},
                     indent=2))


if __name__ == "__main__":
    main()
