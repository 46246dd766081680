"""Authentic photos that forgeries are synthesised from.

Two sources behind one interface: `Photo` (a file listed in the shared training MANIFEST.csv,
read lazily) and `InMemoryPhoto` (arrays, e.g. the procedural scenes below, so the synthesis
logic is testable without the shared data). `load_rgb` / `load_segments` accept either.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

_EXIF_ORIENTATION = 0x0112
# Same table as PIL.ImageOps.exif_transpose; kept here so the segment map can be turned with
# the photo it labels.
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class Photo:
    """One training photo on disk. `excluded_labels` are segment labels never to use as objects
    (COCO crowd regions: a blob of many people is not a plausible splice object)."""

    source: str
    image_path: Path
    segments_path: Path | None = None
    excluded_labels: frozenset[int] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.source}/{self.image_path.name}"


@dataclass(frozen=True, eq=False)
class InMemoryPhoto:
    """A photo held as arrays: `rgb` HxWx3 uint8, `segments` HxW integer labels (0 = none)."""

    source: str
    name: str
    rgb: np.ndarray
    segments: np.ndarray | None = None


PhotoLike = Photo | InMemoryPhoto


def load_photo_manifest(
    root: Path, manifest: str = "MANIFEST.csv", sources: Iterable[str] | None = None
) -> list[Photo]:
    """Read `root/manifest` (columns source,image,segments; paths relative to `root`).

    `sources` keeps only those sources (e.g. leave out "bsds500" when evaluating on CASIA: both
    come from Corel photos). Crowd labels come from `<source>/instances.csv` when present.
    """
    root = Path(root)
    wanted = set(sources) if sources is not None else None
    photos = []
    crowd_cache: dict[str, dict[str, frozenset[int]]] = {}
    with open(root / manifest, newline="") as f:
        for row in csv.DictReader(f):
            source = row["source"]
            if wanted is not None and source not in wanted:
                continue
            if source not in crowd_cache:
                crowd_cache[source] = _read_crowd_labels(root / source / "instances.csv")
            image_path = root / row["image"]
            segments = (row.get("segments") or "").strip()
            photos.append(
                Photo(
                    source=source,
                    image_path=image_path,
                    segments_path=root / segments if segments else None,
                    excluded_labels=crowd_cache[source].get(image_path.name, frozenset()),
                )
            )
    return photos


def _read_crowd_labels(path: Path) -> dict[str, frozenset[int]]:
    """image file name -> labels flagged iscrowd=1 (see coco/README.txt)."""
    if not path.is_file():
        return {}
    crowd: dict[str, set[int]] = defaultdict(set)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("iscrowd", "0").strip() == "1":
                crowd[row["image"]].add(int(row["label"]))
    return {image: frozenset(labels) for image, labels in crowd.items()}


#: Share of each source's photos held apart for validation. One value for training, the
#: validation sets (scripts/make_val_set.py) and the GPU kit's subset (pack_train_subset.py):
#: were they to differ, validation photos would leak into training data.
VAL_FRACTION = 0.1


def split_photos(
    photos: Sequence[PhotoLike], val_fraction: float = VAL_FRACTION, seed: int = 0
) -> tuple[list[PhotoLike], list[PhotoLike]]:
    """Hold whole photos apart for validation, stratified by source.

    Deterministic for a given (set of photos, seed) whatever the input order: each source is
    sorted by name before shuffling. Every source with >= 2 photos gives at least one to
    validation when `val_fraction` > 0. Returned lists keep the input order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_source: dict[str, list[PhotoLike]] = defaultdict(list)
    for photo in photos:
        by_source[photo.source].append(photo)
    rng = np.random.default_rng(seed)
    val_names: set[tuple[str, str]] = set()
    for source in sorted(by_source):
        group = sorted(by_source[source], key=lambda p: p.name)
        n_val = round(len(group) * val_fraction)
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        for i in rng.permutation(len(group))[:n_val]:
            val_names.add((source, group[i].name))
    train = [p for p in photos if (p.source, p.name) not in val_names]
    val = [p for p in photos if (p.source, p.name) in val_names]
    return train, val


def _orientation(image: Image.Image) -> int:
    return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)


