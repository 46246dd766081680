"""The logistic image score: its file format, the batch columns it reads, and that the
shipped model was fit for the shipped weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.special import expit

from tamperscan.config import PipelineConfig
from tamperscan.score_model import ImageScoreModel, feature, load_score_model
from tamperscan.stages import (
    DecodeELA,
    bytes_batch,
    image_score,
    map_score,
    model_versions,
    score_model,
)
from tests.helpers import good_images

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def model(**overrides) -> ImageScoreModel:
    fields = dict(features=["score_two_stream", "ela_p99"], mean=[0.5, 0.1], scale=[0.2, 0.05],
                  coef=[1.5, -0.7], intercept=0.3)
    return ImageScoreModel(**{**fields, **overrides})


def test_probability_is_the_logistic_of_the_standardised_features():
    batch = {"score_two_stream": np.array([0.9, 0.2]), "ela_p99": np.array([0.05, 0.3])}
    z = 1.5 * (batch["score_two_stream"] - 0.5) / 0.2 - 0.7 * (batch["ela_p99"] - 0.1) / 0.05
    assert model().probability(batch) == pytest.approx(expit(z + 0.3))


@pytest.mark.parametrize("bad", [dict(features=["no_such_column", "ela_p99"]),
                                 dict(coef=[1.0]), dict(scale=[0.2, 0.0]),
                                 dict(features=[], mean=[], scale=[], coef=[])])
def test_inconsistent_models_are_refused(bad):
    with pytest.raises(ValidationError):
        model(**bad)


def test_file_round_trip_and_stale_warning(tmp_path, caplog):
    path = tmp_path / "score.yaml"
    model(fitted_for="two_stream@aaa;wcbnet@bbb").save(path, header="fit by a test\nline 2")
    assert path.read_text().startswith("# fit by a test\n# line 2\n")
    with caplog.at_level(logging.WARNING):
        loaded = load_score_model(str(path), "two_stream@aaa;wcbnet@bbb")
    assert loaded == model(fitted_for="two_stream@aaa;wcbnet@bbb") and not caplog.records
    with caplog.at_level(logging.WARNING):
        load_score_model(str(path), "two_stream@ccc;wcbnet@bbb")
    assert "refit" in caplog.text


def test_image_score_is_noisy_or_of_the_model_and_the_clone(tmp_path):
    path = tmp_path / "score.yaml"
    model().save(path)
    config = PipelineConfig(image_score_model=str(path))
    batch = {"score_two_stream": np.array([0.9, 0.9]), "ela_p99": np.array([0.05, 0.05]),
             "score_wcbnet": np.array([0.1, 0.1]), "score_copy_move": np.array([0.0, 0.6])}
    nets = model().probability(batch)
    assert image_score(batch, config) == pytest.approx(
        np.array([nets[0], 1 - (1 - nets[1]) * 0.4]), rel=1e-6)
    assert image_score(batch, PipelineConfig(image_score_model=None)) == pytest.approx(
        [0.5, 1 - 0.5 * 0.4])


def test_error_level_features_come_from_the_decoded_ela():
    config = PipelineConfig()
    out = DecodeELA(config)(bytes_batch(list(good_images(2).values())))
    assert "ela_score" not in out  # derived only when a model asks, not by every scan
    ela_score, ela_p99 = feature(out, "ela_score"), feature(out, "ela_p99")
    for i in range(2):
        level = out["ela"][i].astype(np.float32).mean(axis=2)
        assert ela_score[i] == pytest.approx(map_score(level))
        assert ela_p99[i] == pytest.approx(np.percentile(level, 99))


def test_fit_script_writes_a_model_the_pipeline_uses(tmp_path):
    """scripts/fit_image_score.py on the bundled samples with random weights: the YAML it
    writes loads, records the weights it was fit for, and scores a batch."""
    import json
    import sys

    from tests.helpers import random_weights_config

    sys.path.insert(0, str(SAMPLES.parent / "scripts"))
    import fit_image_score

    config = random_weights_config(tmp_path)
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(json.dumps(config.model_dump()))
    out = tmp_path / "score.yaml"
    fit_image_score.main([str(SAMPLES), "--config", str(config_file), "--out", str(out)])
    fitted = load_score_model(str(out))
    assert fitted.fitted_for == model_versions(config)
    assert fitted.features == list(fit_image_score.DEFAULT_FEATURES)
    scored = config.model_copy(update={"image_score_model": str(out)})
    assert score_model(scored) == fitted
    # at the fit data's mean every standardised feature is 0: the score is the intercept's
    batch = {f: np.array([m]) for f, m in zip(fitted.features, fitted.mean, strict=True)}
    batch["score_copy_move"] = np.zeros(1)
    assert image_score(batch, scored)[0] == pytest.approx(expit(fitted.intercept), rel=1e-5)


def test_map_spread_comes_from_the_localizer_map(tmp_path):
    from tamperscan.stages import Localize
    from tests.helpers import random_weights_config

    config = random_weights_config(tmp_path)
    batch = Localize(config)(DecodeELA(config)(bytes_batch(list(good_images(2).values()))))
    spreads = feature(batch, "ts_std")
    for i in range(2):
        spread = batch["ts_map"][i].astype(np.float32).std()
        assert spreads[i] == pytest.approx(spread, abs=1e-3)
    stored = {**batch, "ts_std": np.array([0.25, 0.5])}  # a stored column wins
    assert feature(stored, "ts_std") == pytest.approx([0.25, 0.5])
