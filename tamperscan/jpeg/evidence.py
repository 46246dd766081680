"""From file bytes to JPEG evidence: the tamper map per block, the image score, and the
analyst columns (primary quality, compressed more than once, table fingerprint).

A splice in a double-compressed picture is a region of blocks that lack the double-JPEG
trace (`aligned`) amid blocks that carry it. Two log-likelihood sums, both in nats, make the
image evidence: ``inside`` = sum over the best such region of log p(single)/p(double) (the
region is not double-compressed) and ``outside`` = sum over the other blocks of
log p(double)/p(single) (the rest is). A splice needs both; a single-compressed photo has no
``outside`` and a wholly double-compressed one no ``inside``, so the score grows with the
smaller of the two (`score_from`), calibrated by scripts/calibrate_jpeg.py so that 0.5 is
the <= 1 % false-alarm point on real photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tamperscan.jpeg.aligned import AlignedEvidence, aligned_evidence
from tamperscan.jpeg.dct import decode_plane, plane_dct
from tamperscan.jpeg.read import JpegCoefficients, NotJpeg, UnreadableJpeg, read_coefficients
from tamperscan.jpeg.tables import fingerprint, ijg_quality, nearest_quality

#: Calibration grid shift (pixels) for the unquantised-coefficient estimate.
CALIBRATION_SHIFT = 4


@dataclass(frozen=True)
class Rule:
    """The image-level rule; values chosen by scripts/calibrate_jpeg.py.

    window, region_llr: the region search smooths the block LLR over window x window blocks
    and takes connected blocks below -region_llr. double_gain: nats per usable block the
    double model must gain for "compressed more than once". at_half, scale: score 0.5 at
    ``at_half`` nats of evidence, one logit unit per ``scale`` in log(evidence)."""

    window: int = 3
    region_llr: float = 0.5
    double_gain: float = 0.2
    at_half: float = 202.4
    scale: float = 0.5


RULE = Rule()


@dataclass
class JpegFindings:
    """One file's JPEG evidence. ``tamper``: (rows, cols) probability that each block of the
    STORED image lacks the double-compression trace, 0 where there is no evidence."""

    applicable: bool
    table: str = ""
    quality: int = -1
    double: bool = False
    score: float = 0.0
    tamper: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    height: int = 0
    width: int = 0
    orientation: int = 1
    features: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BlockEvidence:
    """The per-block part (the costly one), kept apart so the calibration can sweep `Rule`."""

    aligned: AlignedEvidence
    usable: np.ndarray  # (rows, cols) bool


def score_from(evidence: float, rule: Rule = RULE) -> float:
    """Logistic in log(evidence): 0 without evidence, 0.5 at ``rule.at_half`` nats."""
    if evidence <= 0:
        return 0.0
    return float(1 / (1 + np.exp(-np.log(evidence / rule.at_half) / rule.scale)))


def _usable(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Blocks with no clipped pixel: clipping breaks the rounding model of `aligned`."""
    blocks = plane.reshape(rows, 8, cols, 8)
    return ~((blocks <= 0) | (blocks >= 255)).any(axis=(1, 3))


def block_evidence(coef: JpegCoefficients) -> BlockEvidence | None:
    """Aligned double-JPEG evidence per block, or None when the image is too small."""
    rows, cols = coef.blocks.shape[:2]
    # Blocks fully inside the image: the padding of partial edge blocks is encoder-made.
    whole = np.zeros((rows, cols), bool)
    whole[: coef.height // 8, : coef.width // 8] = True
    if whole.sum() < 16:
        return None
    plane = decode_plane(coef.blocks, coef.table)
    usable = _usable(plane, rows, cols) & whole
    calibrated = plane_dct(plane[: coef.height, : coef.width], CALIBRATION_SHIFT,
                           CALIBRATION_SHIFT).reshape(-1, 64)
    return BlockEvidence(aligned_evidence(coef.blocks, coef.table, calibrated, usable), usable)


def decide(found: JpegFindings, blocks: BlockEvidence, rule: Rule = RULE) -> JpegFindings:
    """Fill ``found`` from the block evidence by ``rule``: double, quality, score, map."""
    aligned, usable = blocks.aligned, blocks.usable
    per_block = aligned.gain / max(int(usable.sum()), 1)
    found.double = per_block >= rule.double_gain
    if found.double:
        known = aligned.q1 > 0
        found.quality = nearest_quality(np.where(known, aligned.q1, 1), known)
    smooth = ndimage.uniform_filter(aligned.llr, rule.window, mode="nearest")
    labels, count = ndimage.label((smooth < -rule.region_llr) & usable)
    inside, outside, region = 0.0, float(aligned.llr.sum()), 0
    if count:
        sums = ndimage.sum_labels(-aligned.llr, labels, index=np.arange(1, count + 1))
        best = int(np.argmax(sums))
        inside, region = float(sums[best]), int((labels == best + 1).sum())
        outside = float(aligned.llr[labels != best + 1].sum())
    evidence = min(inside, outside) if found.double else 0.0
    found.score = score_from(evidence, rule)
    found.tamper = np.zeros(aligned.llr.shape, np.float32)
    if found.double:  # P(single | window), the window's blocks taken as one
        found.tamper = (1 / (1 + np.exp(np.clip(smooth * rule.window, -30, 30))))
        found.tamper = np.where(usable, found.tamper, 0).astype(np.float32)
    found.features = {"gain": aligned.gain, "gain_per_block": per_block,
                      "share": aligned.share, "frequencies": aligned.frequencies,
                      "inside": inside, "outside": outside, "region_blocks": region,
                      "blocks": int(usable.sum()), "evidence": evidence}
    return found


def describe(coef: JpegCoefficients) -> JpegFindings:
    """The file-level columns that need no statistics: table fingerprint, stored quality."""
    stored = ijg_quality(coef.table, coef.tables[1] if len(coef.tables) > 1 else None)
    rows, cols = coef.blocks.shape[:2]
    return JpegFindings(
        applicable=True, table=fingerprint(coef.tables),
        quality=stored if stored is not None else nearest_quality(coef.table),
        tamper=np.zeros((rows, cols), np.float32), height=coef.height, width=coef.width,
        orientation=coef.orientation)


def analyse_coefficients(coef: JpegCoefficients, rule: Rule = RULE) -> JpegFindings:
    found = describe(coef)
    if coef.truncated:  # zeroed missing blocks would read as evidence
        found.table += ";truncated"
        return found
    blocks = block_evidence(coef)
    return found if blocks is None else decide(found, blocks, rule)


def jpeg_findings(data: bytes, rule: Rule = RULE) -> JpegFindings:
    """Evidence of one file's bytes; a non-JPEG or a JPEG libjpeg cannot read is 'not
    applicable' (no evidence), with ``table`` saying why for the latter."""
    try:
        coef = read_coefficients(data)
    except NotJpeg:
        return JpegFindings(applicable=False)
    except UnreadableJpeg:
        return JpegFindings(applicable=False, table="unreadable")
    return analyse_coefficients(coef, rule)
