"""Output-changing inference options: per-image mask rules (stages.mask_cutoff), localizer flip."""

from __future__ import annotations

import numpy as np
import pytest

from tamperscan.config import PipelineConfig
from tamperscan.stages import final_decision, mask_cutoff


def _dim_splice() -> tuple[np.ndarray, np.ndarray]:
    """A map whose forged square peaks at only 0.12 over a 0.02 background: ranked right,
    but below a global threshold of 0.15."""
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), bool)
    truth[16:40, 20:44] = True
    heat = np.where(truth, 0.12, 0.02) + rng.uniform(0, 0.01, truth.shape)
    return heat.astype(np.float32), truth


def test_absolute_rule_is_the_floor():
    heat, _ = _dim_splice()
    assert mask_cutoff(heat, "absolute", 0.15, 0.9) == 0.15


def test_relative_and_otsu_recover_a_dim_region_the_floor_misses():
    heat, truth = _dim_splice()
    assert not (heat >= mask_cutoff(heat, "absolute", 0.15)).any()
    for rule in ("relative", "otsu"):
        mask = heat >= mask_cutoff(heat, rule, 0.05, 0.5)
        assert np.array_equal(mask, truth), rule


def test_cutoff_never_below_the_floor():
    heat = np.full((32, 32), 0.01, np.float32)
    heat[:4, :4] = 0.04
    for rule in ("relative", "otsu"):
        assert mask_cutoff(heat, rule, 0.1, 0.5) == 0.1
    flat = np.full((8, 8), 0.7, np.float32)  # Otsu is undefined on one value
    assert mask_cutoff(flat, "otsu", 0.2) == 0.2


def test_relative_rule_follows_the_peak():
    heat, _ = _dim_splice()
    assert mask_cutoff(heat, "relative", 0.0, 0.5) == pytest.approx(0.5 * heat.max())
    assert mask_cutoff(2 * heat, "relative", 0.0, 0.5) == pytest.approx(heat.max())


def test_final_decision_uses_the_configured_rule():
    heat, truth = _dim_splice()
    relative = PipelineConfig(mask_rule="relative", mask_threshold=0.05, mask_ratio=0.5)
    assert np.array_equal(final_decision(heat, 0.9, relative), truth)
    assert not final_decision(heat, 0.9, PipelineConfig(mask_threshold=0.15)).any()
    assert not final_decision(heat, 0.1, relative).any()  # below tamper_threshold: no mask


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError):
        mask_cutoff(np.zeros((4, 4), np.float32), "median", 0.1)
    with pytest.raises(ValueError):
        PipelineConfig(mask_rule="median")


def test_localizer_flip_averages_the_mirrored_pass():
    """The mirrored pass is really run and mirrored back: flip mode equals the mean of the
    logits of a plain pass on the decoded inputs and of one on their mirror image."""
    import cv2
    from scipy.special import expit, logit

    from tamperscan.stages import DecodeELA, Localize, bytes_batch
    from tests.corpus import natural_image

    rgb = natural_image(160, 120, seed=3)
    data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    config = PipelineConfig(backend="torch")  # the shipped weights: random nets map flat
    decoded = DecodeELA(config)(bytes_batch([data]))
    mirrored = {**decoded, **{k: decoded[k][:, :, ::-1].copy() for k in ("rgb", "ela")}}
    plain = Localize(config)
    maps = [plain(b)["ts_map"][0].astype(np.float64) for b in (decoded, mirrored)]
    flipped = Localize(config.model_copy(update={"localizer_flip": True}))(decoded)
    expected = expit((logit(maps[0]) + logit(maps[1])[:, ::-1]) / 2)
    assert np.abs(maps[0] - maps[1][:, ::-1]).max() > 0.05  # the mirror pass differs
    np.testing.assert_allclose(flipped["ts_map"][0].astype(np.float64), expected, atol=2e-3)
