"""Keypoint copy-move detector: finds shifted and rotated clones, stays silent on clean
images, and as the graph's evidence stage FindCopyMove feeds the image score, the final map
and the reported mask."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tamperscan.batch import bytes_batch
from tamperscan.config import PipelineConfig
from tamperscan.copy_move import (
    CopyMoveOptions,
    _nearest,
    confidence,
    detect_copy_move,
    find_clones,
    passes,
    seed_correlation,
)
from tamperscan.graph import analyse, build_stages, final_map, final_mask, image_score
from tamperscan.stages import DecodeELA, FindCopyMove, JpegEvidence

SIZE = 384


def scene(seed: int = 0) -> np.ndarray:
    """A textured photo-like scene: multi-scale noise plus shapes (many SIFT keypoints,
    no repeated structure)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    for scale in (4, 16, 48):
        noise = rng.random((SIZE // scale + 2, SIZE // scale + 2, 3)).astype(np.float32)
        image += cv2.resize(noise, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) * 80
    for _ in range(25):
        centre = tuple(int(v) for v in rng.integers(0, SIZE, 2))
        colour = tuple(float(v) for v in rng.integers(0, 255, 3))
        cv2.circle(image, centre, int(rng.integers(5, 30)), colour, -1)
    return np.clip(image / 1.4, 0, 255).astype(np.uint8)


def paste(image: np.ndarray, src: tuple[int, int], dst: tuple[int, int], side: int,
          angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Copy a disc of diameter ``side`` from ``src`` to ``dst`` (top-left corners), rotated
    by ``angle``; returns the forgery and the source + target ground truth."""
    out = image.copy()
    patch = image[src[1]:src[1] + side, src[0]:src[0] + side]
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    patch = cv2.warpAffine(patch, rotation, (side, side), borderMode=cv2.BORDER_REFLECT)
    disc = np.zeros((side, side), np.uint8)
    cv2.circle(disc, (side // 2, side // 2), side // 2 - 2, 1, -1)
    region = out[dst[1]:dst[1] + side, dst[0]:dst[0] + side]
    region[disc > 0] = patch[disc > 0]
    truth = np.zeros(image.shape[:2], bool)
    truth[src[1]:src[1] + side, src[0]:src[0] + side] |= disc > 0
    truth[dst[1]:dst[1] + side, dst[0]:dst[0] + side] |= disc > 0
    return out, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_finds_shifted_and_rotated_clones_with_both_regions(angle):
    forged, truth = paste(scene(), (40, 50), (220, 230), 100, angle)
    found = detect_copy_move(forged)
    assert found.inliers >= CopyMoveOptions().min_inliers
    assert found.confidence >= 0.5
    assert iou(found.region >= 0.5, truth) > 0.5
    # both halves are marked, not only one
    assert (found.region[50:150, 40:140] > 0).mean() > 0.3
    assert (found.region[230:330, 220:320] > 0).mean() > 0.3


@pytest.mark.parametrize("scale", [0.75, 0.5])
def test_keypoints_on_a_smaller_image_give_the_clone_in_working_size_coordinates(scale):
    forged, truth = paste(scene(), (40, 50), (220, 230), 100)
    gray = cv2.cvtColor(forged, cv2.COLOR_RGB2GRAY)
    options = CopyMoveOptions(keypoint_scale=scale, min_inliers=4)
    model, src, dst = find_clones(gray, options)[0]
    # the pasted disc moved by (+180, +180): the map, and every matched pair, say so
    assert np.allclose(model[:, :2], np.eye(2), atol=0.05)
    assert np.allclose(model[:, 2], [180, 180], atol=2.0)
    assert np.allclose(dst - src, 180, atol=options.ransac_px)
    found = detect_copy_move(forged, options)
    assert found.confidence >= 0.5 and iou(found.region >= 0.5, truth) > 0.5


def test_correlation_check_separates_a_copy_from_look_alike_structure():
    """A pasted disc correlates ~1 with its source under the clone's map; the same disc with
    fresh pixel noise still gets consistent keypoint matches but not the correlation, so the
    check rejects it."""
    rng = np.random.default_rng(5)
    image = scene(3)
    forged, _ = paste(image, (40, 50), (220, 230), 100)
    lookalike = forged.astype(np.float32)
    lookalike[230:330, 220:320] += rng.normal(0, 16, (100, 100, 3))  # same shapes, new pixels
    lookalike = np.clip(lookalike, 0, 255).astype(np.uint8)
    options = CopyMoveOptions(min_inliers=3)
    for rgb, copied in ((forged, True), (lookalike, False)):
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        clones = find_clones(gray, options)
        assert clones, "RANSAC should find the matched structure in both images"
        model, _, dst = clones[0]
        correlation = seed_correlation(gray, model, dst, options.verify_window)
        assert (correlation >= options.verify_zncc) == copied, correlation
    assert detect_copy_move(forged).confidence >= 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_images_report_nothing(seed):
    found = detect_copy_move(scene(seed))
    assert found.confidence == 0.0
    assert not found.region.any()


def test_flat_tiny_and_disabled_inputs():
    for image in (np.full((SIZE, SIZE, 3), 128, np.uint8), np.zeros((8, 8, 3), np.uint8)):
        found = detect_copy_move(image)
        assert found.confidence == 0.0 and found.region.shape == image.shape[:2]
    forged, _ = paste(scene(), (40, 50), (220, 230), 100)
    off = detect_copy_move(forged, CopyMoveOptions(enabled=False))
    assert off.confidence == 0.0 and not off.region.any()


def test_deterministic():
    forged, _ = paste(scene(3), (30, 200), (250, 40), 90, 15.0)
    a, b = detect_copy_move(forged), detect_copy_move(forged)
    assert a.inliers == b.inliers and np.array_equal(a.region, b.region)


def test_nearest_neighbours_match_opencv_brute_force():
    desc = np.random.default_rng(0).random((300, 128), np.float32) * 100
    idx, dist = _nearest(desc, 4)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc, desc, k=5)
    want_idx = np.array([[m.trainIdx for m in row[1:]] for row in knn])
    want_dist = np.array([[m.distance for m in row[1:]] for row in knn])
    assert np.array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4)


def test_confidence_is_zero_below_the_threshold_and_rises_above():
    options = CopyMoveOptions(min_inliers=9, confidence_scale=10)
    assert confidence(8, options) == 0.0
    assert confidence(9, options) == pytest.approx(0.5)
    assert 0.5 < confidence(20, options) < confidence(60, options) < 1.0


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def find_copy_move(data: list[bytes], config: PipelineConfig | None = None) -> dict:
    """The graph's front and its CPU evidence stages on encoded images (the rules read every
    evidence column; the JPEG stage finds nothing in these PNGs)."""
    config = config or PipelineConfig()
    return JpegEvidence(config)(FindCopyMove(config)(DecodeELA(config)(bytes_batch(data))))


def test_stage_raises_score_and_marks_map():
    forged, truth = paste(scene(), (40, 50), (220, 230), 100)
    out = find_copy_move([png(forged)])
    assert out["status"][0] == "ok"
    assert out["score_copy_move"][0] >= 0.5 and out["t_copy_move"][0] > 0
    # decoded at 384 already: the map is at the localizer size, where the clone lies
    assert iou(out["cm_map"][0] >= 0.5, truth) > 0.5
    out.update(score_two_stream=np.array([0.1], np.float32),
               score_wcbnet=np.array([0.1], np.float32))
    clone = float(out["score_copy_move"][0])
    assert image_score(out)[0] == pytest.approx(1 - 0.9 * (1 - clone))  # noisy-OR
    # the clone's regions join the final map, over a cold localizer map
    out["ts_map"] = np.zeros((1, SIZE, SIZE), np.float16)
    heat = final_map(out, 0, 0.0)
    assert heat[truth].mean() > 0.8
    # a verified clone outranks the same net score without one, and never lowers a score
    out.update(score_two_stream=np.array([0.8], np.float32),
               score_wcbnet=np.array([0.8], np.float32))
    assert 0.8 < image_score(out)[0] < 1.0
    out["score_copy_move"] = np.zeros(1, np.float32)
    assert image_score(out)[0] == pytest.approx(0.8)


def test_reported_mask_is_the_clone_when_one_is_verified():
    config = PipelineConfig()
    heat = np.zeros((40, 40), np.float32)
    heat[:10] = 0.9  # a localizer hot spot elsewhere
    clone = np.zeros((40, 40), np.float32)
    clone[20:30, 20:30] = 1.0
    assert np.array_equal(final_mask(heat, True, config, [clone]), clone >= 0.5)
    # no clone found: the heatmap at the global threshold
    for regions in ([np.zeros_like(clone)], []):
        assert np.array_equal(final_mask(heat, True, config, regions),
                              heat >= config.mask_threshold)
    assert not final_mask(heat, False, config, [clone]).any()  # not tampered: no mask


def test_scan_row_reports_the_clone_as_its_mask():
    forged, truth = paste(scene(), (40, 50), (220, 230), 100)
    config = PipelineConfig(runtime={"backend": "torch", "precision": "fp32"})
    row = analyse(build_stages(config), bytes_batch([png(forged)], ["a.png"]))
    assert row["status"][0] == "ok" and row["tampered"][0]
    assert row["score_copy_move"][0] >= 0.5 and row["score"][0] >= row["score_copy_move"][0]
    mask = row["mask"][0]  # bool, at the original resolution
    assert mask.dtype == bool and mask.shape == truth.shape
    assert iou(mask, truth) > 0.5


def test_a_detector_failure_is_an_error_row_not_a_crash(monkeypatch):
    import tamperscan.stages.copy_move as stage

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(stage, "detect_copy_move", broken)
    out = find_copy_move([png(scene()), png(scene())])
    assert list(out["status"]) == ["error", "error"]
    assert all(e.startswith("internal: copy-move detection failed: RuntimeError")
               for e in out["error"])


def test_decision_rule_is_the_same_on_arrays_as_on_one_clone():
    """Calibration scores stored evidence with copy_move.passes on whole arrays; it must
    decide each clone as verified_clones does one at a time."""
    options = CopyMoveOptions(min_inliers=7, verify_zncc=0.9)
    n = np.array([2, 3, 6, 7, 7, 12])
    z = np.array([0.99, 0.98, 0.99, 0.91, 0.5, 0.95])
    together = passes(n, z, options)
    one_by_one = [bool(passes(int(a), float(b), options)) for a, b in zip(n, z, strict=True)]
    assert together.tolist() == one_by_one == [False, False, False, True, False, True]
    # verify_zncc 0 turns the correlation check off: the matches alone decide
    off = options.model_copy(update={"verify_zncc": 0.0})
    assert passes(n, z, off).tolist() == [False, False, False, True, True, True]
