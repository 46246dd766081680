"""Write a synthetic validation set (held-apart training photos) in the evaluation layout, so
pipeline choices (e.g. how the final map combines the nets) are made without touching the
evaluation data:  .venv/bin/python scripts/make_val_set.py --out /tmp/tamperscan-val
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

from tamperscan.train.photos import load_photo_manifest, split_photos
from tamperscan.train.synth import ForgerySynthesizer, SynthConfig

EXTENSION = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples drawn")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the photo split of training (`tamperscan train --split-seed`): "
                             "its held-apart photos are the ones sampled")
    parser.add_argument("--first-index", type=int, default=0,
                        help="first sample index: disjoint index ranges are independent draws "
                             "from the same held-apart photos")
    parser.add_argument("--copy-move-mask", choices=("both", "target"), default="both",
                        help="copy-move ground truth: source + target (default) or the paste")
    parser.add_argument("--photometric", type=float, default=0.0, metavar="P",
                        help="probability of a CoMoFoD-style global change (SynthConfig)")
    parser.add_argument("--size-range", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="longer-side range of the samples (default: the synthesis default)")
    args = parser.parse_args()
    _, val = split_photos(load_photo_manifest(args.data), seed=args.split_seed)
    synth = ForgerySynthesizer(val, seed=args.seed + 20_000,  # not the training stream
                               size_range=args.size_range,
                               config=SynthConfig(copy_move_mask=args.copy_move_mask,
                                                  p_photometric=args.photometric))
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.first_index, args.first_index + args.count):
        sample = synth.sample(i)
        image = f"images/{i:04d}_{sample.kind}.{EXTENSION[sample.format]}"
        (args.out / image).write_bytes(sample.image_bytes)
        mask = ""
        if sample.label:
            mask = f"masks/{i:04d}.png"
            Image.fromarray(sample.mask.astype(np.uint8) * 255).save(args.out / mask)
        rows.append((image, mask, sample.label))
    with (args.out / "MANIFEST.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "mask", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} samples to {args.out}")


if __name__ == "__main__":
    main()
