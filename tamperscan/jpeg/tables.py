"""Quantisation-table fingerprints and quality estimates.

Most archive JPEGs were written by libjpeg (IJG) or a library that copies its tables: the
standard tables of ITU-T T.81 Annex K scaled by the IJG quality formula. A file whose tables
equal the IJG ones at quality Q is fingerprinted ``ijg:qQ``; any other table (camera makers,
Photoshop, platforms' own encoders) is ``nonstandard:<hash>``, a stable short id analysts can
group files by, with the nearest IJG quality as its quality estimate.
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np

#: ITU-T T.81 Annex K.1, natural (row-major) order.
LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64)
CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *[99] * 32], np.int64)

#: Zig-zag scan order: ZIGZAG[k] is the natural index of the k-th coefficient.
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34,
    27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37,
    44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])


def ijg_table(quality: int, chroma: bool = False, baseline: bool = True) -> np.ndarray:
    """libjpeg's ``jpeg_set_quality`` table (64 values, natural order)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = ((CHROMA if chroma else LUMA) * scale + 50) // 100
    return np.clip(table, 1, 255 if baseline else 32767)


@cache
def _ijg_stack(chroma: bool) -> np.ndarray:
    """(100, 64) tables for qualities 1..100."""
    return np.stack([ijg_table(q, chroma) for q in range(1, 101)])


def ijg_quality(luma: np.ndarray, chroma: np.ndarray | None = None) -> int | None:
    """The IJG quality whose tables equal these exactly, else None."""
    luma = np.asarray(luma).reshape(64)
    hits = np.flatnonzero((_ijg_stack(False) == luma).all(axis=1))
    if chroma is not None:
        chroma = np.asarray(chroma).reshape(64)
        hits = [q for q in hits if (_ijg_stack(True)[q] == chroma).all()]
    return int(hits[-1]) + 1 if len(hits) else None


def nearest_quality(luma: np.ndarray, known: np.ndarray | None = None) -> int:
    """The IJG quality whose luminance table is closest to ``luma`` (log-ratio distance, over
    the entries flagged ``known``, e.g. only the frequencies where a primary step could be
    estimated): the usual 'equivalent quality' of a non-standard table."""
    luma = np.asarray(luma, np.float64).reshape(64)
    mask = np.ones(64, bool) if known is None else np.asarray(known, bool).reshape(64)
    if not mask.any():
        return -1
    dist = np.abs(np.log(_ijg_stack(False)[:, mask]) - np.log(np.maximum(luma[mask], 1)))
    return int(np.argmin(dist.mean(axis=1))) + 1


def fingerprint(tables: list[np.ndarray]) -> str:
    """``ijg:qQ`` when the tables in use are IJG's at quality Q (luma, and chroma when there
    is one), else ``nonstandard:<8 hex>`` (hash of the tables, order kept)."""
    flat = [np.asarray(t, np.uint16).reshape(64) for t in tables]
    quality = ijg_quality(flat[0], flat[1] if len(flat) > 1 else None)
    if quality is not None and all((t == flat[0]).all() or (t == flat[1]).all() for t in flat):
        return f"ijg:q{quality}"
    digest = hashlib.sha1(b"".join(t.tobytes() for t in flat)).hexdigest()[:8]
    return f"nonstandard:{digest}"
