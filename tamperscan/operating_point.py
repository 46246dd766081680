"""The operating point: ``tamper_threshold`` set from a false-alarm rate on authentic images.

Why: a tamper score means nothing to an analyst until it says how often an authentic image is
flagged. `tamperscan calibrate` scans authentic images (any source `scan` accepts), puts the
threshold where at most the target share of them score at or above it, and records what was
reached, on how many images, with a confidence interval, for which weights, and where. The
shipped default (``models/operating_point.yaml``) is made this way on real photos no shipped
net was trained on; another platform's recompression moves the scores, so an archive should
be recalibrated on a sample of its own authentic images.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import cache

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest

from tamperscan.paths import MODELS_DIR

#: The shipped operating point: a `tamperscan calibrate` output (tamper_threshold + record).
SHIPPED = MODELS_DIR / "operating_point.yaml"


class OperatingPoint(BaseModel):
    """Where ``tamper_threshold`` came from."""

    model_config = ConfigDict(extra="forbid")

    target_false_alarm_rate: float = Field(ge=0, le=1)
    false_alarm_rate: float = Field(ge=0, le=1, description="reached on the calibration images")
    interval: tuple[float, float] = Field(description="Clopper-Pearson 95 % interval of the "
                                                      "false-alarm rate")
    n_authentic: int = Field(ge=1, description="authentic images scored (error rows excluded)")
    n_errors: int = Field(default=0, ge=0, description="calibration images that did not decode")
    model_versions: str = Field(description="the nets' weights the scores came from")
    source: str = Field(description="where the authentic images were")
    calibrated: str = Field(description="UTC date")

    def summary(self) -> str:
        low, high = self.interval
        return (f"{self.false_alarm_rate:.1%} of {self.n_authentic} authentic images flagged "
                f"(95 % interval {low:.1%}-{high:.1%}; target {self.target_false_alarm_rate:.1%}"
                f"), calibrated on {self.source} on {self.calibrated}")


class CalibrationError(ValueError):
    """Calibration input that cannot give an operating point (no images, none decodable)."""


def threshold_for_rate(scores: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most ``floor(rate * n)`` of ``scores`` are flagged
    (flagged = score >= threshold). Computed in float32, the scores' type, so the comparison
    the graph makes flags exactly the images counted here: with the scores sorted high to
    low and k = floor(rate * n), the threshold is the next float32 above the (k+1)-th score
    (ties with it stay unflagged), or the lowest score when every image may be flagged."""
    values = np.sort(np.asarray(scores, np.float32))[::-1]
    if values.size == 0:
        raise CalibrationError("no scores to calibrate on")
    if not 0 <= rate <= 1:
        raise CalibrationError(f"false-alarm rate must be in [0, 1], got {rate}")
    k = math.floor(rate * values.size + 1e-9)
    if k >= values.size:
        return float(values[-1])
    return float(np.nextafter(values[k], np.float32(np.inf)))


def operating_point(scores: np.ndarray, rate: float, model_versions: str, source: str,
                    n_errors: int = 0) -> tuple[float, OperatingPoint]:
    """(tamper_threshold, its record) from the authentic images' scores."""
    scores = np.asarray(scores, np.float32)
    threshold = threshold_for_rate(scores, rate)
    flagged = int((scores >= np.float32(threshold)).sum())
    ci = binomtest(flagged, scores.size).proportion_ci(0.95, method="exact")
    point = OperatingPoint(
        target_false_alarm_rate=rate, false_alarm_rate=flagged / scores.size,
        interval=(float(ci.low), float(ci.high)), n_authentic=int(scores.size),
        n_errors=n_errors, model_versions=model_versions, source=source,
        calibrated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    return threshold, point


@cache
def shipped() -> dict:
    """``tamper_threshold`` and ``operating_point`` of the shipped calibration (empty if
    the file is missing: the config's fallbacks apply)."""
    if not SHIPPED.exists():
        return {}
    return yaml.safe_load(SHIPPED.read_text()) or {}
