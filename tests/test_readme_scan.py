"""The README's main command: a real scan of the bundled samples with the shipped weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tamperscan.config import PipelineConfig, model_path

pytestmark = pytest.mark.slow  # the README commands on a local Ray

REPO = Path(__file__).resolve().parents[1]


def test_shipped_weights_exist_and_load():
    config = PipelineConfig()
    for weights in (config.two_stream_weights, config.wcbnet_weights):
        assert model_path(weights).exists(), f"shipped weights missing: {weights}"


def test_scan_of_bundled_samples(tmp_path):
    out = tmp_path / "scan-results"
    cli = Path(sys.executable).with_name("tamperscan")
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    done = subprocess.run([str(cli), "scan", "samples/images", "--out", str(out), "--heatmaps"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "flagged as tampered" in done.stdout and "results:" in done.stdout
    images = sorted(str(p.resolve()) for p in (REPO / "samples" / "images").iterdir())
    df = pd.read_parquet(out / "results")
    assert sorted(df["uri"]) == images
    assert (df["status"] == "ok").all()
    assert df["score"].between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": len(images)}
    # The verdict comes from the shipped operating point, stated with the results; the
    # bundled authentic samples are no longer all flagged.
    assert summary["tamper_threshold"] == PipelineConfig().tamper_threshold
    assert summary["operating_point"]["target_false_alarm_rate"] == 0.05
    assert "operating point:" in done.stdout
    authentic = df[df["uri"].str.contains("/authentic_")]
    assert len(authentic) == 3 and not authentic["tampered"].all()
    for path in df["heatmap_path"].dropna():
        assert (out / path).stat().st_size > 0
