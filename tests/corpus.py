"""A corpus of good, odd and hostile inputs, generated in memory from synthetic pixels.

Used by the decode tests, the bulk-scan tests and the endpoint tests: every item says whether
decoding must succeed (``expect="ok"``) or fail (``expect="error"``, with the ImageError
``code`` in ``error``). Names are distinct file names, some with spaces and non-ASCII letters,
because object keys and upload names look like that in real archives.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tamperscan.fixtures import natural_image

__all__ = ["CorpusItem", "make_corpus", "natural_image"]


@dataclass(frozen=True)
class CorpusItem:
    name: str
    data: bytes
    expect: str  # "ok" | "error"
    error: str | None = None  # ImageError.code when expect == "error"


def encode(image: Image.Image | np.ndarray, fmt: str, **params: object) -> bytes:
    """Pillow-encode to bytes (numpy arrays via Image.fromarray)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid-looking PNG whose IHDR claims width x height RGB but carries ~100 bytes of data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_sof_bomb(width: int = 30_000, height: int = 30_000, seed: int = 0) -> bytes:
    """A small real JPEG whose SOF marker is patched to claim width x height."""
    data = bytearray(encode(natural_image(16, 16, seed), "JPEG", quality=80))
    pos = 2
    while pos + 4 <= len(data):
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):  # SOF0/1/2: length, precision, height, width
            data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        pos += 2 + length
    raise AssertionError("no SOF marker found")


def exif_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _random_bytes(rng: np.random.Generator, size: int) -> bytes:
    data = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    data[0] = 0x01  # no image magic starts with 0x01, so the result is never a lucky header
    return bytes(data)


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not an image")
    return buffer.getvalue()


def _palette_with_transparency(rgb: np.ndarray) -> Image.Image:
    palette = Image.fromarray(rgb).quantize(colors=16)
    indices = np.array(palette)
    indices[: indices.shape[0] // 2] = 0  # top half transparent
    out = Image.fromarray(indices, mode="P")
    out.putpalette(palette.getpalette())
    out.info["transparency"] = 0
    return out


def _animated(rgb_frames: list[np.ndarray], fmt: str, **params: object) -> bytes:
    frames = [Image.fromarray(f) for f in rgb_frames]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params)


def make_corpus(seed: int = 0) -> list[CorpusItem]:
    """All corpus items; deterministic for a given seed, small (every image <= 96 px)."""
    rng = np.random.default_rng(seed)
    photo = natural_image(64, 96, seed)
    grey = photo.mean(axis=2).astype(np.uint8)
    good_jpeg = encode(photo, "JPEG", quality=85)
    good_png = encode(photo, "PNG")

    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, : photo.shape[1] // 2, 3] = 0  # left half fully transparent
    ramp16 = np.tile(np.linspace(0, 65535, 96), (64, 1)).astype(np.uint16)
    red, blue = np.zeros_like(photo), np.zeros_like(photo)
    red[..., 0], blue[..., 2] = 255, 255
    bilevel = Image.fromarray(grey > 128)

    ok = "ok"
    items = [
        CorpusItem("photo.jpg", good_jpeg, ok),
        CorpusItem("screenshot.png", good_png, ok),
        CorpusItem("späce ü.jpg", encode(photo, "JPEG", exif=exif_orientation(6)), ok),
        CorpusItem("grey scan.jpg", encode(grey, "JPEG", quality=90), ok),
        CorpusItem("cmyk print.jpg", encode(Image.fromarray(photo).convert("CMYK"), "JPEG"), ok),
        CorpusItem("progressive.jpg", encode(photo, "JPEG", progressive=True), ok),
        CorpusItem("broken exif.jpg", encode(photo, "JPEG", exif=b"Exif\x00\x00MM\x00*junk"), ok),
        CorpusItem("sixteen-bit.png", encode(Image.fromarray(ramp16), "PNG"), ok),
        CorpusItem("palette transparent.png", encode(_palette_with_transparency(photo), "PNG"), ok),
        CorpusItem("rgba.png", encode(rgba, "PNG"), ok),
        CorpusItem("la.png", encode(Image.fromarray(rgba).convert("LA"), "PNG"), ok),
        CorpusItem("bilevel.png", encode(bilevel, "PNG"), ok),
        CorpusItem("1x1.png", encode(photo[:1, :1], "PNG"), ok),
        CorpusItem("animated.gif", _animated([red, blue], "GIF", duration=100, loop=0), ok),
        CorpusItem("animated.png", _animated([red, blue], "PNG", duration=100), ok),
        CorpusItem("animated.webp", _animated([red, blue], "WEBP", lossless=True), ok),
        CorpusItem("scan.tiff", encode(photo, "TIFF", compression="tiff_deflate"), ok),
        CorpusItem("sixteen-bit.tif", encode(Image.fromarray(ramp16), "TIFF"), ok),
        CorpusItem("日本語 写真.webp", encode(photo, "WEBP", quality=80), ok),
        CorpusItem("old.bmp", encode(photo, "BMP"), ok),
        CorpusItem("stereo.mpo", _animated([photo, photo[::-1]], "MPO"), ok),
        # failures: truncated or broken data of a known format
        CorpusItem("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], "error", "corrupt"),
        CorpusItem("truncated.png", good_png[: len(good_png) // 2], "error", "corrupt"),
        CorpusItem("header only.jpg", good_jpeg[:3] + b"\x00" * 32, "error", "corrupt"),
        # failures: not an image, or a format outside the allowlist
        CorpusItem("empty.jpg", b"", "error", "unsupported"),
        CorpusItem("random.jpg", _random_bytes(rng, 4096), "error", "unsupported"),
        CorpusItem(
            "notes.jpg", b"meeting notes\nnothing to see here\n" * 20, "error", "unsupported"
        ),
        CorpusItem(
            "index.png",
            b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>",
            "error",
            "unsupported",
        ),
        CorpusItem(
            "report.jpg",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            "error",
            "unsupported",
        ),
        CorpusItem("archive.jpg", _zip_bytes(), "error", "unsupported"),
        CorpusItem("icon.ico", encode(photo[:32, :32], "ICO"), "error", "unsupported"),
        # failures: decompression bombs and oversized headers (never allocated)
        CorpusItem("bomb 30000x30000.png", png_header_bomb(), "error", "too_large"),
        CorpusItem("bomb sof.jpg", jpeg_sof_bomb(seed=seed), "error", "too_large"),
        CorpusItem("long side.png", png_header_bomb(40_000, 10), "error", "too_large"),
    ]
    names = [item.name for item in items]
    assert len(set(names)) == len(names), "corpus names must be distinct"
    return items
