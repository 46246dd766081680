"""From file bytes to JPEG evidence: the tamper map per block, the image score, and the
analyst columns (primary quality, compressed more than once, table fingerprint).

A splice in a double-compressed picture is a region of blocks that lack the double-JPEG
trace amid blocks that carry it: on the stored grid (`aligned`) or on the grid of a first
compression the picture was shifted from (`nonaligned`); the model that explains more of the
picture (larger gain) is the one used. Two log-likelihood sums, both in nats, make the
image evidence: ``inside`` = sum over the best such region of log p(single)/p(double) (the
region is not double-compressed) and ``outside`` = sum over the other blocks of
log p(double)/p(single) (the rest is). A splice needs both; a single-compressed photo has no
``outside`` and a wholly double-compressed one no ``inside``, so the score grows with the
smaller of the two (`score_from`), calibrated by scripts/calibrate_jpeg.py so that 0.5 is
the <= 1 % false-alarm point on real photos, on real photos re-saved as platforms re-serve
them, and on authentic double-JPEGs; below it the score is 0 (nothing found).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tamperscan.jpeg.aligned import aligned_evidence
from tamperscan.jpeg.dct import decode_plane, plane_dct, unclipped
from tamperscan.jpeg.lattice import MAX_STATISTICS, LatticeEvidence
from tamperscan.jpeg.nonaligned import nonaligned_evidence
from tamperscan.jpeg.read import JpegCoefficients, NotJpeg, UnreadableJpeg, read_coefficients
from tamperscan.jpeg.tables import fingerprint, ijg_quality, nearest_quality

#: Largest share of the usable blocks a tampered region may take: the trace the rest carries
#: defines the background. (Without it, a weakly double-compressed authentic picture whose
#: blocks mostly read 'single' offered its whole self as the region.)
MAX_REGION = 0.5
#: Calibration grid shift (pixels) for the unquantised-coefficient estimate.
CALIBRATION_SHIFT = 4


@dataclass(frozen=True)
class Rule:
    """The image-level rule; values chosen by scripts/calibrate_jpeg.py.

    window, region_llr: the region search smooths the block LLR over window x window blocks
    and takes connected blocks below -region_llr. double_gain: nats per usable block the
    double model must gain before a region is looked for. at_half: nats of region evidence
    at which a region counts as found (<= 1 % false alarms); the score is 0 below it (no
    evidence joins the image score, as for a copy-move without a verified clone) and from
    0.5 up above it, one logit unit per ``scale`` in log(evidence). double_call: nats per
    usable block for the analysts' "compressed more than once" (<= 1 % of single-compressed
    camera originals called double)."""

    window: int = 7
    region_llr: float = 1.0
    double_gain: float = 0.5
    at_half: float = 413.9
    scale: float = 0.5
    double_call: float = 1.08


RULE = Rule()


@dataclass
class JpegFindings:
    """One file's JPEG evidence. ``tamper``: (rows, cols) probability that each block lacks
    the double-compression trace, 0 where there is no evidence; its blocks lie on the grid at
    ``origin`` (dy, dx) pixels from the STORED image's top-left corner."""

    applicable: bool
    table: str = ""
    quality: int = -1
    double: bool = False
    score: float = 0.0
    tamper: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    height: int = 0
    width: int = 0
    orientation: int = 1
    origin: tuple[int, int] = (0, 0)
    features: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BlockEvidence:
    """The per-block part (the costly one), kept apart so the calibration can sweep `Rule`:
    the aligned and the non-aligned model's evidence, and the one that explains more."""

    aligned: LatticeEvidence
    nonaligned: LatticeEvidence

    @property
    def chosen(self) -> LatticeEvidence:
        if self.nonaligned.gain > self.aligned.gain:
            return self.nonaligned
        return self.aligned


def score_from(evidence: float, rule: Rule = RULE) -> float:
    """Logistic in log(evidence): 0.5 at ``rule.at_half`` nats, towards 1 above."""
    if evidence <= 0:
        return 0.0
    return float(1 / (1 + np.exp(-np.log(evidence / rule.at_half) / rule.scale)))


def block_evidence(coef: JpegCoefficients) -> BlockEvidence | None:
    """Aligned and non-aligned double-JPEG evidence per block, or None when the image is
    too small."""
    rows, cols = coef.blocks.shape[:2]
    # Blocks fully inside the image: the padding of partial edge blocks is encoder-made.
    whole = np.zeros((rows, cols), bool)
    whole[: coef.height // 8, : coef.width // 8] = True
    if whole.sum() < 16:
        return None
    plane = decode_plane(coef.blocks, coef.table)
    usable = unclipped(plane, rows, cols) & whole
    image = plane[: coef.height, : coef.width]
    calibrated = plane_dct(image, CALIBRATION_SHIFT, CALIBRATION_SHIFT,
                           MAX_STATISTICS).reshape(-1, 64)
    aligned = aligned_evidence(coef.blocks, coef.table, calibrated, usable)
    return BlockEvidence(aligned, nonaligned_evidence(image, coef.table))


def decide(found: JpegFindings, blocks: BlockEvidence, rule: Rule = RULE) -> JpegFindings:
    """Fill ``found`` from the block evidence by ``rule``: double, quality, score, map."""
    chosen = blocks.chosen
    usable = chosen.usable
    found.origin = chosen.origin
    per_block = chosen.gain / max(int(usable.sum()), 1)
    found.double = per_block >= rule.double_call
    if found.double:
        known = chosen.q1 > 0
        found.quality = nearest_quality(np.where(known, chosen.q1, 1), known)
    smooth = ndimage.uniform_filter(chosen.llr, rule.window, mode="nearest")
    labels, count = ndimage.label((smooth < -rule.region_llr) & usable)
    inside, outside, region = 0.0, float(chosen.llr.sum()), 0
    index = np.arange(1, count + 1)
    # The background is what carries the trace, so a region is at most half of the blocks.
    small = ndimage.sum_labels(usable, labels, index=index) <= MAX_REGION * usable.sum()
    if small.any():
        sums = np.where(small, ndimage.sum_labels(-chosen.llr, labels, index=index), -np.inf)
        best = int(np.argmax(sums))
        inside, region = float(sums[best]), int((labels == best + 1).sum())
        outside = float(chosen.llr[labels != best + 1].sum())
    evidence = min(inside, outside) if per_block >= rule.double_gain else 0.0
    found.tamper = np.zeros(chosen.llr.shape, np.float32)
    if evidence >= rule.at_half:  # found: a score >= 0.5 and the map, P(single | window)
        found.score = score_from(evidence, rule)
        found.tamper = (1 / (1 + np.exp(np.clip(smooth * rule.window, -30, 30))))
        found.tamper = np.where(usable, found.tamper, 0).astype(np.float32)
    found.features = {"gain": chosen.gain, "gain_per_block": per_block,
                      "share": chosen.share, "frequencies": chosen.frequencies,
                      "inside": inside, "outside": outside, "region_blocks": region,
                      "blocks": int(usable.sum()), "evidence": evidence,
                      "grid": chosen.origin}
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
