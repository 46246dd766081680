"""The deterministic image sets the benchmarks scan: the bundled samples plus synthetic
forgeries (``mixed_image_set``), or a mostly authentic archive (``archive_image_set``), made
by tamperscan.train.synth from the shared training photos or procedural scenes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "images"
#: Authentic training photos (research-only; read in place, never copied into the repo).
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "train"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}


def photo_source(kind: str = "auto", procedural_count: int = 12, seed: int = 0):
    """(name, photos) for the synthesiser: the shared authentic training photos when ``kind``
    is "shared" (or "auto" and they are present), else procedural scenes (768 x 1024)."""
    from tamperscan.train.photos import load_photo_manifest, procedural_photos

    manifest = SHARED_TRAIN / "MANIFEST.csv"
    if kind == "shared" or (kind == "auto" and manifest.is_file()):
        if not manifest.is_file():
            raise SystemExit(f"--photos shared: {manifest} not found")
        return "shared training photos (../shared/data/train)", load_photo_manifest(SHARED_TRAIN)
    if kind not in ("auto", "procedural"):
        raise SystemExit(f"unknown photo source {kind!r}")
    count = max(2, procedural_count)
    return (f"{count} procedural photos 768x1024 (tamperscan.train.photos)",
            procedural_photos(count, seed=seed, height=768, width=1024))


@dataclass(frozen=True)
class ImageSet:
    folder: Path
    paths: list[Path]
    labels: list[int]  # 1 forged, 0 authentic
    kinds: list[str]
    description: str

    @property
    def uris(self) -> list[str]:
        return [str(p) for p in self.paths]


def _synth(photos, seed: int, kinds: dict[str, float]):
    from tamperscan.train.synth import ForgerySynthesizer, SynthConfig

    config = replace(SynthConfig(), size_range=(640, 1024), kind_weights=kinds)
    return ForgerySynthesizer(photos, seed=seed, config=config)


def _write(folder: Path, index: int, sample) -> Path:
    path = folder / f"{index:04d}_{sample.kind}.{EXTENSIONS[sample.format]}"
    path.write_bytes(sample.image_bytes)
    return path


def mixed_image_set(folder: Path, count: int, photos: str = "auto", seed: int = 0,
                    with_samples: bool = True) -> ImageSet:
    """``count`` images: the bundled samples/images first (up to ``count``), then synthetic
    forgeries and authentic images (tamperscan.train.synth, the training mixture of kinds and
    formats, longer side 640-1024 px). Deterministic in (count, photos, seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels, kinds = [], [], []
    bundled = sorted(SAMPLES.iterdir()) if with_samples and SAMPLES.is_dir() else []
    for path in bundled[:count]:
        target = folder / f"sample_{path.name}"
        target.write_bytes(path.read_bytes())
        kind = path.name.rsplit("_", 1)[0]
        paths.append(target)
        labels.append(0 if kind == "authentic" else 1)
        kinds.append(kind)
    extra = count - len(paths)
    name = "none"
    if extra > 0:
        name, source = photo_source(photos, procedural_count=min(12, extra + 1), seed=seed)
        from tamperscan.train.synth import SynthConfig

        synth = _synth(source, seed, dict(SynthConfig().kind_weights))
        for index in range(extra):
            sample = synth.sample(index)
            paths.append(_write(folder, index, sample))
            labels.append(sample.label)
            kinds.append(sample.kind)
    description = (f"{len(bundled[:count])} bundled samples/images + {max(extra, 0)} synthetic "
                   f"(photos: {name}; seed {seed})")
    return ImageSet(folder, paths, labels, kinds, description)


def archive_image_set(folder: Path, count: int, forged_fraction: float = 0.05,
                      photos: str = "auto", seed: int = 0) -> ImageSet:
    """An archive that is mostly authentic: round(count * forged_fraction) synthetic forgeries
    (splice / copy-move / removal) at seeded random positions, the rest authentic images made
    by the same synthesis chain without a manipulation. Deterministic in the arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    forged_count = round(count * forged_fraction)
    name, source = photo_source(photos, procedural_count=min(12, count + 1), seed=seed)
    forged = _synth(source, seed, {"splice": 0.5, "copy_move": 0.3, "removal": 0.2})
    authentic = _synth(source, seed + 1, {"authentic": 1.0})
    positions = set(np.random.default_rng(seed).permutation(count)[:forged_count].tolist())
    paths, labels, kinds = [], [], []
    next_forged = next_authentic = 0
    for index in range(count):
        if index in positions:
            sample, next_forged = forged.sample(next_forged), next_forged + 1
        else:
            sample, next_authentic = authentic.sample(next_authentic), next_authentic + 1
        paths.append(_write(folder, index, sample))
        labels.append(sample.label)
        kinds.append(sample.kind)
    description = (f"{count} synthetic images, {forged_count} forged / {count - forged_count} "
                   f"authentic (photos: {name}; seed {seed})")
    return ImageSet(folder, paths, labels, kinds, description)
