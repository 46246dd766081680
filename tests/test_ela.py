"""Error level analysis: pinned codec, scale, sign, tamper sensitivity, resizing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.ela import (
    ELA_SCALE,
    ela_absolute,
    ela_both,
    ela_signed,
    jpeg_roundtrip,
    resize_to,
)
from tests.corpus import encode, natural_image


def reference_roundtrip(rgb: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    return decode_image(encode(rgb, "JPEG", quality=quality)).rgb


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return natural_image(96, 128, seed=3)


def test_roundtrip_uses_the_documented_codec_settings(photo):
    out = jpeg_roundtrip(photo)
    assert out.dtype == np.uint8 and out.shape == photo.shape
    np.testing.assert_array_equal(out, reference_roundtrip(photo, 90, "4:2:0"))
    assert not np.array_equal(out, reference_roundtrip(photo, 90, "4:4:4"))
    low = reference_roundtrip(photo, 50, "4:2:0")
    np.testing.assert_array_equal(jpeg_roundtrip(photo, 50), low)


def test_lower_quality_gives_larger_error_levels(photo):
    assert ela_absolute(photo, quality=60).mean() > 1.5 * ela_absolute(photo, quality=95).mean()


def test_signed_and_absolute_share_one_scale(photo):
    signed = ela_signed(photo)
    absolute = ela_absolute(photo)
    assert signed.dtype == absolute.dtype == np.float32
    assert signed.shape == absolute.shape == photo.shape
    assert signed.min() < 0 < signed.max()
    assert signed.min() >= -1 and signed.max() <= 1
    assert absolute.min() >= 0 and absolute.max() <= 1
    np.testing.assert_array_equal(np.abs(signed), absolute)
    raw = photo.astype(np.int16) - jpeg_roundtrip(photo).astype(np.int16)
    np.testing.assert_allclose(signed, np.clip(raw * ELA_SCALE, -1, 1), rtol=1e-6)
    both_abs, both_signed = ela_both(photo)
    np.testing.assert_array_equal(both_abs, absolute)
    np.testing.assert_array_equal(both_signed, signed)


def test_scale_uses_the_unit_range_without_saturating(photo):
    absolute = ela_absolute(jpeg(photo, 85))  # a typical archive JPEG
    assert 0.01 < absolute.mean() < 0.3
    assert (absolute >= 1.0).mean() < 0.01


def test_flat_image_has_no_error_level():
    assert ela_absolute(np.full((32, 32, 3), 128, np.uint8)).max() == 0


def test_rejects_non_rgb_input(photo):
    with pytest.raises(ValueError, match="uint8 RGB"):
        ela_absolute(photo.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        ela_signed(photo[..., 0])


@pytest.mark.parametrize("export", ["png", "jpeg95"])
def test_pasted_region_with_another_compression_history_stands_out(export):
    """Camera JPEG at q=70; a forger pastes uncompressed content into the centre and exports the
    composite losslessly or at q=95. The pasted pixels never went through q=70, so their error
    level at q=90 is higher. (Re-saving at q<=90 would hide this: ELA cannot see it then.)"""
    source = natural_image(192, 192, seed=11)
    composite = jpeg(source, 70)
    region = np.s_[64:128, 72:136]  # not aligned to the 8x8 grid horizontally
    composite[region] = source[region]
    if export == "jpeg95":
        composite = jpeg(composite, 95)
    ela = ela_absolute(composite).mean(axis=2)
    inside = np.zeros(ela.shape, bool)
    inside[region] = True
    assert ela[inside].mean() > 1.5 * ela[~inside].mean()


def test_resize_keeps_dtype_and_channels(photo):
    assert resize_to(photo, 64).shape == (64, 64, 3) and resize_to(photo, 64).dtype == np.uint8
    ela = ela_signed(photo)
    grown = resize_to(ela, 160)
    assert grown.shape == (160, 160, 3) and grown.dtype == np.float32
    assert resize_to(photo[..., 0], 40).shape == (40, 40)
    assert resize_to(photo[..., :1], 40).shape == (40, 40, 1)


def test_shrinking_averages_instead_of_aliasing():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = resize_to(checker, 13)  # non-integer factor: linear sampling would alias (±108)
    assert np.abs(small.astype(np.float32) - 127.5).max() <= 8


def test_growing_interpolates_linearly():
    tiny = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    grown = resize_to(tiny, 8)
    assert grown.dtype == np.float32
    row = grown[0]
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 2  # ramps, not nearest-neighbour
