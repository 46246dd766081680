"""Segment-and-choose similarity and the Bayesian fusion."""

import numpy as np
import pytest

from tamperscan.refine.fusion import (
    RefineResult,
    bayesian_fusion,
    choose_region,
    inner_distance,
    refine_cam,
    region_similarity,
)

SIZE = 128


def _disk(center: tuple[int, int], radius: float, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _blob(center: tuple[int, int], sigma: float, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma**2))


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """CAM blob on a planted region among distractors; returns (masks, cam, true index)."""
    rng = np.random.default_rng(seed)
    center = (int(rng.integers(35, 93)), int(rng.integers(35, 93)))
    radius = float(rng.uniform(12, 18))
    cam = _blob(center, radius / 2) + 0.05 * rng.random((SIZE, SIZE))
    cam /= cam.max()
    planted = _disk(center, radius)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    far = np.abs(xx - center[1]) > 2.5 * radius  # large region away from the blob
    near = far | (np.abs(yy - center[0]) > 2.5 * radius)
    touching = _disk((center[0], center[1] + int(2 * radius)), radius) & ~planted  # shares an edge
    tiny = _disk(center, 1.5)  # highest mean CAM, but no interior
    half = yy < center[0] + radius  # contains the blob plus a lot of cold area
    full = np.ones((SIZE, SIZE), dtype=bool)
    empty = np.zeros((SIZE, SIZE), dtype=bool)
    masks = np.stack([far, touching, tiny, half, planted, full, empty, near & ~planted])
    return masks, cam, 4


def test_inner_distance_counts_the_image_edge_as_boundary():
    square = np.zeros((5, 5), dtype=bool)
    square[1:4, 1:4] = True
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = 1.0
    expected[2, 2] = 2.0
    np.testing.assert_allclose(inner_distance(square), expected)
    np.testing.assert_allclose(inner_distance(np.ones((3, 3), dtype=bool)), expected[1:4, 1:4])


def test_similarity_formula_on_a_hand_computed_case():
    square = np.zeros((1, 5, 5), dtype=bool)
    square[0, 1:4, 1:4] = True
    cam = np.ones((5, 5))
    cam[2, 2] = 0.5
    # sum(D * A) = 8 ring pixels * 1 * 1 + centre 2 * 0.5 = 9; area 9
    np.testing.assert_allclose(region_similarity(square, cam), [1.0])


@pytest.mark.parametrize("seed", range(8))
def test_similarity_picks_the_region_holding_the_cam_blob(seed):
    masks, cam, truth = _scene(seed)
    scores = region_similarity(masks, cam)
    assert scores.shape == (len(masks),)
    assert scores[6] == -np.inf  # the empty mask can never win
    index, region = choose_region(masks, cam)
    assert index == truth
    np.testing.assert_array_equal(region, masks[truth])


def test_choose_region_without_candidates():
    cam = np.random.default_rng(0).random((16, 20))
    for masks in (np.zeros((0, 16, 20), dtype=bool), np.zeros((3, 16, 20), dtype=bool)):
        index, region = choose_region(masks, cam)
        assert index == -1
        assert region.shape == (16, 20) and region.dtype == bool and not region.any()


def test_shape_mismatch_and_nan_are_rejected():
    with pytest.raises(ValueError):
        region_similarity(np.ones((2, 8, 8), dtype=bool), np.ones((8, 9)))
    with pytest.raises(ValueError):
        region_similarity(np.ones((2, 8, 8), dtype=bool), np.full((8, 8), np.nan))
    with pytest.raises(ValueError):
        bayesian_fusion(np.ones((8, 8)), np.ones((8, 9), dtype=bool))


def test_posterior_stays_in_unit_interval_on_random_inputs():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        shape = tuple(int(v) for v in rng.integers(1, 40, size=2))
        kind = seed % 4
        cam = rng.random(shape)
        if kind == 1:  # saturated values
            cam = rng.choice([0.0, 1.0], size=shape)
        elif kind == 2:  # out-of-range values are clipped, not trusted
            cam = rng.normal(0.5, 2.0, size=shape)
        mask = rng.random(shape) < rng.choice([0.0, 0.01, 0.5, 0.99, 1.0])
        heat = bayesian_fusion(cam, mask)
        assert heat.shape == shape and heat.dtype == np.float32
        assert np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_fusion_moves_the_cam_towards_the_chosen_mask(seed):
    masks, cam, truth = _scene(seed)
    mask = masks[truth]
    heat = bayesian_fusion(cam, mask)
    hot_inside = mask & (cam > 0.5)
    assert hot_inside.any()
    assert heat[hot_inside].mean() > cam[hot_inside].mean() + 0.01
    assert heat[~mask].mean() < cam[~mask].mean()


def test_fusion_discounts_a_mask_that_misses_the_cam():
    cam = _blob((30, 30), 6)
    mask = _disk((100, 100), 12)
    heat = bayesian_fusion(cam, mask)
    assert heat[mask].mean() <= cam[mask].mean()
    assert heat.max() <= cam.max() + 1e-6


@pytest.mark.parametrize("mask_kind", ["empty", "full", "disk"])
@pytest.mark.parametrize("cam_kind", ["zeros", "ones", "blob"])
def test_degenerate_inputs_stay_finite(cam_kind, mask_kind):
    cam = {"zeros": np.zeros((SIZE, SIZE)), "ones": np.ones((SIZE, SIZE))}.get(
        cam_kind, _blob((64, 64), 10)
    )
    mask = {"empty": np.zeros((SIZE, SIZE), bool), "full": np.ones((SIZE, SIZE), bool)}.get(
        mask_kind, _disk((64, 64), 20)
    )
    heat = bayesian_fusion(cam, mask)
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    if cam_kind in ("zeros", "ones") or mask_kind in ("empty", "full"):
        # no information in the mask (or a certain prior): the posterior is the prior
        np.testing.assert_allclose(heat, cam, atol=1e-5)


def test_refine_cam_end_to_end():
    masks, cam, truth = _scene(3)
    result = refine_cam(cam, masks)
    assert isinstance(result, RefineResult)
    assert result.region_index == truth
    np.testing.assert_array_equal(result.region_mask, masks[truth])
    np.testing.assert_allclose(result.similarities, region_similarity(masks, cam))
    np.testing.assert_allclose(result.heatmap, bayesian_fusion(cam, masks[truth]))


def test_refine_cam_with_no_regions_returns_the_cam():
    cam = np.random.default_rng(1).random((24, 32)) * 1.2
    result = refine_cam(cam, np.zeros((0, 24, 32), dtype=bool))
    assert result.region_index == -1 and not result.region_mask.any()
    assert result.similarities.shape == (0,)
    np.testing.assert_allclose(result.heatmap, np.clip(cam, 0, 1), rtol=1e-6)
