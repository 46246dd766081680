"""Safe decoding of untrusted image bytes into upright 8-bit RGB.

Archive scans meet every kind of file: bombs, truncations, PDFs renamed to .jpg, 16-bit scans,
CMYK prints. Each failure becomes an :class:`ImageError` with a stable ``code`` so a bulk scan
records a status per row instead of crashing, and the endpoint maps codes to HTTP errors.

Order of defences: byte limit, then the header is parsed lazily (``Image.open`` allocates no
pixels) and the size limits are checked, and only then are pixels decoded.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

#: Pillow format ids we parse. Everything else (EPS needs Ghostscript, PSD, ICO, AVIF, ...) is
#: refused before its plugin ever sees the bytes: less parser attack surface, and ELA only makes
#: sense for formats a photo archive actually holds.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "GIF", "BMP")
# Pillow has no MPO opener of its own: the JPEG opener returns MPO files (multi-picture JPEG).
_PILLOW_OPENERS = tuple(fmt for fmt in ALLOWED_FORMATS if fmt != "MPO")

_MIB = 2**20


class ImageError(ValueError):
    """Base of all decode failures; ``code`` is stable and machine-readable."""

    code: str = "error"


class UnsupportedImage(ImageError):
    """Not an image, or an image format/pixel mode outside the allowlist."""

    code = "unsupported"


class ImageTooLarge(ImageError):
    """Over the byte, pixel or side limit (checked before pixels are allocated)."""

    code = "too_large"


class CorruptImage(ImageError):
    """A recognised format whose header or pixel data is broken or truncated."""

    code = "corrupt"


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 64 * _MIB
    max_pixels: int = 80_000_000
    max_side: int = 30_000  # any side strictly greater is rejected


@dataclass(frozen=True)
class DecodedImage:
    """Upright RGB pixels; ``width``/``height`` are after the EXIF orientation was applied."""

    rgb: np.ndarray  # (height, width, 3) uint8, C-contiguous, writeable
    format: str  # Pillow's format id of the source, e.g. "JPEG"
    width: int
    height: int


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode ``data`` to upright 8-bit RGB, or raise a subclass of :class:`ImageError`.

    Normalisation (why: every model stage wants one 8-bit RGB layout):
    - EXIF orientation is applied, so the output is the image as a viewer shows it;
    - alpha (RGBA, LA, PA, palette/RGB/L transparency) is composited over white, which is
      what a viewer shows on a white page and is deterministic;
    - CMYK and other colour modes go through Pillow's ``convert("RGB")``;
    - 16-bit and 32-bit greyscale are rescaled to the full 8-bit range, not clipped;
    - animated GIF/WebP/APNG and multi-page TIFF/MPO yield their first frame.
    """
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"file is {len(data) / _MIB:.1f} MiB, limit {limits.max_bytes / _MIB:.1f} MiB"
        )
    if len(data) == 0:
        raise UnsupportedImage("empty file (0 bytes)")

    im = _open_lazily(data, limits)
    with im:
        _check_size(im.size, limits)
        fmt = str(im.format)
        try:
            im.load()
        except MemoryError:
            raise
        except Exception as exc:  # Pillow plugins raise assorted types on malformed data
            raise CorruptImage(f"{fmt} pixel data is corrupt or truncated: {exc}") from exc
        _apply_exif_orientation(im)
        rgb = _to_rgb8(im)
    height, width = rgb.shape[:2]
    return DecodedImage(rgb=rgb, format=fmt, width=width, height=height)


