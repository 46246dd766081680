"""The operating point: the threshold at a false-alarm rate, hand-computed cases, and clear
errors for input that cannot give one."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tamperscan.cli import app
from tamperscan.config import PipelineConfig
from tamperscan.image_metrics import balanced_accuracy, threshold_figures, tpr_at_false_alarms
from tamperscan.operating_point import (
    CalibrationError,
    OperatingPoint,
    operating_point,
    threshold_for_rate,
)

# Twenty authentic scores, distinct, highest 0.95 0.90 0.85 ...
SCORES = np.round(np.linspace(0.95, 0.0, 20), 4).astype(np.float32)


def test_threshold_flags_at_most_the_rate_hand_computed():
    # 5 % of 20 = 1 image may be flagged: the threshold sits just above the 2nd highest (0.90)
    t = threshold_for_rate(SCORES, 0.05)
    assert np.float32(0.90) < np.float32(t) <= np.nextafter(np.float32(0.90), np.float32(1))
    assert (np.float32(t) <= SCORES).sum() == 1
    # 10 % -> 2 flagged (0.95, 0.90); 0 % -> none; 4.9 % -> floor(0.98) = 0 -> none
    assert (np.float32(threshold_for_rate(SCORES, 0.10)) <= SCORES).sum() == 2
    assert (np.float32(threshold_for_rate(SCORES, 0.0)) <= SCORES).sum() == 0
    assert (np.float32(threshold_for_rate(SCORES, 0.049)) <= SCORES).sum() == 0
    # 100 %: every image may be flagged: the lowest score
    assert threshold_for_rate(SCORES, 1.0) == pytest.approx(0.0)


def test_ties_at_the_cut_stay_unflagged():
    tied = np.array([0.9, 0.8, 0.8, 0.8, 0.1], np.float32)
    t = threshold_for_rate(tied, 0.4)  # 2 allowed, but 0.8 x 3 tie: only 0.9 flagged
    assert (tied >= np.float32(t)).sum() == 1


def test_record_states_rate_sample_and_interval():
    threshold, point = operating_point(SCORES, 0.05, "two_stream@a;wcbnet@b", "/photos", 2)
    assert point.false_alarm_rate == pytest.approx(1 / 20)
    assert point.n_authentic == 20 and point.n_errors == 2
    low, high = point.interval  # Clopper-Pearson, 1 of 20: [0.0013, 0.2487]
    assert low == pytest.approx(0.00127, abs=1e-4) and high == pytest.approx(0.2487, abs=1e-3)
    assert "5.0% of 20 authentic images" in point.summary()
    config = PipelineConfig(tamper_threshold=threshold, operating_point=point)
    assert config.operating_point == point
    assert PipelineConfig(tamper_threshold=0.7).operating_point is None  # set by hand


def test_empty_or_impossible_input_is_a_clear_error():
    with pytest.raises(CalibrationError, match="no scores"):
        threshold_for_rate(np.array([]), 0.05)
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        threshold_for_rate(SCORES, 1.5)


def test_image_figures_hand_computed():
    forged = np.array([0.99, 0.92, 0.5, 0.2])
    # at 5 % of 20 authentic the threshold is just above 0.90: 2 of 4 forged caught
    assert tpr_at_false_alarms(forged, SCORES, 0.05) == pytest.approx(0.5)
    # weights (bootstrap counts): the first forged image twice, the second not at all
    assert tpr_at_false_alarms(forged, SCORES, 0.05, np.array([2, 0, 1, 1])) == pytest.approx(
        0.5)
    assert balanced_accuracy(forged, SCORES, 0.5) == pytest.approx(0.5 * (3 / 4 + 10 / 20))
    figures = threshold_figures(forged, SCORES, 0.5)
    assert figures["false_alarm_rate"] == pytest.approx(10 / 20)
    assert figures["tpr"] == pytest.approx(3 / 4)


def test_calibrate_cli_on_an_empty_or_missing_source_says_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (empty, tmp_path / "missing"):
        result = CliRunner().invoke(app, ["calibrate", str(source), "--out",
                                          str(tmp_path / "c.yaml")])
        assert result.exit_code == 2, result.output
        assert "calibration failed" in result.output
        assert not (tmp_path / "c.yaml").exists()


def test_shipped_operating_point_is_a_calibration_record():
    from tamperscan.operating_point import SHIPPED

    data = yaml.safe_load(SHIPPED.read_text())
    point = OperatingPoint.model_validate(data["operating_point"])
    assert PipelineConfig().tamper_threshold == data["tamper_threshold"]
    assert PipelineConfig().operating_point == point
    assert point.n_authentic >= 50 and point.target_false_alarm_rate == 0.05


def test_a_flagged_image_always_gets_a_mask_at_the_shipped_operating_point():
    """Flagged without a clone means (score_two_stream + score_wcbnet) / 2 >= tamper_threshold,
    so the localizer's blurred max is at least 2 * tamper_threshold - 1, and the final map,
    at least (1 - cam_weight) times the localizer's map where refinement blends, has a pixel
    of at least (1 - cam_weight) * (2 * tamper_threshold - 1); at or above mask_threshold,
    some pixel is always in the mask (a flagged image with a clone gets the clone's
    regions). scripts/calibrate.py only chooses pairs that keep this."""
    config = PipelineConfig()
    bound = (1 - config.refine.cam_weight) * (2 * config.tamper_threshold - 1)
    assert bound >= config.mask_threshold


def test_the_report_header_states_the_operating_point():
    from tamperscan.report.html import run_details

    _, point = operating_point(SCORES, 0.05, "two_stream@a;wcbnet@b", "our archive sample")
    line = run_details({"source": "/in", "tamper_threshold": 0.9,
                        "operating_point": point.model_dump(mode="json")}, "/out", 10, "now")
    assert "operating point" in line and "5.0% of 20 authentic images" in line
    assert "our archive sample" in line
    assert "set by hand" in run_details({"source": "/in"}, "/out", 10, "now")
