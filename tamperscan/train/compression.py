"""Encoding, and the draws of its JPEG parameters: every compression a sample carries (host
history q1, donor q_src, final save q2) goes through here, so the traces the detectors learn come
from one codec path."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image


def draw_quality(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """A Pillow/IJG quality factor in `bounds`, both ends included."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def draw_subsampling(rng: np.random.Generator, p_444: float) -> int:
    """Pillow's chroma subsampling code: 0 (4:4:4) with probability `p_444`, else 2 (4:2:0)."""
    return 0 if rng.random() < p_444 else 2


def jpeg_bytes(rgb: np.ndarray, quality: int, subsampling: int = 2) -> bytes:
    """Encode with Pillow (libjpeg-turbo), the codec the pipeline uses. subsampling 0=4:4:4,
    2=4:2:0."""
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def jpeg_recompress(rgb: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """Save as JPEG and decode: leaves the quantisation traces of `quality` on the pixels."""
    with Image.open(BytesIO(jpeg_bytes(rgb, quality, subsampling))) as image:
        return np.array(image.convert("RGB"))  # a writable copy: callers paste into it


def encode_image(rgb: np.ndarray, fmt: str, quality: int = 90, subsampling: int = 2) -> bytes:
    """Final save. PNG uses compress_level=1 and TIFF is uncompressed: speed matters when
    streaming, and the decoded pixels are identical whatever the lossless effort."""
    if fmt == "JPEG":
        return jpeg_bytes(rgb, quality, subsampling)
    buffer = BytesIO()
    if fmt == "PNG":
        Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    elif fmt == "TIFF":
        Image.fromarray(rgb).save(buffer, "TIFF")
    else:
        raise ValueError(f"unsupported format {fmt!r}")
    return buffer.getvalue()
