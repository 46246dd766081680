"""What the endpoint sends back: the JSON schema, the mask encodings, the error shape.

Mask RLE format (documented here and in the OpenAPI schema): COCO's *uncompressed* RLE,
``{"size": [height, width], "counts": [...]}``. The mask is flattened in **column-major**
(Fortran) order, as COCO does, and ``counts`` alternates run lengths of 0s and 1s starting
with 0s (a mask whose first pixel is set starts with a 0-length run). It decodes with
:func:`rle_decode` or with pycocotools (``mask.frPyObjects(rle, h, w)`` then ``decode``).
"""

from __future__ import annotations

import base64
import logging
import uuid

import cv2
import numpy as np
from pydantic import BaseModel, Field

from tamperscan.stages import heatmap_png

#: ImageError.code / SourceError.kind -> HTTP status. ``internal`` is never shown in detail.
DECODE_STATUS = {"unsupported": 415, "corrupt": 422, "too_large": 413}
SOURCE_STATUS = {"not_found": 404, "too_large": 413, "io": 502}


class ScanFailure(Exception):
    """A request that ends in an HTTP error; ``message`` is safe to show the client."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def internal_failure(details: str) -> ScanFailure:
    """Log the details with a reference; the client gets only the reference."""
    reference = uuid.uuid4().hex[:12]
    logging.getLogger("ray.serve").error("tamperscan internal error %s: %s", reference, details)
    return ScanFailure(500, "internal", f"internal error (reference {reference})")


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major, counts start with a run of 0s)."""
    mask = np.asarray(mask, bool)
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`: (height, width) bool."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((height, width), order="F")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def overlay_png(rgb_small: np.ndarray, heat: np.ndarray, width: int, height: int,
                max_side: int) -> bytes:
    """The heatmap blended over the image, at the image's aspect ratio, longest side at most
    ``max_side``. The base picture is the localizer-size RGB the models saw (the original
    pixels are not kept past decoding), so this is a preview, not a full-resolution render."""
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = cv2.cvtColor(cv2.resize(rgb_small, size, interpolation=cv2.INTER_LINEAR),
                        cv2.COLOR_RGB2BGR)
    heat_big = cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    colour = cv2.imdecode(np.frombuffer(heatmap_png(heat_big), np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", cv2.addWeighted(base, 0.55, colour, 0.45, 0))[1].tobytes()


class MaskRLE(BaseModel):
    size: tuple[int, int] = Field(description="[height, width]")
    counts: list[int] = Field(description="COCO uncompressed RLE: column-major, alternating "
                                          "runs of 0s and 1s, starting with 0s")


class MaskOut(BaseModel):
    png_base64: str = Field(description="binary mask at the original size, 8-bit PNG (0/255)")
    rle: MaskRLE
    fraction: float = Field(description="share of pixels flagged")


class ModelScores(BaseModel):
    two_stream: float = Field(description="localizer: max of the smoothed probability map")
    wcbnet: float = Field(description="WCBnet: mean of the three cross-block heads")
    wcbnet_heads: list[float] = Field(description="WCBnet heads for blocks 2, 3, 4")
    copy_move: float = Field(default=0.0, description=(
        "keypoint copy-move detector: 0 without a verified clone, else in [0.5, 1)"))


class Timings(BaseModel):
    """Seconds per stage (model stages: per image within its batch) and end to end."""

    decode: float
    copy_move: float = 0.0
    localize: float
    detect: float
    refine: float
    finalize: float
    total: float


class ScanResult(BaseModel):
    source: str = Field(description="upload file name, 'upload', or the s3:// URI")
    width: int
    height: int
    score: float = Field(description=(
        "image score in [0, 1]: mean of the two nets, noisy-OR with the copy-move confidence"))
    tampered: bool = Field(description="score >= tamper_threshold")
    scores: ModelScores
    refined: bool = Field(description="whether CAM + segmentation refinement ran (cascade)")
    mask: MaskOut
    heatmap_overlay_png_base64: str | None = Field(
        default=None, description="with ?heatmap=true: heatmap over the image (preview size)")
    timings: Timings
    model_versions: str = Field(description="config@weights-hash of each net, as in scan rows")
    thresholds: dict[str, float]


class ErrorOut(BaseModel):
    error: str = Field(description="machine-readable code, e.g. unsupported, too_large")
    detail: str = Field(description="human-readable reason")


def scan_result(row: dict, heat_overlay: bytes | None, finalize_s: float, total_s: float,
                thresholds: dict[str, float]) -> dict:
    """The JSON of one Finalize output row (row = one-row batch, first element taken)."""
    mask_png = bytes(row["mask_png"][0])
    mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_GRAYSCALE) > 0
    seconds = {k: float(row[f"t_{k}"][0]) if f"t_{k}" in row else 0.0
               for k in ("decode", "copy_move", "localize", "detect", "refine")}
    return {
        "source": str(row["uri"][0]),
        "width": int(row["width"][0]),
        "height": int(row["height"][0]),
        "score": float(row["score"][0]),
        "tampered": bool(row["tampered"][0]),
        "scores": {"two_stream": float(row["score_two_stream"][0]),
                   "wcbnet": float(row["score_wcbnet"][0]),
                   "wcbnet_heads": [float(v) for v in row["score_wcbnet_heads"][0]],
                   "copy_move": float(row["score_copy_move"][0])},
        "refined": bool(row["refined"][0]),
        "mask": {"png_base64": b64(mask_png), "rle": rle_encode(mask),
                 "fraction": float(row["mask_fraction"][0])},
        "heatmap_overlay_png_base64": b64(heat_overlay) if heat_overlay else None,
        "timings": {**seconds, "finalize": finalize_s, "total": total_s},
        "model_versions": str(row["model_versions"][0]),
        "thresholds": thresholds,
    }
