"""The evaluation harness: JSON shape, and metrics checked against values derived by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tamperscan.cli import app
from tamperscan.evaluate import METHODS, evaluate, read_manifest
from tamperscan.image_metrics import THRESHOLD_FIGURES
from tests.helpers import random_weights_config

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return random_weights_config(tmp_path_factory.mktemp("w"))


@pytest.fixture(scope="module")
def report(config):
    return evaluate(SAMPLES, config)


def test_report_shape(report):
    items = read_manifest(SAMPLES)
    assert report["dataset"] == "samples"
    assert report["n_forged"] == sum(i.label == 1 for i in items) > 0
    assert report["n_authentic"] == sum(i.label == 0 for i in items) > 0
    assert set(report["methods"]) == set(METHODS)
    for metrics in report["methods"].values():
        assert set(metrics) == {"pixel_f1", "pixel_f1_best", "pixel_auc", "image_auc",
                                *THRESHOLD_FIGURES}
        for value in metrics.values():
            assert 0.0 <= value <= 1.0


def test_all_tampered_baseline_matches_closed_form(report):
    """Predicting every pixel tampered: F1 = 2p/(1+p) per image (p = forged fraction), pixel
    AUC 0.5, image AUC 0.5, balanced accuracy 0.5."""
    expected = []
    for item in read_manifest(SAMPLES):
        if item.label == 1:
            p = (np.asarray(Image.open(item.mask).convert("L")) > 127).mean()
            expected.append(2 * p / (1 + p))
    m = report["methods"]["all_tampered"]
    assert m["pixel_f1"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert m["pixel_f1_best"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert m["pixel_auc"] == pytest.approx(0.5)
    assert m["image_auc"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)


def test_best_threshold_f1_is_at_least_fixed_threshold_f1(report):
    for method, m in report["methods"].items():
        assert m["pixel_f1_best"] >= m["pixel_f1"] - 1e-9, method


def test_cli_writes_json_and_markdown(config, tmp_path):
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(json.dumps(config.model_dump()))  # JSON is valid YAML
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["evaluate", str(SAMPLES), "--out", str(out), "--config",
                                      str(config_file), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "| all_tampered |" in result.output
    assert json.loads(out.read_text())["n_forged"] + json.loads(out.read_text())[
        "n_authentic"] == 3


def test_per_image_records_reproduce_the_summary(report, config):
    from tamperscan.evaluate import summarise_records

    items = read_manifest(SAMPLES)
    assert [r["image"] for r in report["images"]] == [i.name for i in items]
    assert all((r["pixel"] is None) == (r["label"] == 0) for r in report["images"])
    again = summarise_records(report["images"], config.tamper_threshold)
    assert again == report["methods"]


def test_images_the_graph_cannot_score_are_listed_not_dropped(config, tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    good = next(i for i in read_manifest(SAMPLES) if i.label == 0)
    (folder / "good.png").write_bytes(good.image.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    (folder / "MANIFEST.csv").write_text("image,mask,label\ngood.png,,0\nbroken.jpg,,0\n")
    report = evaluate(folder, config)
    assert report["n_scored"] == 1
    assert [e["image"] for e in report["errors"]] == ["broken.jpg"]
    assert report["errors"][0]["error"].startswith(("unsupported:", "corrupt:"))