def load_rgb(photo: PhotoLike) -> np.ndarray:
    """HxWx3 uint8 RGB, upright (EXIF orientation applied, as an editor would show it)."""
    if isinstance(photo, InMemoryPhoto):
        return photo.rgb
    with Image.open(photo.image_path) as image:
        transpose = _ORIENTATION_TRANSPOSE.get(_orientation(image))
        rgb = image.convert("RGB")
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    return np.asarray(rgb)


def load_segments(photo: PhotoLike) -> np.ndarray | None:
    """HxW uint16 label map aligned with `load_rgb(photo)`, excluded labels set to 0; or None."""
    if isinstance(photo, InMemoryPhoto):
        return photo.segments
    if photo.segments_path is None:
        return None
    with Image.open(photo.image_path) as image:
        transpose = _ORIENTATION_TRANSPOSE.get(_orientation(image))
    with Image.open(photo.segments_path) as seg_image:
        if transpose is not None:
            seg_image = seg_image.transpose(transpose)
        segments = np.asarray(seg_image).astype(np.uint16)
    if photo.excluded_labels:
        segments = segments.copy()
        segments[np.isin(segments, list(photo.excluded_labels))] = 0
    return segments


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled bicubically (~unit variance, float32)."""
    grid = rng.standard_normal((height // cell + 3, width // cell + 3)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-octave noise so regions look like surfaces rather than flat paint."""
    octaves = [(64, 1.0), (16, 0.5), (4, 0.25)]
    return sum(w * _smooth_noise(rng, height, width, c) for c, w in octaves)


def procedural_photo(seed: int, height: int = 384, width: int = 512) -> InMemoryPhoto:
    """A synthetic 'photo' with a label map: sky/ground split, textured shapes, optical blur,
    sensor noise and a camera-like JPEG save. Used where real photos may not go (tests without
    the shared data, redistributable samples)."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky_top, sky_bottom = rng.uniform(0.3, 1.0, 3), rng.uniform(0.5, 1.0, 3)
    image = (sky_top * (1 - yy) + sky_bottom * yy).astype(np.float32) * np.ones((1, w, 1))
    horizon = h * rng.uniform(0.35, 0.65) + 0.06 * h * _smooth_noise(rng, 1, w, 32)[0]
    ground = np.arange(h, dtype=np.float32)[:, None] >= horizon[None, :]
    labels = np.where(ground, 2, 1).astype(np.uint16)
    ground_colour = rng.uniform(0.1, 0.7, 3) * (0.8 + 0.4 * yy)
    image = np.where(ground[..., None], ground_colour, image).astype(np.float32)
    image += 0.05 * _texture(rng, h, w)[..., None] * (ground[..., None] + 0.3)

    for label in range(3, 3 + int(rng.integers(4, 10))):
        canvas = np.zeros((h, w), np.uint8)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.25, 0.95) * h
        size = rng.uniform(0.04, 0.2) * min(h, w)
        shape = rng.integers(3)
        if shape == 0:
            axes = (int(size), int(size * rng.uniform(0.4, 1.0)))
            cv2.ellipse(canvas, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        elif shape == 1:
            rect = ((cx, cy), (2 * size, 2 * size * rng.uniform(0.3, 1.2)), rng.uniform(0, 90))
            cv2.fillPoly(canvas, [cv2.boxPoints(rect).astype(np.int32)], 1)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = size * rng.uniform(0.6, 1.4, angles.size)
            points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
            cv2.fillPoly(canvas, [points.astype(np.int32)], 1)
        inside = canvas.astype(bool)
        colour = rng.uniform(0.0, 1.0, 3)
        shading = 1.0 + 0.25 * (
            np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
        )
        fill = colour * shading[..., None] + 0.08 * _texture(rng, h, w)[..., None]
        image[inside] = fill[inside]
        labels[inside] = label

    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.0))
    image += rng.uniform(0.004, 0.012) * rng.standard_normal(image.shape).astype(np.float32)
    rgb = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=int(rng.integers(85, 98)))
    rgb = np.asarray(Image.open(BytesIO(buffer.getvalue())).convert("RGB"))
    return InMemoryPhoto(source="procedural", name=f"procedural/{seed}", rgb=rgb, segments=labels)


def procedural_photos(
    count: int, seed: int = 0, height: int = 384, width: int = 512
) -> list[InMemoryPhoto]:
    """`count` distinct procedural photos, deterministic in `seed`."""
    return [procedural_photo(seed * 100_003 + i, height, width) for i in range(count)]
