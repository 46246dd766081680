"""Rebuild the evaluation tables of models/MODEL_CARD.md from `tamperscan evaluate` reports:
each set's Markdown table and the table averaged over the real evaluation sets, so the card
never holds a number typed by hand. With --print-only, print the averaged table of any report
folder (e.g. a candidate checkpoint's) and leave the card alone.

    .venv/bin/python scripts/card_tables.py                  # models/eval -> MODEL_CARD.md
    .venv/bin/python scripts/card_tables.py --eval-dir /tmp/candidate --print-only
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL_SETS = ("casia2_samples", "columbia_casia1_samples", "comofod_subset", "noso")
CARD_SETS = (*EVAL_SETS, "synthetic_val")
METRICS = ("pixel_f1", "pixel_f1_best", "pixel_auc", "image_auc", "tpr_at_5fa", "tpr_at_1fa",
           "balanced_accuracy", "false_alarm_rate")
HEADER = ("| method | F1 (0.5; `final`: reported mask) | best-threshold F1 (oracle) | pixel AUC "
          "| image AUC | TPR @ 5 % FA | TPR @ 1 % FA | bal. acc. (op.) | false alarms (op.) |"
          "\n|---|---|---|---|---|---|---|---|---|")
PROGRESS = re.compile(r"^\S+\s+(\[\w+\] )?\d+/\d+$")


def averaged_table(eval_dir: Path) -> str:
    """Mean of each metric over the evaluation sets that define it (image metrics need
    authentic images, which Columbia/CASIA v1 lacks)."""
    reports = [json.loads((eval_dir / f"{name}.json").read_text()) for name in EVAL_SETS]
    rows = [HEADER]
    for method in reports[0]["methods"]:
        cells = []
        for metric in METRICS:
            values = [r["methods"][method][metric] for r in reports
                      if r["methods"][method].get(metric) is not None
                      and not math.isnan(r["methods"][method][metric])]
            cells.append(f"{sum(values) / len(values):.3f}")
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def set_table(eval_dir: Path, name: str) -> str:
    """The Markdown `tamperscan evaluate` printed, without its progress lines and its note
    on the operating point (the card states it once)."""
    text = (eval_dir / f"{name}.md").read_text().strip()
    return "\n".join(line for line in text.splitlines()
                     if not PROGRESS.match(line) and not line.startswith("(op.)")).strip()


def _replace_block(card: str, start: int, new: str) -> str:
    end = card.index("\n\n", card.index("| all_tampered", start))
    return card[:start] + new + card[end:]


def update_card(card: str, eval_dir: Path) -> str:
    for name in CARD_SETS:
        table = set_table(eval_dir, name)
        card = _replace_block(card, card.index(table.splitlines()[0]), table)
    anchor = card.index("**Averaged over the four sets**")
    return _replace_block(card, card.index("| method", anchor), averaged_table(eval_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=ROOT / "models" / "eval")
    parser.add_argument("--card", type=Path, default=ROOT / "models" / "MODEL_CARD.md")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    print(averaged_table(args.eval_dir))
    if not args.print_only:
        args.card.write_text(update_card(args.card.read_text(), args.eval_dir))


if __name__ == "__main__":
    main()
