"""Synthetic forgeries: determinism, formats, mask alignment, plausibility.

Most tests run on procedural in-memory photos (no shared data needed); the last group uses the
real training photos and skips cleanly when ../shared/data/train is absent.
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tamperscan.train.photos import (
    InMemoryPhoto,
    load_photo_manifest,
    load_rgb,
    load_segments,
    procedural_photos,
    split_photos,
)
from tamperscan.train.postprocess import PHOTOMETRIC, photometric
from tamperscan.train.regions import random_blob
from tamperscan.train.synth import ForgerySynthesizer
from tamperscan.train.synth_config import KINDS, SynthConfig

MAGIC = {"JPEG": b"\xff\xd8\xff", "PNG": b"\x89PNG", "TIFF": (b"II*\x00", b"MM\x00*")}

# Everything that moves pixels off the photo switched off: output == photo outside the mask.
EXACT = SynthConfig(
    size_range=(512, 512),
    p_host_recompress=0.0,
    format_weights={"PNG": 1.0},
    p_grid_shift=0.0,
    p_global_resize=0.0,
    feather_sigma_range=(0.0, 0.0),
    p_rotate=0.0,
    p_copy_move_rescale=0.0,
    p_inpaint_grain=0.0,
)


def _decode(data: bytes) -> tuple[np.ndarray, str]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB")), image.format


def _only(kind: str, config: SynthConfig = SynthConfig()) -> SynthConfig:
    return replace(config, kind_weights={kind: 1.0})


@pytest.fixture(scope="module")
def photos() -> list[InMemoryPhoto]:
    return procedural_photos(6, seed=7, height=192, width=256)


def _check_sample(sample, kind: str) -> np.ndarray:
    rgb, fmt = _decode(sample.image_bytes)
    assert fmt == sample.format
    assert sample.image_bytes.startswith(MAGIC[fmt]) or any(
        sample.image_bytes.startswith(m) for m in MAGIC[fmt]
    )
    assert sample.kind == kind
    assert sample.mask.dtype == bool
    assert sample.mask.shape == rgb.shape[:2]
    area = sample.mask.mean()
    if kind == "authentic":
        assert sample.label == 0
        assert area == 0.0
    else:
        assert sample.label == 1
        assert 0.005 <= area <= 0.5, f"{kind} mask covers {area:.4f}"
    return rgb


def test_deterministic_by_seed_and_index(photos):
    a = ForgerySynthesizer(photos, seed=3)
    b = ForgerySynthesizer(list(photos), seed=3)
    for index in (0, 1, 17):
        sa, sb = a.sample(index), b.sample(index)
        assert sa.image_bytes == sb.image_bytes
        assert np.array_equal(sa.mask, sb.mask)
        assert (sa.kind, sa.format) == (sb.kind, sb.format)
    assert a.sample(0).image_bytes != a.sample(1).image_bytes
    assert a.sample(0).image_bytes != ForgerySynthesizer(photos, seed=4).sample(0).image_bytes


def test_stream_matches_sample(photos):
    synth = ForgerySynthesizer(photos, seed=1)
    stream = synth.stream(start=5)
    for index in range(5, 8):
        assert next(stream).image_bytes == synth.sample(index).image_bytes


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_decodes_with_plausible_mask(photos, kind):
    synth = ForgerySynthesizer(photos, seed=11, config=_only(kind))
    for index in range(6):
        _check_sample(synth.sample(index), kind)


def test_mixture_follows_weights(photos):
    synth = ForgerySynthesizer(photos, seed=0, size_range=(96, 128))
    kinds = [synth.sample(i).kind for i in range(200)]
    counts = {k: kinds.count(k) for k in KINDS}
    # Defaults 35/20/10/35 %; binomial 200 draws: every kind present, forged share 50-80 %.
    assert all(counts[k] > 0 for k in KINDS), counts
    assert 100 <= 200 - counts["authentic"] <= 160, counts


@pytest.mark.parametrize(
    ("fmt", "magic"), [("JPEG", MAGIC["JPEG"]), ("PNG", MAGIC["PNG"]), ("TIFF", MAGIC["TIFF"])]
)
def test_final_format(photos, fmt, magic):
    config = replace(SynthConfig(), format_weights={fmt: 1.0})
    synth = ForgerySynthesizer(photos, seed=2, config=config)
    for index in range(4):
        sample = synth.sample(index)
        assert sample.format == fmt
        prefixes = magic if isinstance(magic, tuple) else (magic,)
        assert any(sample.image_bytes.startswith(p) for p in prefixes)
        _check_sample(sample, sample.kind)
        if fmt == "JPEG":
            assert 60 <= sample.info["q2"] <= 98


def test_double_jpeg_with_shifted_grid_keeps_mask_aligned(photos):
    config = replace(
        _only("splice"),
        p_host_recompress=1.0,
        format_weights={"JPEG": 1.0},
        p_grid_shift=1.0,
        p_global_resize=1.0,
    )
    synth = ForgerySynthesizer(photos, seed=5, config=config)
    for index in range(4):
        sample = synth.sample(index)
        _check_sample(sample, "splice")
        assert sample.info["q1"] is not None and sample.info["q2"] is not None
        assert sample.info["grid_shift"] != (0, 0)
        assert sample.info["resize"] is not None


@pytest.mark.parametrize("kind", ["copy_move", "removal", "authentic"])
def test_pixels_change_only_inside_mask(photos, kind):
    """With feathering, recompression and resizing off, the mask is exactly the changed set."""
    synth = ForgerySynthesizer(photos, seed=9, config=_only(kind, EXACT))
    by_name = {p.name: p.rgb for p in photos}
    for index in range(5):
        sample = synth.sample(index)
        rgb = _check_sample(sample, kind)
        original = by_name[sample.info["host"]]
        changed = np.any(rgb != original, axis=2)
        assert not changed[~sample.mask].any()
        if kind != "authentic":
            assert changed[sample.mask].mean() > 0.2


def _exact_copy_moves(photos, seed: int, **changes):
    """(sample, decoded rgb, host photo) of four EXACT copy-moves with ``changes``."""
    synth = ForgerySynthesizer(photos, seed=seed,
                               config=replace(_only("copy_move", EXACT), **changes))
    by_name = {p.name: p.rgb for p in photos}
    for index in range(4):
        sample = synth.sample(index)
        yield sample, _check_sample(sample, "copy_move"), by_name[sample.info["host"]]


def test_grid_shift_crops_image_and_mask_together(photos):
    for sample, rgb, host in _exact_copy_moves(photos, seed=4, p_grid_shift=1.0):
        dy, dx = sample.info["grid_shift"]
        assert 0 <= dy <= 7 and 0 <= dx <= 7 and (dy, dx) != (0, 0)
        original = host[dy:, dx:]
        assert rgb.shape == original.shape
        assert not np.any(rgb != original, axis=2)[~sample.mask].any()


def test_copy_move_reports_source_region(photos):
    """Default mask = source | target (CoMoFoD/NoSo convention); "target" marks the paste."""
    both = ForgerySynthesizer(photos, seed=6, config=_only("copy_move", EXACT))
    target_only = ForgerySynthesizer(
        photos, seed=6, config=replace(_only("copy_move", EXACT), copy_move_mask="target"))
    for index in range(4):
        sample, pasted = both.sample(index), target_only.sample(index)
        source = sample.info["source_mask"]
        assert source.shape == sample.mask.shape
        assert source.any() and not (source & pasted.mask).any()
        assert np.array_equal(sample.mask, source | pasted.mask)
        assert sample.image_bytes == pasted.image_bytes


@pytest.mark.parametrize("family", PHOTOMETRIC)
def test_each_photometric_family_changes_the_whole_image(photos, family):
    rgb = photos[0].rgb
    rng = np.random.default_rng(PHOTOMETRIC.index(family))
    for _ in range(50):  # the family is drawn: retry until this one comes up
        out, kind = photometric(rng, rgb, SynthConfig())
        if kind == family:
            break
    assert kind == family and out.shape == rgb.shape and out.dtype == np.uint8
    changed = np.any(out != rgb, axis=2)
    assert changed.mean() > 0.3, f"{family} changed {changed.mean():.2f} of the pixels"


def test_photometric_samples_keep_their_masks(photos):
    """Photometric changes move no pixel: same geometry and mask as without them. Off by
    default (the training streams of the shipped weights stay as they were)."""
    assert SynthConfig().p_photometric == 0.0
    assert ForgerySynthesizer(photos, seed=2).sample(0).info["photometric"] is None
    plain = list(_exact_copy_moves(photos, seed=6))
    changed = list(_exact_copy_moves(photos, seed=6, p_photometric=1.0))
    for (before, _, _), (sample, rgb, host) in zip(plain, changed, strict=True):
        assert sample.info["photometric"] in PHOTOMETRIC
        assert rgb.shape == host.shape
        assert np.array_equal(sample.mask, before.mask)


def test_copy_move_mask_option_is_checked():
    with pytest.raises(ValueError, match="copy_move_mask"):
        SynthConfig(copy_move_mask="source")


def _ela_mean(rgb: np.ndarray, mask: np.ndarray) -> float:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    resaved, _ = _decode(buffer.getvalue())
    return float(np.abs(rgb.astype(np.int16) - resaved).mean(axis=2)[mask].mean())


def test_splice_has_its_own_compression_history():
    """Noisy never-compressed host, donor region re-saved at q50: ELA tells them apart."""
    rng = np.random.default_rng(0)
    raw = [
        InMemoryPhoto("raw", f"raw/{i}", rng.integers(0, 256, (160, 200, 3), dtype=np.uint8))
        for i in range(4)
    ]
    config = replace(_only("splice", EXACT), p_source_recompress=1.0, source_quality_range=(50, 50))
    synth = ForgerySynthesizer(raw, seed=0, config=config)
    for index in range(3):
        sample = synth.sample(index)
        rgb = _check_sample(sample, "splice")
        assert _ela_mean(rgb, sample.mask) < 0.7 * _ela_mean(rgb, ~sample.mask)


def test_in_memory_photos_need_no_files(photos):
    assert load_rgb(photos[0]) is photos[0].rgb
    assert load_segments(photos[0]) is photos[0].segments
    assert photos[0].segments.shape == photos[0].rgb.shape[:2]
    assert len(np.unique(photos[0].segments)) >= 3
    with pytest.raises(ValueError):
        ForgerySynthesizer(photos[:1])


def test_random_blob_area():
    rng = np.random.default_rng(0)
    for area in (300.0, 5000.0, 40000.0):
        blob = random_blob(rng, area)
        assert 0.4 * area < blob.sum() < 2.0 * area
        assert blob[0].any() and blob[-1].any() and blob[:, 0].any() and blob[:, -1].any()


def test_split_photos_is_deterministic_disjoint_and_stratified(photos):
    more = photos + procedural_photos(4, seed=8, height=32, width=32)
    more = [*more, *(replace_source(p, "other") for p in procedural_photos(5, seed=9))]
    train, val = split_photos(more, val_fraction=0.3, seed=1)
    train2, val2 = split_photos(list(reversed(more)), val_fraction=0.3, seed=1)
    assert {p.name for p in val} == {p.name for p in val2}
    assert {p.name for p in train} == {p.name for p in train2}
    assert not {p.name for p in train} & {p.name for p in val}
    assert len(train) + len(val) == len(more)
    assert {p.source for p in val} == {"procedural", "other"}


def replace_source(photo: InMemoryPhoto, source: str) -> InMemoryPhoto:
    return InMemoryPhoto(source, f"{source}/{photo.name}", photo.rgb, photo.segments)


# -- real training photos (skipped without ../shared/data/train) ------------------------------
def _train_root() -> Path:
    env = os.environ.get("TAMPERSCAN_TRAIN_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/train"


@pytest.fixture(scope="module")
def real_photos():
    root = _train_root()
    if not (root / "MANIFEST.csv").is_file():
        pytest.skip(f"shared training photos not found at {root} (set TAMPERSCAN_TRAIN_DATA)")
    return load_photo_manifest(root)


def test_manifest_paths_and_crowd_labels(real_photos):
    assert len(real_photos) > 10
    assert all(p.image_path.is_file() for p in real_photos)
    assert all(p.segments_path is None or p.segments_path.is_file() for p in real_photos)
    crowded = [p for p in real_photos if p.excluded_labels]
    if not crowded:
        pytest.skip("no crowd-labelled photo in this copy of the data")
    photo = crowded[0]
    with Image.open(photo.segments_path) as image:
        raw = np.asarray(image)
    assert np.isin(raw, list(photo.excluded_labels)).any()
    segments = load_segments(photo)
    assert not np.isin(segments, list(photo.excluded_labels)).any()
    assert segments.shape == load_rgb(photo).shape[:2]


def test_exif_orientation_is_applied(real_photos):
    for photo in real_photos:
        with Image.open(photo.image_path) as image:
            orientation = image.getexif().get(0x0112, 1)
            stored = image.size
        if orientation in (5, 6, 7, 8) and stored[0] != stored[1]:
            assert load_rgb(photo).shape[:2] == stored  # (H, W) == stored (W, H): turned
            return
    pytest.skip("no rotated non-square photo in this copy of the data")


@pytest.mark.parametrize("kind", KINDS)
def test_real_photos_each_kind(real_photos, kind):
    synth = ForgerySynthesizer(real_photos, seed=21, size_range=(256, 384), config=_only(kind))
    for index in range(4):
        sample = synth.sample(index)
        rgb = _check_sample(sample, kind)
        assert max(rgb.shape[:2]) <= 384
    again = ForgerySynthesizer(real_photos, seed=21, size_range=(256, 384), config=_only(kind))
    assert again.sample(3).image_bytes == sample.image_bytes
    assert np.array_equal(again.sample(3).mask, sample.mask)
