"""Pick the copy-move detector's decision rule on synthetic validation splits (file names
carry the forgery kind; scripts/make_val_set.py), never on evaluation data: for each
correlation check ``verify_zncc`` the smallest ``min_inliers`` whose false-alarm rate over
every image *without* a copy-move (authentic, splice, removal) -- and over real authentic
photos given with --authentic -- is at most --max-false-alarms, and the share of copy-moves
it detects; the pair that detects most (then: with the fewer false alarms) is chosen. The
detector is training-free, so splits from any photos may be pooled, and the training photos
serve as real negatives.

    .venv/bin/python scripts/calibrate_copy_move.py /tmp/val900L /tmp/val900P2 /tmp/val900Q \
        --authentic ../shared/data/train --set ransac_px=5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from tamperscan.config import PipelineConfig
from tamperscan.copy_move import CopyMoveOptions, find_clones, seed_correlation
from tamperscan.evaluate import read_manifest
from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.inputs import resize_to
from tamperscan.stages import input_sizes
from tamperscan.train.photos import load_photo_manifest


def clone_evidence(path: Path, size: int, options) -> list[tuple[int, float]]:
    """(matches, seed correlation) of every clone RANSAC finds in the image at ``path``, at
    the working size DecodeELA gives the detector."""
    rgb = resize_to(decode_image(path.read_bytes()).rgb, size)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return [(len(src), seed_correlation(gray, model, dst, options.verify_window))
            for model, src, dst in find_clones(gray, options)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="synthetic splits")
    parser.add_argument("--max-false-alarms", type=float, default=0.01)
    parser.add_argument("--verify", type=float, nargs="+", default=[0.0, 0.8, 0.85, 0.9, 0.93])
    parser.add_argument("--authentic", type=Path, action="append", default=[],
                        help="real photos in the training layout (MANIFEST.csv: source,image,"
                             "segments; e.g. ../shared/data/train), all negatives: synthetic "
                             "negatives alone underestimate real scenes' repeated structure")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="other CopyMoveOptions to try, e.g. ratio=0.6 max_keypoints=5000")
    args = parser.parse_args()
    config = PipelineConfig()
    overrides = dict(item.split("=", 1) for item in args.set)
    options = CopyMoveOptions(**{**config.copy_move.model_dump(), **overrides, "min_inliers": 3})
    size, _ = input_sizes(config)
    evidence, kinds = [], []  # kind: "copy_move", "synthetic" (negative) or "real"
    for dataset in args.datasets:
        for item in read_manifest(dataset):
            evidence.append(clone_evidence(item.image, size, options))
            kinds.append("copy_move" if "copy_move" in item.image.name else "synthetic")
    for folder in args.authentic:
        for photo in load_photo_manifest(folder):
            evidence.append(clone_evidence(photo.image_path, size, options))
            kinds.append("real")
    kinds = np.array(kinds)
    is_copy, is_real = kinds == "copy_move", kinds == "real"
    print("| verify_zncc | min_inliers | false alarms, synthetic (no copy-move) | false alarms, "
          "real photos | copy-moves detected |")
    print("|---|---|---|---|---|")
    best = None
    for threshold in args.verify:
        counts = np.array([max([n for n, z in clones if z >= threshold], default=0)
                           for clones in evidence])
        for n in range(3, 41):
            false_alarms = float(np.mean(counts[kinds == "synthetic"] >= n))
            real = float(np.mean(counts[is_real] >= n)) if is_real.any() else 0.0
            if max(false_alarms, real) <= args.max_false_alarms:
                detected = float(np.mean(counts[is_copy] >= n))
                print(f"| {threshold} | {n} | {false_alarms:.3f} | {real:.3f} | {detected:.3f} |")
                worst = max(false_alarms, real)
                if best is None or (detected, -worst) > (best["detected"], -best["worst"]):
                    best = {"verify_zncc": threshold, "min_inliers": n, "worst": worst,
                            "false_alarms": false_alarms, "false_alarms_real": real,
                            "detected": detected}
                break
    print(json.dumps({"images": len(evidence), "copy_moves": int(is_copy.sum()),
                      "options": overrides, "chosen": best}))


if __name__ == "__main__":
    main()
