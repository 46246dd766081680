"""Compare rules that turn the final heatmap into the reported mask, on synthetic validation
splits (held-apart training photos; scripts/make_val_set.py), never on evaluation data.

A global threshold treats every image alike, but the localizer's maps differ in level from
image to image (an uncompressed splice lights up less than a double-JPEG one), so the
per-image oracle F1 is far above the reported one. Candidates, each with a floor ``t``:
``absolute`` heat >= t; ``relative`` heat >= max(t, r * max(heat)); ``otsu`` heat >=
max(t, Otsu(heat)). Each mask is the one ``final_decision`` reports under that rule (the clone
regions where a clone was verified, nothing below ``tamper_threshold``).

    .venv/bin/python scripts/mask_rule_study.py /tmp/val-a /tmp/val-b --out-json rules.json
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import f1_score

from tamperscan.config import PipelineConfig, load_pipeline_config
from tamperscan.evaluate import load_mask, read_manifest
from tamperscan.stages import (
    DecodeELA,
    Detect,
    Localize,
    analyse,
    bytes_batch,
    final_decision,
    final_map,
    image_score,
)

FLOORS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
RATIOS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
JPEG = (".jpg", ".jpeg")
STRIDE = 2  # F1 on every second pixel of the ground truth (as scripts/calibrate.py)


def collect(folder: Path, config: PipelineConfig) -> list[dict]:
    """Per forged image: the final heatmap and clone map at the model size, truth, score."""
    stages = [DecodeELA(config), Localize(config), Detect(config)]
    rows = []
    for item in read_manifest(folder):
        if item.label != 1 or item.mask is None:
            continue
        batch = analyse(stages, bytes_batch([item.image.read_bytes()]))
        if batch["status"][0] != "ok":
            continue
        h, w = int(batch["height"][0]), int(batch["width"][0])
        truth = load_mask(item.mask, (h, w))[::STRIDE, ::STRIDE]
        if not truth.any():
            continue
        heat = final_map(batch["ts_map"][0], None, False, 0.0, batch["cm_map"][0])
        rows.append({"heat": heat, "clone": batch["cm_map"][0].astype(np.float32), "truth": truth,
                     "score": float(image_score(batch, config)[0]),
                     "format": "jpeg" if item.image.suffix.lower() in JPEG else "lossless"})
    return rows


def reported_f1(rows: list[dict], configs: list[PipelineConfig]) -> np.ndarray:
    """Mean F1 of the masks ``final_decision`` reports under each config's mask rule; each
    image's maps are brought to the truth's size once for all the configs."""
    f1s = np.zeros((len(rows), len(configs)))
    for i, row in enumerate(rows):
        size = row["truth"].shape[::-1]
        heat = cv2.resize(row["heat"], size, interpolation=cv2.INTER_LINEAR)
        clone = cv2.resize(row["clone"], size, interpolation=cv2.INTER_LINEAR)
        truth = row["truth"].ravel()
        for j, config in enumerate(configs):
            pred = final_decision(heat, row["score"], config, clone)
            f1s[i, j] = f1_score(truth, pred.ravel(), zero_division=0.0)
    return f1s.mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--by-format", action="store_true",
                        help="score JPEG and lossless (PNG/TIFF) files of each split apart")
    parser.add_argument("--cache", type=Path, help="pickle of the collected maps (reused)")
    parser.add_argument("--config", type=Path, help="YAML with PipelineConfig fields (weights)")
    args = parser.parse_args()
    config = load_pipeline_config(args.config)
    if args.cache and args.cache.exists():
        data = pickle.loads(args.cache.read_bytes())
    else:
        data = {folder.name: collect(folder, config) for folder in args.datasets}
        if args.cache:
            args.cache.write_bytes(pickle.dumps(data))
    if args.by_format:
        data = {f"{name}:{kind}": [r for r in rows if r["format"] == kind]
                for name, rows in data.items() for kind in ("jpeg", "lossless")}
    candidates = [("absolute", t, 0.0) for t in FLOORS]
    candidates += [("relative", t, r) for t in FLOORS for r in RATIOS]
    candidates += [("otsu", t, 0.0) for t in FLOORS]
    configs = [config.model_copy(update={"mask_rule": rule, "mask_threshold": floor,
                                         "mask_ratio": ratio})
               for rule, floor, ratio in candidates]
    per_set = {name: reported_f1(rows, configs) for name, rows in data.items()}
    table = []
    for j, (rule, floor, ratio) in enumerate(candidates):
        scores = {name: float(f1s[j]) for name, f1s in per_set.items()}
        table.append({"rule": rule, "floor": floor, "ratio": ratio, **scores,
                      "mean": float(np.mean(list(scores.values())))})
    table.sort(key=lambda r: -r["mean"])
    names = list(data)
    print("| rule | floor | ratio | " + " | ".join(names) + " | mean |")
    print("|---|---|---|" + "---|" * (len(names) + 1))
    for row in table[:15] + [r for r in table if r["rule"] == "absolute"]:
        cells = " | ".join(f"{row[n]:.3f}" for n in names)
        print(f"| {row['rule']} | {row['floor']} | {row['ratio']} | {cells} | {row['mean']:.3f} |")
    if args.out_json:
        args.out_json.write_text(json.dumps({"forged": {n: len(r) for n, r in data.items()},
                                             "rules": table}, indent=2))


if __name__ == "__main__":
    main()
