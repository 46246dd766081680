"""Quantised DCT coefficients and quantisation tables of a JPEG file, read by libjpeg through
``jpeglib`` (no hand-written entropy decoding: progressive scans, restart markers and every
sampling layout are libjpeg's business).

jpeglib reads from paths only, so the bytes go through a temporary file (in /dev/shm when
there is one: no disk I/O). libjpeg decodes truncated files with the missing blocks zeroed and
only a warning; truncation is therefore detected here from the markers and reported, never
analysed (zeroed blocks would read as evidence).
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

SOI = b"\xff\xd8\xff"
_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class NotJpeg(ValueError):
    """The bytes are not a JPEG file: no JPEG evidence applies."""


class UnreadableJpeg(ValueError):
    """A JPEG whose DCT coefficients libjpeg cannot read (broken header, no scan...)."""


@dataclass(frozen=True)
class JpegCoefficients:
    """What the analysis needs of one file. ``blocks``: component 0's quantised coefficients
    (luma; C of CMYK; the only one of greyscale), (rows, cols, 64) int16 in natural order, one
    row per 8x8 block of that component's plane; ``table``: its quantisation steps (64,)."""

    blocks: np.ndarray
    table: np.ndarray
    tables: list[np.ndarray]  # every table in use, in component order (deduplicated)
    height: int  # stored (not EXIF-oriented) size in pixels
    width: int
    color_space: str  # libjpeg's: JCS_YCbCr, JCS_GRAYSCALE, JCS_CMYK, JCS_YCCK, JCS_RGB...
    progressive: bool
    truncated: bool
    orientation: int  # EXIF orientation 1..8 (1 when absent or broken)


def is_jpeg(data: bytes) -> bool:
    return data[:3] == SOI


def truncated(data: bytes) -> bool:
    """No EOI marker after the last SOS. Inside entropy-coded data 0xFF is always followed by
    0x00 or a restart marker, so an FFD9 after the last scan header is the image's EOI (an
    EXIF thumbnail's EOI comes before the main image's scans)."""
    last_sos = data.rfind(b"\xff\xda")
    return last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0


def exif_orientation(data: bytes) -> int:
    """EXIF orientation as the decoder applies it (`preprocess.decode`); broken EXIF is 1."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            value = int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def read_coefficients(data: bytes) -> JpegCoefficients:
    """Read the coefficients of component 0 and the tables in use; raises `NotJpeg` or
    `UnreadableJpeg` (both mean 'no JPEG evidence', not a failure of the row)."""
    import jpeglib  # a C library wrapper: loaded on first use only

    if not is_jpeg(data):
        raise NotJpeg("not a JPEG file")
    with tempfile.NamedTemporaryFile(suffix=".jpg", dir=_TMP) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            jpeg = jpeglib.read_dct(tmp.name)
            luma = np.asarray(jpeg.Y)
            qt = np.asarray(jpeg.qt)
            table_of = [int(t) for t in np.asarray(jpeg.quant_tbl_no)]
            height, width = int(jpeg.height), int(jpeg.width)
            space = getattr(jpeg.jpeg_color_space, "name", str(jpeg.jpeg_color_space))
            progressive = bool(jpeg.progressive_mode)
        except Exception as exc:  # jpeglib turns libjpeg's fatal errors into exceptions
            raise UnreadableJpeg(f"libjpeg cannot read the DCT coefficients: {exc}") from exc
    if luma.ndim != 4 or luma.shape[2:] != (8, 8) or not table_of:
        raise UnreadableJpeg(f"unexpected coefficient layout {luma.shape}")
    used = list(dict.fromkeys(table_of))
    return JpegCoefficients(
        blocks=luma.reshape(luma.shape[0], luma.shape[1], 64),
        table=qt[table_of[0]].reshape(64).astype(np.int64),
        tables=[qt[t].reshape(64).astype(np.int64) for t in used],
        height=height, width=width, color_space=space, progressive=progressive,
        truncated=truncated(data), orientation=exif_orientation(data))
