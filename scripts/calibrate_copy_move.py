"""Pick the copy-move detector's decision rule on synthetic validation splits (file names
carry the forgery kind; scripts/make_val_set.py), never on evaluation data.

A clone is reported when it has at least ``min_inliers`` matches whose seeds pass the
correlation check ``verify_zncc`` (copy_move.passes). Every combination of the given values
is scored by its false-alarm rate over every image *without* a copy-move (authentic, splice,
removal) -- and over real authentic photos given with --authentic -- and the share of
copy-moves it detects; among those within --max-false-alarms the one that detects most
(then: with the fewer false alarms) is chosen. Printed: the best rule per ``verify_zncc`` and
the best few overall. The detector is training-free, so splits from any photos may be pooled,
and the training photos serve as real negatives.

    .venv/bin/python scripts/calibrate_copy_move.py /tmp/val900L /tmp/val900Q \
        --authentic ../shared/data/train --confirm /tmp/val900P /tmp/val900P2
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from tamperscan.config import PipelineConfig
from tamperscan.copy_move import CopyMoveOptions, find_clones, passes, seed_correlation
from tamperscan.evaluate import read_manifest
from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.inputs import resize_to
from tamperscan.stages import input_sizes
from tamperscan.train.photos import load_photo_manifest


def clone_evidence(path: Path, size: int, options: CopyMoveOptions) -> list[tuple[int, float]]:
    """(matches, seed correlation) of every clone RANSAC finds in the image at ``path``, at
    the working size DecodeELA gives the detector (stage FindCopyMove)."""
    rgb = resize_to(decode_image(path.read_bytes()).rgb, size)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return [(len(src), seed_correlation(gray, model, dst, options.verify_window))
            for model, src, dst in find_clones(gray, options)]


class Evidence:
    """Every candidate clone of every image in one table, so a rule is a vector operation."""

    def __init__(self, per_image: list[list[tuple[int, float]]], kinds: list[str],
                 base: CopyMoveOptions):
        self.kinds, self.base = np.array(kinds), base
        rows = [(i, *c) for i, clones in enumerate(per_image) for c in clones]
        table = np.array(rows, np.float64).reshape(-1, 3)
        self.image, self.n, self.z = table.T
        self.image = self.image.astype(int)

    def detected(self, rule: dict) -> np.ndarray:
        """Images with a clone the detector would report under ``rule`` (CopyMoveOptions
        fields): copy_move.passes on the whole table."""
        hit = passes(self.n, self.z, self.base.model_copy(update=rule))
        return np.bincount(self.image[hit], minlength=len(self.kinds)) > 0

    def score(self, rule: dict) -> dict:
        hit = self.detected(rule)
        rate = {kind: float(hit[self.kinds == kind].mean()) if (self.kinds == kind).any()
                else 0.0 for kind in ("copy_move", "synthetic", "real")}
        return {**rule, "detected": rate["copy_move"], "false_alarms": rate["synthetic"],
                "false_alarms_real": rate["real"],
                "worst": max(rate["synthetic"], rate["real"])}


def collect(datasets: list[Path], authentic: list[Path], size: int,
            options: CopyMoveOptions) -> Evidence:
    per_image, kinds = [], []
    for dataset in datasets:
        for item in read_manifest(dataset):
            per_image.append(clone_evidence(item.image, size, options))
            kinds.append("copy_move" if "copy_move" in item.image.name else "synthetic")
    for folder in authentic:
        for photo in load_photo_manifest(folder):
            per_image.append(clone_evidence(photo.image_path, size, options))
            kinds.append("real")
    return Evidence(per_image, kinds, options)


def row(result: dict) -> str:
    return (f"| {result['verify_zncc']} | {result['min_inliers']} | "
            f"{result['false_alarms']:.3f} | {result['false_alarms_real']:.3f} | "
            f"{result['detected']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="synthetic splits")
    parser.add_argument("--max-false-alarms", type=float, default=0.01)
    parser.add_argument("--verify", type=float, nargs="+", default=[0.0, 0.8, 0.85, 0.9, 0.93])
    parser.add_argument("--authentic", type=Path, action="append", default=[],
                        help="real photos in the training layout (MANIFEST.csv: source,image,"
                             "segments; e.g. ../shared/data/train), all negatives: synthetic "
                             "negatives alone underestimate real scenes' repeated structure")
    parser.add_argument("--confirm", type=Path, nargs="*", default=[],
                        help="independent splits on which the chosen rule and the current "
                             "default are only reported")
    parser.add_argument("--set", nargs="*", default=[], metavar="OPTION=VALUE",
                        help="other CopyMoveOptions to try, e.g. ratio=0.6 max_keypoints=5000")
    args = parser.parse_args()
    config = PipelineConfig()
    overrides = dict(item.split("=", 1) for item in args.set)
    options = CopyMoveOptions(**{**config.copy_move.model_dump(), **overrides, "min_inliers": 3})
    size, _ = input_sizes(config)
    evidence = collect(args.datasets, args.authentic, size, options)

    def best(results: list[dict]) -> list[dict]:
        ok = [r for r in results if r["worst"] <= args.max_false_alarms]
        return sorted(ok, key=lambda r: (-r["detected"], r["worst"]))

    results = [evidence.score({"verify_zncc": v, "min_inliers": n})
               for v, n in itertools.product(args.verify, range(3, 41))]
    print("| verify_zncc | min_inliers | false alarms, synthetic (no copy-move) | "
          "false alarms, real photos | copy-moves detected |")
    print("|---|---|---|---|---|")
    for v in args.verify:
        top = best([r for r in results if r["verify_zncc"] == v])
        if top:
            print(row(top[0]))
    ranked = best(results)
    for result in ranked[:5]:
        print(row(result))
    chosen = ranked[0] if ranked else None
    report = {"images": len(evidence.kinds), "copy_moves": int((evidence.kinds ==
                                                                "copy_move").sum()),
              "options": overrides, "chosen": chosen}
    if args.confirm and chosen:
        held = collect(args.confirm, [], size, options)
        current = {k: getattr(config.copy_move, k) for k in ("verify_zncc", "min_inliers")}
        report["confirm"] = {"chosen": held.score({k: chosen[k] for k in current}),
                             "current_default": held.score(current)}
        print("confirmation splits (chosen, then the current default):")
        print(row(report["confirm"]["chosen"]))
        print(row(report["confirm"]["current_default"]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
