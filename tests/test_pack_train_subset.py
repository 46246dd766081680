"""The GPU training kit's photo subset: within its byte budget, training photos only, each
source at about its share, files byte for byte."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from tamperscan.train.photos import Photo, load_photo_manifest

spec = importlib.util.spec_from_file_location(
    "pack_train_subset", Path(__file__).resolve().parents[1] / "scripts/pack_train_subset.py")
pack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack)


def _photos(root: Path, source: str, count: int, side: int) -> list[Photo]:
    rng = np.random.default_rng(len(source))
    photos = []
    for i in range(count):
        path = root / source / "images" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (side, side, 3), np.uint8)).save(path, quality=90)
        photos.append(Photo(source, path))
    return photos


def test_choose_keeps_budget_and_shares(tmp_path):
    photos = _photos(tmp_path, "small", 60, 48) + _photos(tmp_path, "large", 20, 96)
    budget = sum(pack.photo_bytes(p) for p in photos) // 3
    chosen = pack.choose(photos, budget)
    assert sum(pack.photo_bytes(p) for p in chosen) <= budget
    assert len({p.image_path for p in chosen}) == len(chosen)
    small = sum(p.source == "small" for p in chosen) / len(chosen)
    assert 0.6 <= small <= 0.9  # 75 % of the photos are "small"


def test_written_subset_reads_back_as_a_manifest(tmp_path, monkeypatch):
    data = tmp_path / "data"
    photos = _photos(data, "bsds", 30, 40)
    with (data / "MANIFEST.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "image", "segments"])
        writer.writerows([(p.source, str(p.image_path.relative_to(data)), "") for p in photos])
    out = tmp_path / "subset"
    monkeypatch.setattr("sys.argv", ["pack", "--data", str(data), "--out", str(out),
                                     "--max-mib", "0.5"])
    pack.main()
    subset = load_photo_manifest(out)
    assert subset and all(p.image_path.read_bytes() == (data / p.image_path.relative_to(out)
                                                        ).read_bytes() for p in subset)
    _, val = pack.split_photos(load_photo_manifest(data), val_fraction=0.1, seed=0)
    held_apart = {p.image_path.name for p in val}
    assert not held_apart & {p.image_path.name for p in subset}
