"""Pick `mask_threshold` for the shipped weights and operating point on the synthetic
validation split (held-apart training photos; scripts/make_val_set.py), never on evaluation
data: the global pixel threshold on the final heatmap that maximises the mean per-image F1
of the reported masks over forged images. The image threshold is the operating point's
(`tamperscan calibrate`, in the config) unless --tamper-threshold says otherwise. The masks
are the graph's own rule (`graph.final_mask`): empty below the image threshold, a verified
clone's regions where the copy-move stage found one, else the heatmap pixels at or over the
candidate threshold.

    .venv/bin/python scripts/calibrate.py /tmp/tamperscan-val [--config candidate.yaml]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from tamperscan.config import load_pipeline_config
from tamperscan.evaluate import Evaluator, ImageFailed, read_manifest
from tamperscan.graph import final_mask

GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--tamper-threshold", type=float, default=None,
                        help="image threshold (default: the config's operating point)")
    parser.add_argument("--config", type=Path,
                        help="pipeline YAML (e.g. candidate two_stream_weights)")
    args = parser.parse_args()
    config = load_pipeline_config(args.config)
    evaluator = Evaluator(config)
    scores, labels, maps = [], [], []
    for item in read_manifest(args.dataset):
        try:
            scored = evaluator.score(item.image.read_bytes(), item.label, item.mask)
        except ImageFailed:
            continue
        scores.append(scored.scores["final"])
        labels.append(item.label)
        if scored.truth is not None and scored.truth.any():
            clone = scored.maps["copy_move"][::2, ::2]
            maps.append((scored.maps["final"][::2, ::2], scored.truth[::2, ::2],
                         scores[-1], [clone] if clone.any() else []))
    best_image = args.tamper_threshold or config.tamper_threshold

    def reported_f1(t: float) -> float:
        candidate = config.model_copy(update={"mask_threshold": t})
        return float(np.mean([
            f1_score(m.ravel(), final_mask(h, s >= best_image, candidate, regions).ravel(),
                     zero_division=0.0) for h, m, s, regions in maps]))

    pixel = {float(t): reported_f1(t) for t in GRID}
    best_pixel = max(pixel, key=pixel.get)
    flagged = float(np.mean([s >= best_image for s, y in zip(scores, labels, strict=True)
                             if y == 1]))
    print(json.dumps({"tamper_threshold": best_image, "forged_flagged": flagged,
                      "mask_threshold": best_pixel, "mean_pixel_f1": pixel[best_pixel],
                      "f1_by_mask_threshold": pixel, "n_images": len(scores),
                      "n_forged": len(maps)}, indent=2))


if __name__ == "__main__":
    main()
