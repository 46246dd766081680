"""`tamperscan explain`: every figure is written, at the image's aspect ratio, and with the
shipped weights the maps concentrate on a pasted region."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tamperscan.cli import app
from tamperscan.config import PipelineConfig
from tamperscan.evaluate import Evaluator
from tamperscan.explain import explain
from tamperscan.render import fit, heatmap_from_png
from tamperscan.train.synth import jpeg_bytes, jpeg_recompress
from tests.corpus import natural_image
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
            "region.png", "final_mask.png", "heatmap_values.png", "mask.png"
            } <= set(summary["files"])
    source = cv2.imread(str(SAMPLE))
    for name in set(summary["files"]) - {"heatmap_values.png"}:  # values: the localizer size
        figure = cv2.imread(str(out / name))
        assert figure is not None, name
        assert abs(figure.shape[1] / figure.shape[0] - source.shape[1] / source.shape[0]) < 0.02
    assert 0.0 <= summary["score"] <= 1.0


def _maps(out: Path, data: bytes, config: PipelineConfig) -> dict[str, np.ndarray]:
    """The final heatmap explain wrote as values, and the fused CAM it drew (from the same
    graph row), both at the image's size."""
    row = Evaluator(config).row(data)
    w, h = int(row["width"]), int(row["height"])
    final = heatmap_from_png((out / "heatmap_values.png").read_bytes())
    return {"final": fit(final, w, h), "cam": fit(row["cam"], w, h)}


def test_explain_maps_concentrate_on_the_pasted_region(tmp_path):
    """Shipped weights, a forgery with a clear trace: the host was JPEG-compressed at q70
    before an uncompressed region from another photo was pasted in and the result saved at q92,
    so everything but the pasted region is double-compressed (the aligned double-JPEG trace
    the training synthesis makes). The region is off-centre, and the same host saved the same
    way without the paste is the control: the maps must light up *because of* the paste, not
    from a position or content bias of the nets."""
    host = jpeg_recompress(natural_image(384, 512, seed=0), 70)
    donor = natural_image(384, 512, seed=100)
    truth = np.zeros(host.shape[:2], bool)
    truth[220:348, 320:480] = True  # 10 % of the image, bottom right
    forged = host.copy()
    forged[truth] = donor[truth]
    # shipped weights; torch: no one-off ONNX export
    config = PipelineConfig(runtime={"backend": "torch"})
    maps = {}
    for name, pixels in (("forged", forged), ("control", host)):
        data = jpeg_bytes(pixels, 92)
        explain(data, tmp_path / name, config)
        for figure, heat in _maps(tmp_path / name, data, config).items():
            assert heat.shape == truth.shape
            maps[name, figure] = heat

    final, control = maps["forged", "final"], maps["control", "final"]
    auc = roc_auc_score(truth.ravel(), final.ravel())
    assert auc > 0.85, f"final heatmap pixel AUC {auc:.3f}"
    assert final[truth].mean() - final[~truth].mean() > 0.12
    # The paste raised the map where it is: not there in the unforged control.
    assert final[truth].mean() - control[truth].mean() > 0.1
    assert roc_auc_score(truth.ravel(), control.ravel()) < auc - 0.2

    cam, cam_control = maps["forged", "cam"], maps["control", "cam"]
    cam_auc = roc_auc_score(truth.ravel(), cam.ravel())
    assert cam_auc > 0.8, f"fused CAM pixel AUC {cam_auc:.3f}"
    assert cam[truth].mean() - cam[~truth].mean() > 0.1
    assert roc_auc_score(truth.ravel(), cam_control.ravel()) < cam_auc - 0.2
