"""Output-changing inference options: the reported mask is the final heatmap at the one
global ``mask_threshold``, and only in images at or over ``tamper_threshold``
(`graph.final_mask`; per-image mask rules were measured and not adopted: MODEL_CARD.md).
That removed options are refused as unknown keys is tests/test_config.py's."""

from __future__ import annotations

import numpy as np

from tamperscan.config import PipelineConfig
from tamperscan.graph import final_mask


def _dim_splice() -> tuple[np.ndarray, np.ndarray]:
    """A map whose forged square peaks at only 0.12 over a 0.02 background: ranked right,
    but below a global threshold of 0.15."""
    rng = np.random.default_rng(0)
    truth = np.zeros((64, 64), bool)
    truth[16:40, 20:44] = True
    heat = np.where(truth, 0.12, 0.02) + rng.uniform(0, 0.01, truth.shape)
    return heat.astype(np.float32), truth


def test_reported_mask_is_the_heatmap_at_the_global_threshold():
    heat, truth = _dim_splice()
    low = PipelineConfig(mask_threshold=0.05)
    assert np.array_equal(final_mask(heat, True, low), truth)
    assert not final_mask(heat, True, PipelineConfig(mask_threshold=0.15)).any()
    assert not final_mask(heat, False, low).any()  # not tampered: no mask
