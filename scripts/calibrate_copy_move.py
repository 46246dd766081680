"""Pick the copy-move detector's decision rule on synthetic validation splits (file names
carry the forgery kind; scripts/make_val_set.py), never on evaluation data.

A clone is reported by either of two rules (CopyMoveOptions): at least ``min_inliers``
matches whose seeds pass the correlation check ``verify_zncc``, or -- for few-match clones --
at least ``area_min_inliers`` matches, a stricter correlation ``area_zncc`` and a traced
source + target area of at least ``area_min`` of the image. Every combination of the given
values is scored by its false-alarm rate over every image *without* a copy-move (authentic,
splice, removal) -- and over real authentic photos given with --authentic -- and the share of
copy-moves it detects; among those within --max-false-alarms the one that detects most
(then: with the fewer false alarms) is chosen. Printed: the best matches-only rule per
``verify_zncc`` and the best few overall. The detector is training-free, so splits from any
photos may be pooled, and the training photos serve as real negatives.

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
from tamperscan.copy_move import (
    CopyMoveOptions,
    clone_region,
    find_clones,
    passes,
    seed_correlation,
)
from tamperscan.evaluate import read_manifest
from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.inputs import resize_to
from tamperscan.stages import input_sizes
from tamperscan.train.photos import load_photo_manifest


def clone_evidence(path: Path, size: int, options: CopyMoveOptions,
                   trace_from: float) -> list[tuple[int, float, float]]:
    """(matches, seed correlation, traced area fraction) of every clone RANSAC finds in the
    image at ``path``, at the working size DecodeELA gives the detector; the area only where
    the correlation reaches ``trace_from`` (else 0: no area rule can use it)."""
    rgb = resize_to(decode_image(path.read_bytes()).rgb, size)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    out = []
    for model, src, dst in find_clones(gray, options):
        correlation = seed_correlation(gray, model, dst, options.verify_window)
        area = (float(clone_region(gray, model, src, dst, options).mean())
                if correlation >= trace_from else 0.0)
        out.append((len(src), correlation, area))
    return out


class Evidence:
    """Every candidate clone of every image in one table, so a rule is a vector operation."""

    def __init__(self, per_image: list[list[tuple[int, float, float]]], kinds: list[str],
                 base: CopyMoveOptions):
        self.kinds, self.base = np.array(kinds), base
        rows = [(i, *c) for i, clones in enumerate(per_image) for c in clones]
        table = np.array(rows, np.float64).reshape(-1, 4)
        self.image, self.n, self.z, self.area = table.T
        self.image = self.image.astype(int)

    def detected(self, rule: dict) -> np.ndarray:
        """Images with a clone the detector would report under ``rule`` (CopyMoveOptions
        fields): copy_move.passes on the whole table."""
        hit = passes(self.n, self.z, self.area, self.base.model_copy(update=rule))
        return np.bincount(self.image[hit], minlength=len(self.kinds)) > 0

    def score(self, rule: dict) -> dict:
        hit = self.detected(rule)
        rate = {kind: float(hit[self.kinds == kind].mean()) if (self.kinds == kind).any()
                else 0.0 for kind in ("copy_move", "synthetic", "real")}
        return {**rule, "detected": rate["copy_move"], "false_alarms": rate["synthetic"],
                "false_alarms_real": rate["real"],
                "worst": max(rate["synthetic"], rate["real"])}


def collect(datasets: list[Path], authentic: list[Path], size: int,
            options: CopyMoveOptions, trace_from: float) -> Evidence:
    per_image, kinds = [], []
    for dataset in datasets:
        for item in read_manifest(dataset):
            per_image.append(clone_evidence(item.image, size, options, trace_from))
            kinds.append("copy_move" if "copy_move" in item.image.name else "synthetic")
    for folder in authentic:
        for photo in load_photo_manifest(folder):
            per_image.append(clone_evidence(photo.image_path, size, options, trace_from))
            kinds.append("real")
    return Evidence(per_image, kinds, options)


def row(result: dict) -> str:
    area = ("off" if result["area_min_inliers"] is None else
            f"{result['area_min_inliers']} / {result['area_zncc']} / {result['area_min']}")
    return (f"| {result['verify_zncc']} | {result['min_inliers']} | {area} | "
            f"{result['false_alarms']:.3f} | {result['false_alarms_real']:.3f} | "
            f"{result['detected']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="synthetic splits")
    parser.add_argument("--max-false-alarms", type=float, default=0.01)
    parser.add_argument("--verify", type=float, nargs="+", default=[0.0, 0.8, 0.85, 0.9, 0.93])
    parser.add_argument("--area-inliers", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--area-zncc", type=float, nargs="+", default=[0.95, 0.97, 0.98])
    parser.add_argument("--area-min", type=float, nargs="+", default=[0.01, 0.015, 0.02, 0.03])
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
    trace_from = min(args.area_zncc)
    evidence = collect(args.datasets, args.authentic, size, options, trace_from)

    def best(results: list[dict]) -> list[dict]:
        ok = [r for r in results if r["worst"] <= args.max_false_alarms]
        return sorted(ok, key=lambda r: (-r["detected"], r["worst"]))

    area_rules = [{"area_min_inliers": None, "area_zncc": options.area_zncc,
                   "area_min": options.area_min}] + [
        {"area_min_inliers": k, "area_zncc": z, "area_min": a}
        for k, z, a in itertools.product(args.area_inliers, args.area_zncc, args.area_min)]
    results = [evidence.score({"verify_zncc": v, "min_inliers": n, **area})
               for v, n, area in itertools.product(args.verify, range(3, 41), area_rules)]
    print("| verify_zncc | min_inliers | few-match rule: matches / correlation / area | "
          "false alarms, synthetic (no copy-move) | false alarms, real photos | "
          "copy-moves detected |")
    print("|---|---|---|---|---|---|")
    for v in args.verify:
        top = best([r for r in results if r["verify_zncc"] == v
                    and r["area_min_inliers"] is None])
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
        held = collect(args.confirm, [], size, options, trace_from)
        current = {k: getattr(config.copy_move, k) for k in
                   ("verify_zncc", "min_inliers", "area_min_inliers", "area_zncc", "area_min")}
        report["confirm"] = {"chosen": held.score({k: chosen[k] for k in current}),
                             "current_default": held.score(current)}
        print("confirmation splits (chosen, then the current default):")
        print(row(report["confirm"]["chosen"]))
        print(row(report["confirm"]["current_default"]))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