def _open_lazily(data: bytes, limits: DecodeLimits) -> Image.Image:
    """Parse the header only; Pillow's bomb guard (a warning by default) is made an error here.

    Caveat: catch_warnings swaps the process-wide filter list (not thread-local before
    Python 3.14). Decoding threads racing here could leave this one filter (bomb warning ->
    error) installed or drop a filter another thread added meanwhile; Ray runs decoding in
    separate worker processes, and our own size check does not depend on the filter.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS)
    except Image.UnidentifiedImageError:
        raise _unidentified(data) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(_bomb_message(exc, limits)) from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise CorruptImage(f"image header is corrupt: {exc}") from exc


def _check_size(size: tuple[int, int], limits: DecodeLimits) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImage(f"image header claims an empty size {width}x{height}")
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"image is {width}x{height}, longest side {max(width, height)} "
            f"exceeds limit {limits.max_side}"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height / 1e6:.1f} MP, "
            f"limit {limits.max_pixels / 1e6:.1f} MP"
        )


def _bomb_message(exc: Exception, limits: DecodeLimits) -> str:
    """Pillow's guard fires inside Image.open, before we see the size; report its pixel count."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match is None:
        return f"image exceeds the decompression-bomb guard: {exc}"
    limit = min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)
    return f"image is {int(match.group(1)) / 1e6:.1f} MP, limit {limit / 1e6:.1f} MP"


# Magic numbers of the allowed formats: such bytes are a broken image, not a foreign file.
_ALLOWED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Common foreign files, named only to make the error message useful.
_FOREIGN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"8BPS", "a Photoshop PSD file"),
    (b"\x00\x00\x01\x00", "a Windows ICO icon"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"%!PS", "a PostScript/EPS file"),
)


def _unidentified(data: bytes) -> ImageError:
    head = data[:64]
    for magic, fmt in _ALLOWED_MAGIC:
        if head.startswith(magic):
            return CorruptImage(f"looks like {fmt} but its header could not be parsed")
    accepted = ", ".join(ALLOWED_FORMATS)
    return UnsupportedImage(
        f"unknown or unsupported image format: the data looks like {_describe(data)}; "
        f"accepted formats are {accepted}"
    )


def _describe(data: bytes) -> str:
    head = data[:512]
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return "an ISO media file (HEIC/AVIF image or MP4 video)"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "an HTML document"
    if lowered.startswith((b"<?xml", b"<svg")):
        return "an XML/SVG document"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "plain text" if all(c.isprintable() or c.isspace() for c in text) else "binary data"


def _apply_exif_orientation(im: Image.Image) -> None:
    """Rotate pixels upright in place; broken EXIF means 'no orientation', never a failure.

    ``in_place`` matters: if Pillow fails while rewriting the EXIF block *after* transposing,
    the pixels are already upright, which is all we keep.
    """
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except MemoryError:
        raise
    except Exception:
        pass


_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


def _to_rgb8(im: Image.Image) -> np.ndarray:
    mode = im.mode
    try:
        if mode.startswith("I") or mode == "F":
            grey = _high_depth_to_uint8(np.asarray(im), mode)
            return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        if mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, rgba)
        rgb = np.array(im.convert("RGB") if im.mode != "RGB" else im, dtype=np.uint8)
    except MemoryError:
        raise
    except (ValueError, OSError) as exc:
        raise UnsupportedImage(f"pixel mode {mode} cannot be converted to RGB: {exc}") from exc
    return np.ascontiguousarray(rgb)


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map 16/32-bit integer or float greyscale onto 0..255 without clipping the range.

    I;16*: the container range 0..65535 maps linearly to 0..255 (brightness is preserved).
    I (int32): Pillow uses it for 16-bit sources too, so values within 0..65535 are treated as
    16-bit; anything else is min-max stretched. F: [0, 1] is taken as normalised, otherwise
    min-max stretched. Non-finite floats become 0.
    """
    grey = values.astype(np.float32)
    np.nan_to_num(grey, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(grey.min()), float(grey.max())
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        grey *= 255.0 / 65535.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        grey *= 255.0
    elif hi > lo:
        grey -= lo
        grey *= 255.0 / (hi - lo)
    else:
        grey.fill(0.0)
    return np.rint(grey).clip(0, 255).astype(np.uint8)
