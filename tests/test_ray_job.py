"""`ray job submit` of jobs/scan.py against a local Ray head started with `ray start --head`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import good_images, random_weights_config, read_results
from tests.s3server import free_port

pytestmark = pytest.mark.slow  # a Ray cluster and `ray job submit`

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _ray(*args: str, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture
def ray_head(tmp_path):
    if shutil.which("ray", path=str(BIN)) is None:
        pytest.skip("ray CLI not installed")
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    started = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                   "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={dashboard}", "--disable-usage-stats", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    yield {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}"}
    _ray("stop", "--force", env=env, timeout=120)


def test_job_submit_scans_a_folder(ray_head, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for key, data in good_images(6).items():
        (source / Path(key).name).write_bytes(data)
    (source / "notes.jpg").write_text("not an image")
    config = random_weights_config(tmp_path)
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump()))
    out = tmp_path / "out"
    submitted = _ray("job", "submit", "--working-dir", str(REPO), "--runtime-env-json",
                     '{"excludes": [".venv", ".git", "runs", "scan-results"]}', "--",
                     sys.executable, "jobs/scan.py", str(source), "--out", str(out),
                     "--config", str(config_file), "--batch-size", "4",
                     env=ray_head, timeout=600)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert re.search(r"Job '\S+' succeeded", submitted.stdout + submitted.stderr)
    df = read_results(str(out))
    assert len(df) == 7 and df["uri"].is_unique
    assert set(df[df["status"] == "error"]["uri"]) == {str(source / "notes.jpg")}
