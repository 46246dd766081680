"""Thumbnail, heatmap overlay and mask outline for the top-K flagged rows.

Decoding sources is the only per-row cost of a report, so it is bounded by K and spread over
threads (Pillow and OpenCV release the GIL). The figures are the ones `tamperscan explain`
draws (`render.heat_overlay`, `render.outline_overlay`) at thumbnail size, from the heatmap
values the scan stored. A source that cannot be read or decoded gives a placeholder and a
note, never an exception: an archive report must not die on the one file that moved since
the scan.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from tamperscan.config import PipelineConfig, S3Options
from tamperscan.io import SourceError, read_bytes, resolve
from tamperscan.preprocess.decode import DecodeLimits, ImageError, decode_image
from tamperscan.render import heat_overlay, heatmap_from_png, mask_from_png, outline_overlay

THUMB_SIDE = 320
JPEG_QUALITY = 85
IMG_DIR = "img"


@dataclass(frozen=True)
class Sources:
    """Where a row's pixels come from: the scan output folder and the original inputs."""

    results_dir: str
    s3: S3Options | None
    limits: DecodeLimits

    @classmethod
    def for_config(cls, results_dir: str, s3: S3Options | None,
                   config: PipelineConfig) -> Sources:
        return cls(results_dir, s3, DecodeLimits(max_bytes=config.max_image_bytes,
                                                 max_pixels=config.max_image_pixels))

    def decode(self, uri: str) -> np.ndarray:
        return decode_image(read_bytes(uri, self.limits.max_bytes, self.s3), self.limits).rgb

    def heatmap(self, relative: str) -> np.ndarray:
        """The values of a heatmap PNG under the results folder; paths escaping it are
        refused."""
        path = posixpath.normpath(relative)
        if path.startswith(("/", "..")):
            raise ValueError(f"heatmap path outside the results folder: {relative!r}")
        fs, root = resolve(self.results_dir, self.s3)
        with fs.open_input_stream(f"{root.rstrip('/')}/{path}") as f:
            return heatmap_from_png(f.read(self.limits.max_bytes))


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    scale = min(1.0, THUMB_SIDE / max(rgb.shape[:2]))
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _blank(width: float | None, height: float | None) -> np.ndarray:
    """A grey canvas with the image's aspect: heatmap and mask still show without pixels."""
    w = 4.0 if pd.isna(width) or not width else float(width)
    h = 3.0 if pd.isna(height) or not height else float(height)
    scale = THUMB_SIDE / max(w, h)
    return np.full((max(1, round(h * scale)), max(1, round(w * scale)), 3), 64, np.uint8)


def _write_jpeg(path: Path, bgr: np.ndarray) -> None:
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    path.write_bytes(buffer.tobytes())


def _problem(what: str, exc: Exception) -> str:
    kind = getattr(exc, "kind", None) or getattr(exc, "code", None) or type(exc).__name__
    return f"{what}: {kind}: {exc}"


def row_images(row: pd.Series, rank: int, mask_png: bytes | None, sources: Sources,
               out: Path) -> dict:
    """Write up to three JPEGs for one row into ``out/img``; returns their relative paths
    (``None`` where a figure could not be made) and a note saying why."""
    notes: list[str] = []
    stem = f"{IMG_DIR}/{rank:06d}"
    files: dict[str, str | None] = {"t": None, "h": None, "m": None}
    rgb = None
    try:
        rgb = _thumbnail(sources.decode(str(row["uri"])))
    except (SourceError, ImageError, OSError, ValueError) as exc:
        notes.append(_problem("source unreadable", exc))
    view = rgb if rgb is not None else _blank(row.get("width"), row.get("height"))

    def figure(key: str, name: str, make: Callable[[], np.ndarray | None], what: str) -> None:
        try:
            image = make()
            if image is not None:
                _write_jpeg(out / f"{stem}-{name}.jpg", image)
                files[key] = f"{stem}-{name}.jpg"
        except Exception as exc:  # one bad figure must not cost the report
            notes.append(_problem(what, exc))

    if rgb is not None:
        figure("t", "image", lambda: cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "thumbnail")
    heat_path = row.get("heatmap_path")
    if isinstance(heat_path, str) and heat_path:
        figure("h", "heat",
               lambda: heat_overlay(view, sources.heatmap(heat_path)),
               "heatmap unreadable")
    else:
        notes.append("no heatmap (scan without --heatmaps)")
    if mask_png:
        figure("m", "mask",
               lambda: outline_overlay(view, mask_from_png(mask_png)),
               "mask unreadable")
    return {**files, "n": "; ".join(notes)}


def make_images(rows: pd.DataFrame, ranks: np.ndarray, masks: dict[str, bytes],
                sources: Sources, out: Path, workers: int = 4) -> dict[int, dict]:
    """Figures for ``rows`` (the top-K flagged, in report order); keyed by report position."""
    (out / IMG_DIR).mkdir(parents=True, exist_ok=True)

    def one(i: int) -> dict:
        row = rows.iloc[i]
        return row_images(row, int(ranks[i]) + 1, masks.get(str(row["uri"])), sources, out)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, range(len(rows))))
    return {int(ranks[i]): files for i, files in enumerate(results)}
