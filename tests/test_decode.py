"""Safe decoding: every corpus item, normalisation rules, and limits checked before allocation."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tamperscan.preprocess.decode import (
    ALLOWED_FORMATS,
    CorruptImage,
    DecodedImage,
    DecodeLimits,
    ImageError,
    ImageTooLarge,
    UnsupportedImage,
    decode_image,
)
from tests.corpus import (
    encode,
    exif_orientation,
    jpeg_sof_bomb,
    make_corpus,
    natural_image,
    png_header_bomb,
)

CORPUS = make_corpus()
BY_NAME = {item.name: item for item in CORPUS}
ERROR_CLASSES = {
    "unsupported": UnsupportedImage,
    "too_large": ImageTooLarge,
    "corrupt": CorruptImage,
}
REPO_ROOT = Path(__file__).resolve().parents[1]
PILLOW_BOMB_LIMIT = Image.MAX_IMAGE_PIXELS


def decode_named(name: str) -> DecodedImage:
    return decode_image(BY_NAME[name].data)


def test_corpus_covers_the_required_kinds():
    assert len(CORPUS) >= 20
    assert {item.expect for item in CORPUS} == {"ok", "error"}
    assert {item.error for item in CORPUS if item.expect == "error"} == set(ERROR_CLASSES)
    assert any(not item.name.isascii() and " " in item.name for item in CORPUS)


@pytest.mark.parametrize("item", CORPUS, ids=[item.name for item in CORPUS])
def test_corpus_item(item):
    if item.expect == "ok":
        decoded = decode_image(item.data)
        assert decoded.rgb.dtype == np.uint8
        assert decoded.rgb.shape == (decoded.height, decoded.width, 3)
        assert decoded.rgb.flags.c_contiguous and decoded.rgb.flags.writeable
        assert decoded.format in ALLOWED_FORMATS
    else:
        with pytest.raises(ImageError) as caught:
            decode_image(item.data)
        assert type(caught.value) is ERROR_CLASSES[item.error]
        assert caught.value.code == item.error
        assert isinstance(caught.value, ValueError)
        assert len(str(caught.value)) > 10


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("photo.jpg", "JPEG"),
        ("screenshot.png", "PNG"),
        ("scan.tiff", "TIFF"),
        ("日本語 写真.webp", "WEBP"),
        ("animated.gif", "GIF"),
        ("old.bmp", "BMP"),
        ("stereo.mpo", "MPO"),
    ],
)
def test_format_is_pillows_format_id(name, fmt):
    assert decode_named(name).format == fmt


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("empty.jpg", "empty file"),
        ("notes.jpg", "plain text"),
        ("index.png", "HTML"),
        ("report.jpg", "PDF"),
        ("archive.jpg", "ZIP"),
        ("icon.ico", "ICO"),
        ("random.jpg", "unrecognised"),
        ("truncated.jpg", "truncated"),
    ],
)
def test_error_messages_say_what_the_file_is(name, words):
    with pytest.raises(ImageError, match=words):
        decode_named(name)


def test_lossless_pixels_are_exact():
    photo = natural_image(64, 96, 0)
    for name in ("screenshot.png", "scan.tiff", "old.bmp"):
        np.testing.assert_array_equal(decode_named(name).rgb, photo)


@pytest.mark.parametrize(
    ("orientation", "upright"),
    [
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # stored image must turn 90° clockwise to display
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def testexif_orientation_is_applied(orientation, upright):
    photo = natural_image(48, 80, 1)
    plain = decode_image(encode(photo, "JPEG")).rgb
    decoded = decode_image(encode(photo, "JPEG", exif=exif_orientation(orientation)))
    np.testing.assert_array_equal(decoded.rgb, upright(plain))
    assert decoded.rgb.shape == (decoded.height, decoded.width, 3)
    if orientation in (6, 8):
        assert (decoded.width, decoded.height) == (48, 80)


def test_corpus_exif_item_swaps_width_and_height():
    decoded = decode_named("späce ü.jpg")
    assert (decoded.width, decoded.height) == (64, 96)


def test_broken_exif_falls_back_to_stored_orientation():
    assert decode_named("broken exif.jpg").rgb.shape == (64, 96, 3)


@pytest.mark.parametrize("name", ["sixteen-bit.png", "sixteen-bit.tif"])
def test_sixteen_bit_is_scaled_not_clipped(name):
    decoded = decode_named(name).rgb
    ramp = np.linspace(0, 65535, 96)
    expected = np.rint(ramp * 255 / 65535).astype(np.uint8)
    assert (decoded[..., 0] == decoded[..., 2]).all()
    np.testing.assert_array_equal(decoded[0, :, 0], expected)
    assert len(np.unique(decoded)) >= 90  # clipping to 255 would leave a handful of levels


def test_int32_and_float_greyscale_use_the_full_range():
    ramp16 = np.tile(np.linspace(0, 65535, 64), (8, 1))
    as_int32 = decode_image(encode(Image.fromarray(ramp16.astype(np.int32)), "TIFF")).rgb
    np.testing.assert_array_equal(as_int32[0, :, 0], np.rint(ramp16[0] * 255 / 65535))

    unit = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (8, 1))
    as_unit = decode_image(encode(Image.fromarray(unit), "TIFF")).rgb
    np.testing.assert_array_equal(as_unit[0, :, 0], np.rint(unit[0] * 255))

    signed = unit * 10 - 5  # arbitrary range: min-max stretched
    as_signed = decode_image(encode(Image.fromarray(signed), "TIFF")).rgb
    assert as_signed.min() == 0 and as_signed.max() == 255


def test_alpha_is_composited_over_white():
    photo = natural_image(64, 96, 0)
    rgba = decode_named("rgba.png").rgb
    assert (rgba[:, :48] == 255).all()
    np.testing.assert_array_equal(rgba[:, 48:], photo[:, 48:])
    assert (decode_named("la.png").rgb[:, :48] == 255).all()


def test_palette_transparency_is_composited_over_white():
    decoded = decode_named("palette transparent.png").rgb
    assert (decoded[:32] == 255).all()
    assert decoded[32:].mean() < 200  # opaque half keeps the photo's colours


@pytest.mark.parametrize("name", ["animated.gif", "animated.png", "animated.webp"])
def test_animation_yields_first_frame(name):
    decoded = decode_named(name).rgb
    assert (decoded[..., 0] == 255).all() and (decoded[..., 1:] == 0).all()  # red, not blue


def test_cmyk_greyscale_and_bilevel_become_rgb():
    photo = natural_image(64, 96, 0).astype(np.int16)
    cmyk = decode_named("cmyk print.jpg").rgb
    assert np.abs(cmyk.astype(np.int16) - photo).mean() < 8
    grey = decode_named("grey scan.jpg").rgb
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert set(np.unique(decode_named("bilevel.png").rgb)) == {0, 255}


def test_byte_limit_is_checked_first():
    with pytest.raises(ImageTooLarge, match="MiB"):
        decode_image(b"\x00" * 2048, DecodeLimits(max_bytes=1024))


def test_side_limit_is_inclusive():
    data = BY_NAME["photo.jpg"].data
    assert decode_image(data, DecodeLimits(max_side=96)).width == 96
    with pytest.raises(ImageTooLarge, match="longest side 96"):
        decode_image(data, DecodeLimits(max_side=95))


def test_own_pixel_limit_message(monkeypatch):
    # Without Pillow's guard our own header check must still catch the bomb, with a clear message.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(png_header_bomb())
    assert str(caught.value) == "image is 30000x30000 = 900.0 MP, limit 80.0 MP"


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (png_header_bomb(), DecodeLimits()),
        (jpeg_sof_bomb(), DecodeLimits()),
        (png_header_bomb(40_000, 10), DecodeLimits()),
        (encode(natural_image(64, 96), "PNG"), DecodeLimits(max_pixels=6143)),
    ],
    ids=["png-ihdr", "jpeg-sof", "long-side", "own-limit"],
)
def test_limits_are_checked_before_pixels_are_loaded(monkeypatch, data, limits):
    def forbidden_load(self):
        raise AssertionError("pixels loaded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden_load)
    with pytest.raises(ImageTooLarge):
        decode_image(data, limits)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS semantics")
def test_bombs_are_rejected_within_a_small_address_space():
    """A 30000x30000 RGB buffer is 2.7 GB; under a 1 GiB cap any allocation would fail loudly."""
    script = textwrap.dedent(
        """
        import resource
        cap = 1024 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        from PIL import Image
        from tamperscan.preprocess.decode import ImageTooLarge, decode_image
        from tests.corpus import jpeg_sof_bomb, png_header_bomb
        try:
            Image.new("RGB", (20_000, 20_000))
            print("CONTROL-ALLOCATED")
        except MemoryError:
            print("CONTROL-MEMORYERROR")
        for data in (png_header_bomb(), jpeg_sof_bomb()):
            try:
                decode_image(data)
            except ImageTooLarge:
                print("REJECTED")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["CONTROL-MEMORYERROR", "REJECTED", "REJECTED"]


def test_no_global_pillow_or_warning_state_is_changed():
    filters_before = list(warnings.filters)
    for item in CORPUS:
        with contextlib.suppress(ImageError):
            decode_image(item.data)
    assert warnings.filters == filters_before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == PILLOW_BOMB_LIMIT
