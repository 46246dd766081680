"""Copy a size-capped subset of the *training* photos (never the held-apart validation photos)
into a git-ignored folder that fits beside the repository on a lent GPU machine (everything
that travels there is capped at 64 MiB, the repository itself is about 31 MiB). Files are
copied byte for byte, so JPEG histories stay intact; each source keeps its share.

    .venv/bin/python scripts/pack_train_subset.py --out train_subset --max-mib 26
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import defaultdict
from pathlib import Path

from tamperscan.train.photos import Photo, load_photo_manifest, split_photos

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/train"


def photo_bytes(photo: Photo) -> int:
    return photo.image_path.stat().st_size + (
        photo.segments_path.stat().st_size if photo.segments_path else 0)


def choose(photos: list[Photo], budget: int) -> list[Photo]:
    """Round-robin over sources, each in its own order, skipping what no longer fits: every
    source keeps roughly its share of the photos."""
    by_source: dict[str, list[Photo]] = defaultdict(list)
    for photo in photos:
        by_source[photo.source].append(photo)
    total = len(photos)
    quota = {s: len(p) / total for s, p in by_source.items()}
    taken: dict[str, int] = defaultdict(int)
    chosen, used = [], 0
    while True:
        open_sources = [s for s in by_source if taken[s] < len(by_source[s])]
        if not open_sources:
            return chosen
        # the source furthest below its share goes next
        source = min(open_sources, key=lambda s: taken[s] / max(len(chosen), 1) - quota[s])
        photo = by_source[source][taken[source]]
        taken[source] += 1
        size = photo_bytes(photo)
        if used + size <= budget:
            chosen.append(photo)
            used += size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("train_subset"))
    parser.add_argument("--max-mib", type=float, default=26.0)
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the photo split of training (`tamperscan train --split-seed`)")
    args = parser.parse_args()
    train, _ = split_photos(load_photo_manifest(args.data), seed=args.split_seed)
    chosen = choose(train, int(args.max_mib * 2**20))
    if args.out.exists():
        shutil.rmtree(args.out)
    rows = []
    for photo in chosen:
        image = photo.image_path.relative_to(args.data)
        (args.out / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo.image_path, args.out / image)
        segments = ""
        if photo.segments_path:
            segments = str(photo.segments_path.relative_to(args.data))
            (args.out / segments).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo.segments_path, args.out / segments)
        rows.append((photo.source, str(image), segments))
    for source in {photo.source for photo in chosen}:  # crowd flags of COCO instances
        instances = args.data / source / "instances.csv"
        if instances.exists():
            shutil.copyfile(instances, args.out / source / "instances.csv")
    with (args.out / "MANIFEST.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "image", "segments"])
        writer.writerows(rows)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    counts = defaultdict(int)
    for photo in chosen:
        counts[photo.source] += 1
    print(f"{len(chosen)} of {len(train)} training photos, {size / 2**20:.1f} MiB in "
          f"{args.out}: {dict(counts)}")


if __name__ == "__main__":
    main()
