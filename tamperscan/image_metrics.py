"""Image-level figures of the field, one implementation for `evaluate` and `compare`.

Each takes the forged and the authentic images' scores and optional per-image weights: the
bootstrap in `tamperscan.compare` passes resampling counts, `evaluate` none. The threshold
behind "true-positive rate at X % false alarms" is the one `tamperscan calibrate` would set on
those authentic images (`operating_point.threshold_for_rate`), so the figure says what a
calibrated scan of such images would catch.
"""

from __future__ import annotations

import numpy as np

from tamperscan.operating_point import threshold_for_rate

#: False-alarm rates of the ``tpr_at_*`` figures.
FALSE_ALARM_RATES = {"tpr_at_5fa": 0.05, "tpr_at_1fa": 0.01}
#: The names `threshold_figures` returns, in its order.
THRESHOLD_FIGURES = (*FALSE_ALARM_RATES, "balanced_accuracy", "false_alarm_rate", "tpr")


def _weights(scores: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones(len(scores)) if weights is None else np.asarray(weights, float)


def flagged_share(scores: np.ndarray, threshold: float, weights: np.ndarray | None = None
                  ) -> float:
    """Weighted share of ``scores`` at or above ``threshold`` (compared in float32, as the
    graph compares them)."""
    w = _weights(scores, weights)
    hit = np.asarray(scores, np.float32) >= np.float32(threshold)
    return float((w * hit).sum() / w.sum()) if w.sum() else float("nan")


def tpr_at_false_alarms(forged: np.ndarray, authentic: np.ndarray, rate: float,
                        forged_weights: np.ndarray | None = None,
                        authentic_weights: np.ndarray | None = None) -> float:
    """Share of forged images flagged at the threshold that flags at most ``rate`` of the
    authentic ones."""
    counts = _weights(authentic, authentic_weights).astype(int)
    threshold = threshold_for_rate(np.repeat(np.asarray(authentic, np.float32), counts), rate)
    return flagged_share(forged, threshold, forged_weights)


def balanced_accuracy(forged: np.ndarray, authentic: np.ndarray, threshold: float,
                      forged_weights: np.ndarray | None = None,
                      authentic_weights: np.ndarray | None = None) -> float:
    """Mean of the true-positive and true-negative rates at ``threshold``."""
    return 0.5 * (flagged_share(forged, threshold, forged_weights)
                  + 1 - flagged_share(authentic, threshold, authentic_weights))


def threshold_figures(forged: np.ndarray, authentic: np.ndarray, threshold: float,
                      forged_weights: np.ndarray | None = None,
                      authentic_weights: np.ndarray | None = None) -> dict[str, float]:
    """Every threshold-based figure: TPR at 5 % and 1 % false alarms, and at the operating
    point ``threshold`` its balanced accuracy, false-alarm rate and true-positive rate."""
    args = (forged_weights, authentic_weights)
    return {
        **{name: tpr_at_false_alarms(forged, authentic, rate, *args)
           for name, rate in FALSE_ALARM_RATES.items()},
        "balanced_accuracy": balanced_accuracy(forged, authentic, threshold, *args),
        "false_alarm_rate": flagged_share(authentic, threshold, authentic_weights),
        "tpr": flagged_share(forged, threshold, forged_weights),
    }
