"""`tamperscan explain`: every figure is written, at the image's aspect ratio."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from typer.testing import CliRunner

from tamperscan.cli import app
from tests.helpers import random_weights_config

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "images" / "splice_000.jpg"


def test_explain_writes_every_overlay(tmp_path):
    config = random_weights_config(tmp_path)
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(json.dumps(config.model_dump()))
    out = tmp_path / "explain"
    result = CliRunner().invoke(app, ["explain", str(SAMPLE), "--out", str(out), "--config",
                                      str(config_file)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "explain.json").read_text())
    assert {"cam_block2.png", "cam_block3.png", "cam_block4.png", "cam_fused.png", "ela.png",
            "region.png", "final_mask.png"} <= set(summary["files"])
    source = cv2.imread(str(SAMPLE))
    for name in summary["files"]:
        figure = cv2.imread(str(out / name))
        assert figure is not None, name
        assert abs(figure.shape[1] / figure.shape[0] - source.shape[1] / source.shape[0]) < 0.02
    assert 0.0 <= summary["score"] <= 1.0
