"""Fit the logistic image score (tamperscan/score_model.py) on a synthetic validation split
and check it on others (scripts/make_val_set.py splits of the held-apart photos; never on
evaluation data).

Runs the pipeline's own DecodeELA, Localize and Detect with the given config (the weights the
model is for), fits scikit-learn's LogisticRegression on the first split's per-image features
(standardised), and prints, on every split, the image AUC of the final score -- noisy-OR with
the copy-move confidence, as stages.image_score -- with the model and with the fixed mean
rule. Writes the model only with --out.

    .venv/bin/python scripts/fit_image_score.py /tmp/val900L --confirm /tmp/val900Q \
        /tmp/val900P --out models/image_score.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from tamperscan.config import load_pipeline_config
from tamperscan.evaluate import read_manifest
from tamperscan.score_model import FEATURES, ImageScoreModel, feature
from tamperscan.stages import (
    DecodeELA,
    Detect,
    Localize,
    bytes_batch,
    model_versions,
    nets_score,
    noisy_or,
)

DEFAULT_FEATURES = ("score_two_stream", "ts_std", "ela_score", "ela_p99")
COLUMNS = (*FEATURES, "score_copy_move", "mean_rule")


def collect(folder: Path, stages: list, batch_size: int = 8) -> tuple[np.ndarray, dict]:
    """Labels and every known feature column of the images that decode."""
    items = read_manifest(folder)
    labels, columns = [], {c: [] for c in COLUMNS}
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = bytes_batch([i.image.read_bytes() for i in chunk])
        for stage in stages:
            batch = stage(batch)
        batch["mean_rule"] = nets_score(batch)  # the default nets score, to compare with
        values = {c: feature(batch, c) for c in COLUMNS}
        for k, item in enumerate(chunk):
            if batch["status"][k] == "ok":
                labels.append(item.label)
                for c in COLUMNS:
                    columns[c].append(float(values[c][k]))
    return np.array(labels), {c: np.array(v) for c, v in columns.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fit", type=Path, help="validation split to fit on")
    parser.add_argument("--confirm", type=Path, nargs="*", default=[],
                        help="further splits, only scored")
    parser.add_argument("--config", type=Path, help="pipeline YAML (the weights to fit for)")
    parser.add_argument("--features", nargs="+", default=list(DEFAULT_FEATURES),
                        choices=sorted(FEATURES))
    parser.add_argument("--out", type=Path, help="write the model here (YAML)")
    args = parser.parse_args(argv)
    config = load_pipeline_config(args.config)
    stages = [DecodeELA(config), Localize(config), Detect(config)]
    data = {split: collect(split, stages) for split in (args.fit, *args.confirm)}

    def matrix(columns: dict) -> np.ndarray:
        return np.stack([columns[f] for f in args.features], axis=1)

    labels, columns = data[args.fit]
    x = matrix(columns)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-12
    fit = LogisticRegression(max_iter=2000).fit((x - mean) / scale, labels)
    model = ImageScoreModel(features=args.features, mean=mean.tolist(), scale=scale.tolist(),
                            coef=fit.coef_[0].tolist(), intercept=float(fit.intercept_[0]),
                            fitted_for=model_versions(config))
    results = {}
    for split, (y, cols) in data.items():
        copy_move = cols["score_copy_move"]
        fixed = noisy_or(cols["mean_rule"], copy_move)
        learned = noisy_or(model.probability(cols), copy_move)
        results[str(split)] = {"n": len(y), "forged": int(y.sum()),
                               "image_auc_mean_rule": round(roc_auc_score(y, fixed), 3),
                               "image_auc_model": round(roc_auc_score(y, learned), 3)}
    model.note = (f"fit on {args.fit} ({results[str(args.fit)]['n']} images); image AUC "
                  "(noisy-OR with copy-move) mean rule -> model: " + "; ".join(
                      f"{Path(s).name} {r['image_auc_mean_rule']} -> {r['image_auc_model']}"
                      for s, r in results.items()))
    print(json.dumps({"features": args.features, "coef": model.coef, "splits": results},
                     indent=2))
    if args.out:
        command = "python scripts/fit_image_score.py " + " ".join(sys.argv[1:])
        model.save(args.out, header=f"Logistic image score (tamperscan/score_model.py).\n"
                   f"Written by: {command}")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
