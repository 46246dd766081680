"""What the endpoint sends back: the JSON schema and the error shape. The encodings (mask
PNG and COCO RLE, heatmap PNG, overlay) are `tamperscan.render`'s, as everywhere else.
"""

from __future__ import annotations

import base64
import logging
import uuid

from pydantic import BaseModel, Field

from tamperscan.render import mask_png, rle_encode

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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
    jpeg: float = Field(default=0.0, description=(
        "double-JPEG evidence (aligned and non-aligned grids): 0 unless a region without the "
        "rest's double-compression trace was found (non-JPEG files: 0), then in [0.5, 1); "
        "part of the image score, as the copy-move detector's"))


class JpegFindings(BaseModel):
    quality: int = Field(description="estimated primary JPEG quality (-1: unknown / not JPEG)")
    double_compressed: bool = Field(description="compressed more than once")
    table: str = Field(description="quantisation-table fingerprint: ijg:qQ (standard IJG "
                                   "table at quality Q), nonstandard:<hash>, '' (not JPEG)")


class Timings(BaseModel):
    """Seconds per stage (model stages: per image within its batch) and end to end."""

    decode: float
    copy_move: float = 0.0
    jpeg: float = 0.0
    nets: float = Field(description="both nets (localizer and WCBnet), one model stage")
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
    jpeg: JpegFindings
    mask: MaskOut
    heatmap_overlay_png_base64: str | None = Field(
        default=None, description="with ?heatmap=true: heatmap over the image (preview size)")
    heatmap_png_base64: str | None = Field(
        default=None, description="with ?heatmap=true: the final heatmap's values at the "
                                  "localizer size, 8-bit greyscale (value = level / 255), "
                                  "as the bulk scan's --heatmaps writes them")
    timings: Timings
    model_versions: str = Field(description="config@weights-hash of each net, as in scan rows")
    thresholds: dict[str, float]


class ErrorOut(BaseModel):
    error: str = Field(description="machine-readable code, e.g. unsupported, too_large")
    detail: str = Field(description="human-readable reason")


def scan_result(row: dict, images: dict[str, bytes] | None, finalize_s: float, total_s: float,
                thresholds: dict[str, float]) -> dict:
    """The JSON of one output row (a one-row batch of Fuse's columns); ``images``: the
    rendered ``overlay`` and heatmap ``values`` PNGs, with ?heatmap=true."""
    mask = row["mask"][0]
    seconds = {k: float(row[f"t_{k}"][0]) if f"t_{k}" in row else 0.0
               for k in ("decode", "copy_move", "jpeg", "nets", "refine")}
    return {
        "source": str(row["uri"][0]),
        "width": int(row["width"][0]),
        "height": int(row["height"][0]),
        "score": float(row["score"][0]),
        "tampered": bool(row["tampered"][0]),
        "scores": {"two_stream": float(row["score_two_stream"][0]),
                   "wcbnet": float(row["score_wcbnet"][0]),
                   "wcbnet_heads": [float(v) for v in row["score_wcbnet_heads"][0]],
                   "copy_move": float(row["score_copy_move"][0]),
                   "jpeg": float(row["score_jpeg"][0])},
        "jpeg": {"quality": int(row["jpeg_quality"][0]),
                 "double_compressed": bool(row["jpeg_double"][0]),
                 "table": str(row["jpeg_table"][0])},
        "refined": bool(row["refined"][0]),
        "mask": {"png_base64": b64(mask_png(mask)), "rle": rle_encode(mask),
                 "fraction": float(row["mask_fraction"][0])},
        "heatmap_overlay_png_base64": b64(images["overlay"]) if images else None,
        "heatmap_png_base64": b64(images["values"]) if images else None,
        "timings": {**seconds, "finalize": finalize_s, "total": total_s},
        "model_versions": str(row["model_versions"][0]),
        "thresholds": thresholds,
    }
