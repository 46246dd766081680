"""Error level analysis (ELA): the difference between an image and its JPEG re-encoding.

Regions with a different compression history (pasted from another file, retouched) re-compress
differently from the rest. ELA is always computed at the image's ORIGINAL resolution (resizing
first would blur away the 8x8 block statistics) and only then resized for the models.

Fixed codec settings, identical in training and inference:
- Pillow's JPEG codec (libjpeg-turbo) both ways, in memory;
- ``quality=ELA_QUALITY`` (90, as in both papers) unless the caller overrides it;
- chroma subsampling 4:2:0 (Pillow's default, which the published ELA pipelines inherit, and
  what nearly all camera/web JPEGs use, so the re-encode shares their chroma grid);
- ``optimize=False``, baseline (Huffman table choice does not change pixels, but pinning it
  keeps the encoder call identical everywhere).

Scaling: a raw difference is in grey levels (-255..255). On natural photos re-encoded at
quality 90 the mean absolute difference is about 1-3 levels and the 99.9th percentile about
10-25 (measured on scikit-image's sample photos, both PNG and previously-JPEG sources), so a
difference of ``ELA_SATURATION`` = 20 levels maps to 1.0 (``ELA_SCALE`` = 1/20, i.e. the
classic 255/20 brightness multiplier of ELA viewers, expressed in [0, 1] units). Typical values
then use the lower half of [0, 1] and only extreme outliers saturate. The signed map uses the
same constant, so ``abs(ela_signed(x)) == ela_absolute(x)`` exactly.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

ELA_QUALITY = 90
ELA_SUBSAMPLING = "4:2:0"
ELA_SATURATION = 20
ELA_SCALE = 1.0 / ELA_SATURATION


def jpeg_roundtrip(rgb: np.ndarray, quality: int = ELA_QUALITY) -> np.ndarray:
    """Encode to JPEG and decode again with the pinned codec settings; (H, W, 3) uint8."""
    _check_rgb(rgb)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(
        buffer, format="JPEG", quality=int(quality), subsampling=ELA_SUBSAMPLING, optimize=False
    )
    buffer.seek(0)
    with Image.open(buffer, formats=("JPEG",)) as decoded:
        return np.asarray(decoded.convert("RGB"))


def ela_signed(rgb: np.ndarray, quality: int = ELA_QUALITY) -> np.ndarray:
    """(x - JPEG(x)) * ELA_SCALE clipped to [-1, 1]; float32 (H, W, 3). WCBnet's input."""
    diff = np.subtract(rgb, jpeg_roundtrip(rgb, quality), dtype=np.int16)
    out = diff.astype(np.float32)
    out *= ELA_SCALE
    return np.clip(out, -1.0, 1.0, out=out)


def ela_absolute(rgb: np.ndarray, quality: int = ELA_QUALITY) -> np.ndarray:
    """|x - JPEG(x)| * ELA_SCALE clipped to [0, 1]; float32 (H, W, 3). The localizer's input."""
    return np.abs(ela_signed(rgb, quality))


def ela_both(rgb: np.ndarray, quality: int = ELA_QUALITY) -> tuple[np.ndarray, np.ndarray]:
    """(absolute, signed) from ONE re-encode, for stages that feed both networks."""
    signed = ela_signed(rgb, quality)
    return np.abs(signed), signed


def resize_to(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to (size, size[, C]) keeping dtype.

    INTER_AREA when the longer side shrinks (it averages, so no aliasing of the fine ELA
    texture), INTER_LINEAR when growing.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    height, width = img.shape[:2]
    shrinking = size < max(height, width)
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interpolation)
    if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing single channel
        out = out[..., None]
    return out


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.dtype} array of {rgb.shape}")
