"""Paired bootstrap comparison of evaluation reports (tamperscan.compare)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tamperscan.cli import app
from tamperscan.compare import compare, load_reports
from tamperscan.evaluate import METHODS


def report(dataset: str, labels, scores, pixel) -> dict:
    """A minimal report: per-image records (every method gets the same values)."""
    images = []
    for i, (label, score) in enumerate(zip(labels, scores, strict=True)):
        images.append({"image": f"{dataset}/{i}.png", "label": int(label),
                       "scores": {m: float(score) for m in METHODS},
                       "pixel": ({m: [float(v) for v in pixel[i]] for m in METHODS}
                                 if label == 1 else None)})
    return {"dataset": dataset, "n_forged": int(sum(labels)),
            "n_authentic": int(len(labels) - sum(labels)), "methods": {}, "images": images}


def random_report(rng, dataset="a", n_pos=40, n_neg=30, shift=0.0):
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    scores = rng.uniform(size=len(labels)) + 0.3 * labels
    pixel = rng.uniform(0.2, 0.8, size=(len(labels), 3)) + shift
    return report(dataset, labels, scores, pixel)


def test_identical_reports_differ_by_exactly_zero():
    base = {"a": random_report(np.random.default_rng(0))}
    result = compare(base, base, samples=500)
    for d in result["a"].values():
        assert (d.diff, d.low, d.high, d.p_better) == (0.0, 0.0, 0.0, 0.5)


def test_constant_pixel_gain_has_a_degenerate_interval():
    base = random_report(np.random.default_rng(1))
    better = json.loads(json.dumps(base))
    for record in better["images"]:
        if record["pixel"]:
            record["pixel"] = {m: [v + 0.1 for v in vals] for m, vals in record["pixel"].items()}
    d = compare({"a": base}, {"a": better}, samples=500)["a"]["pixel_f1"]
    assert d.diff == pytest.approx(0.1)
    assert d.low == pytest.approx(0.1) and d.high == pytest.approx(0.1)
    assert d.p_better == 1.0


def test_full_sample_image_auc_is_sklearns():
    rng = np.random.default_rng(2)
    base, cand = random_report(rng), random_report(rng)
    d = compare({"a": base}, {"a": cand}, samples=200)["a"]["image_auc"]
    for r, value in ((base, d.base), (cand, d.candidate)):
        labels = [x["label"] for x in r["images"]]
        scores = [x["scores"]["final"] for x in r["images"]]
        assert value == pytest.approx(roc_auc_score(labels, scores))


def test_interval_width_matches_the_standard_error():
    """Per-image differences ~ N(0.05, 0.1²) over 400 forged images: the 95 % interval of
    the mean difference should be about ±1.96 · 0.1 / √400 around the observed gain."""
    rng = np.random.default_rng(3)
    n = 400
    labels = np.ones(n)
    base_pix = rng.uniform(0.3, 0.6, size=(n, 3))
    gain = rng.normal(0.05, 0.1, size=n)
    base = report("a", labels, np.zeros(n), base_pix)
    cand = report("a", labels, np.zeros(n), base_pix + gain[:, None])
    d = compare({"a": base}, {"a": cand}, samples=4000)["a"]["pixel_f1"]
    se = gain.std(ddof=1) / np.sqrt(n)
    assert d.diff == pytest.approx(gain.mean())
    assert (d.high - d.low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert d.low < gain.mean() < d.high
    assert "image_auc" not in compare({"a": base}, {"a": cand}, samples=100)["a"]


def test_mean_over_datasets_skips_sets_without_authentic_images():
    rng = np.random.default_rng(4)
    only_forged = random_report(rng, "b", n_neg=0)
    base = {"a": random_report(rng), "b": only_forged}
    cand = {"a": random_report(rng), "b": random_report(rng, "b", n_neg=0, shift=0.05)}
    result = compare(base, cand, samples=300)
    assert "image_auc" not in result["b"]
    assert result["mean"]["image_auc"].base == pytest.approx(result["a"]["image_auc"].base)
    assert result["mean"]["pixel_auc"].candidate == pytest.approx(
        (result["a"]["pixel_auc"].candidate + result["b"]["pixel_auc"].candidate) / 2)


def test_reports_on_different_images_or_sets_are_refused():
    rng = np.random.default_rng(5)
    a = random_report(rng)
    fewer = json.loads(json.dumps(a))
    fewer["images"] = fewer["images"][1:]
    with pytest.raises(ValueError, match="different images"):
        compare({"a": a}, {"a": fewer})
    with pytest.raises(ValueError, match="different datasets"):
        compare({"a": a}, {"b": a})
    assert set(compare({"a": a, "c": a}, {"a": a}, samples=100)) == {"a"}  # common sets only


def test_cli_compares_folders_and_explains_old_reports(tmp_path):
    rng = np.random.default_rng(6)
    for folder, shift in (("base", 0.0), ("cand", 0.1)):
        (tmp_path / folder).mkdir()
        for name in ("a", "b"):
            r = random_report(np.random.default_rng(7), name, shift=shift)
            (tmp_path / folder / f"{name}.json").write_text(json.dumps(r))
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "base"), str(tmp_path / "cand"),
                                      "--samples", "200"])
    assert result.exit_code == 0, result.output
    assert "| mean | pixel_f1 |" in result.output and "+0.100" in result.output
    old = random_report(rng)
    del old["images"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(random_report(rng)))
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "old.json"),
                                      str(tmp_path / "new.json")])
    assert result.exit_code == 2 and "per-image records" in result.output
    assert load_reports(tmp_path / "new.json").keys() == {"a"}
