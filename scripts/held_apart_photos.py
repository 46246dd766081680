"""Write a manifest (CSV, ``uri`` column) of the training photos held apart from training
(`split_photos` with the training runs' split seed): real authentic photos no shipped net was
trained on, for `tamperscan calibrate` (the shipped operating point) and validation.

    .venv/bin/python scripts/held_apart_photos.py --out /tmp/held_apart.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from tamperscan.train.photos import load_photo_manifest, split_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split-seed", type=int, default=0,
                        help="`tamperscan train --split-seed` of the shipped weights")
    args = parser.parse_args()
    _, held_apart = split_photos(load_photo_manifest(args.data), seed=args.split_seed)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uri", "source"])
        writer.writerows([str(p.image_path.resolve()), p.source] for p in held_apart)
    print(f"{len(held_apart)} held-apart photos -> {args.out}")


if __name__ == "__main__":
    main()
