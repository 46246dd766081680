"""Pick the copy-move detector's `min_inliers` on the synthetic validation split (held-apart
training photos, scripts/make_val_set.py; file names carry the forgery kind), never on
evaluation data: the smallest count whose false-alarm rate over every image *without* a
copy-move (authentic, splice, removal) is at most --max-false-alarms, printed with the
detection rate on the copy-moves at each count.

    .venv/bin/python scripts/calibrate_copy_move.py /tmp/tamperscan-val900cm
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tamperscan.config import PipelineConfig
from tamperscan.copy_move import detect_copy_move
from tamperscan.evaluate import read_manifest
from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.inputs import resize_to
from tamperscan.stages import input_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--max-false-alarms", type=float, default=0.01)
    args = parser.parse_args()
    config = PipelineConfig()
    options = config.copy_move.model_copy(update={"min_inliers": 3})
    size, _ = input_sizes(config)
    counts, is_copy = [], []
    for item in read_manifest(args.dataset):
        rgb = resize_to(decode_image(item.image.read_bytes()).rgb, size)  # as DecodeELA
        counts.append(detect_copy_move(rgb, options).inliers)
        is_copy.append("copy_move" in item.image.name)
    counts, is_copy = np.array(counts), np.array(is_copy)
    rows, chosen = [], None
    for n in range(3, 31):
        false_alarms = float(np.mean(counts[~is_copy] >= n))
        detected = float(np.mean(counts[is_copy] >= n))
        rows.append({"min_inliers": n, "false_alarms": false_alarms, "detected": detected})
        if chosen is None and false_alarms <= args.max_false_alarms:
            chosen = n
    print("| min_inliers | false alarms (no copy-move) | copy-moves detected |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['min_inliers']} | {row['false_alarms']:.3f} | {row['detected']:.3f} |")
    print(json.dumps({"images": len(counts), "copy_moves": int(is_copy.sum()),
                      "chosen_min_inliers": chosen}))


if __name__ == "__main__":
    main()
