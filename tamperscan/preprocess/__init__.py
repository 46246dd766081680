"""Bytes to model inputs: safe decoding (decode.py) and error level analysis (ela.py)."""

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
from tamperscan.preprocess.ela import (
    ELA_QUALITY,
    ELA_SCALE,
    ela_absolute,
    ela_both,
    ela_signed,
    jpeg_roundtrip,
    resize_to,
)

__all__ = [
    "ALLOWED_FORMATS",
    "ELA_QUALITY",
    "ELA_SCALE",
    "CorruptImage",
    "DecodeLimits",
    "DecodedImage",
    "ImageError",
    "ImageTooLarge",
    "UnsupportedImage",
    "decode_image",
    "ela_absolute",
    "ela_both",
    "ela_signed",
    "jpeg_roundtrip",
    "resize_to",
]
