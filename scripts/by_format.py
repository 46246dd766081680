"""Image-level figures of `tamperscan evaluate` reports split by file format: per set and
format, the forged / authentic counts, how many of each the JPEG evidence found (score >=
0.5), and the image AUC of `final` and `jpeg` on that format's images alone.

    .venv/bin/python scripts/by_format.py models/eval/*.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> str:
    return f"{roc_auc_score(labels, scores):.3f}" if 0 < labels.sum() < len(labels) else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+")
    args = parser.parse_args()
    print("| set | format | forged | authentic | JPEG region found (forged / authentic) "
          "| image AUC `final` | image AUC `jpeg` |\n|---|---|---|---|---|---|---|")
    for path in args.reports:
        report = json.loads(path.read_text())
        groups = defaultdict(list)
        for image in report["images"]:
            groups[Path(image["image"]).suffix.lower().lstrip(".")].append(image)
        for fmt, images in sorted(groups.items()):
            y = np.array([i["label"] for i in images])
            final = np.array([i["scores"]["final"] for i in images])
            jpeg = np.array([i["scores"]["jpeg"] for i in images])
            found = jpeg >= 0.5
            print(f"| {report['dataset']} | {fmt} | {int(y.sum())} | {int((y == 0).sum())} | "
                  f"{int(found[y == 1].sum())} / {int(found[y == 0].sum())} | "
                  f"{auc(y, final)} | {auc(y, jpeg)} |")


if __name__ == "__main__":
    main()
