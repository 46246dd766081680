"""What a calibrated ``refine.threshold`` could save with the current image score: derived,
not timed, from evaluation reports' per-image scores and measured stage costs.

    .venv/bin/python benchmarks/cascade_calibrated.py models/eval \
        --front-ms 139 --refine-ms 372            # costs: benchmarks/cascade.py's shipped arm
                                                  # and refine-all minus it, CPU ms per image

For each report with forged and authentic images: the threshold that keeps the given share
of forged images refined (``final`` scores: the score before refinement with the shipped
``refine.cam_weight`` 0), the share of authentic images at or above it, and the saving on an
archive with ``--forged-fraction`` forgeries, (front + refine) / (front + (forged fraction ·
recall + authentic fraction · authentic share) · refine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def recall_threshold(report: dict, recall: float) -> float:
    """The ``final`` score that keeps the share ``recall`` of the report's forged images at or
    above it (what refine.threshold must be for the cascade to refine them)."""
    scores = [r["scores"]["final"] for r in report["images"] if r["label"] == 1]
    return float(np.quantile(scores, 1 - recall))


def savings(report: dict, front_ms: float, refine_ms: float, recalls: list[float],
            forged_fraction: float = 0.05) -> list[dict]:
    """One row per recall: threshold, authentic share refined, saving vs refining all."""
    labels = np.array([r["label"] for r in report["images"]])
    scores = np.array([r["scores"]["final"] for r in report["images"]])
    rows = []
    for recall in recalls:
        threshold = recall_threshold(report, recall)
        authentic = float((scores[labels == 0] >= threshold).mean())
        refined = forged_fraction * recall + (1 - forged_fraction) * authentic
        rows.append({"recall": recall, "threshold": threshold, "authentic_refined": authentic,
                     "saving": (front_ms + refine_ms) / (front_ms + refined * refine_ms)})
    return rows


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, help="folder of evaluation report JSONs")
    parser.add_argument("--front-ms", type=float, required=True)
    parser.add_argument("--refine-ms", type=float, required=True)
    parser.add_argument("--recalls", type=float, nargs="+", default=[0.95, 0.9, 0.8])
    parser.add_argument("--forged-fraction", type=float, default=0.05)
    args = parser.parse_args(argv)
    lines = ["| set | " + " | ".join(f"{r:.0%} of forgeries refined: threshold / authentic "
                                       "refined / saving" for r in args.recalls) + " |",
             "|---|" + "---|" * len(args.recalls)]
    for path in sorted(args.reports.glob("*.json")):
        report = json.loads(path.read_text())
        labels = {r["label"] for r in report.get("images", [])}
        if labels != {0, 1}:
            continue  # no authentic images (or no forged ones): nothing to threshold
        rows = savings(report, args.front_ms, args.refine_ms, args.recalls,
                       args.forged_fraction)
        lines.append(f"| {report['dataset']} | " + " | ".join(
            f"{r['threshold']:.2f} / {r['authentic_refined']:.0%} / {r['saving']:.2f}×"
            for r in rows) + " |")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
