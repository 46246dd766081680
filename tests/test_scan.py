"""Bulk scan end to end on local Ray: S3 source with bad inputs, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from tamperscan.config import S3Options
from tamperscan.io import ResultSink, s3_filesystem
from tamperscan.pipeline import ScanResources, scan
from tamperscan.provenance import model_versions
from tests.corpus import make_corpus
from tests.helpers import decode_png, good_images, random_weights_config, read_results
from tests.reliability_report import expected_row, record_scan_rows
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = pytest.mark.slow  # a Ray cluster and an S3 server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_config(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("seaweed")).start()
    old = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_s3_bucket_with_bad_inputs_every_uri_once(ray_local, weights, s3, reliability):
    client = s3.client()
    client.create_bucket(Bucket="archive")
    corpus = make_corpus()
    expected = {}
    for item in corpus:
        client.put_object(Bucket="archive", Key=f"in/odd/{item.name}", Body=item.data)
        expected[f"s3://archive/in/odd/{item.name}"] = item.expect
    for key, data in good_images(50 - len(corpus) + 10).items():
        client.put_object(Bucket="archive", Key=f"in/{key}", Body=data)
        expected[f"s3://archive/in/{key}"] = "ok"
    assert len(expected) >= 50
    assert sum(v == "error" for v in expected.values()) >= 10

    # Credentials passed explicitly: the Ray workers started before this module set the
    # AWS_* environment, so they cannot take them from there.
    options = S3Options(endpoint_url=s3.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    summary = scan("s3://archive/in", "s3://archive/out", weights, options,
                   ScanResources(batch_size=8), show_progress=False)
    assert summary.total == len(expected)

    df = read_results("s3://archive/out", s3_filesystem(options))
    record_scan_rows(reliability, df, {f"s3://archive/in/odd/{i.name}": (
        f"corpus: {i.name}", expected_row(i)) for i in corpus}, "bulk (s3 source)")
    assert sorted(df["uri"]) == sorted(expected), "every input exactly once"
    for row in df.itertuples():
        assert row.status == expected[row.uri], (row.uri, row.error)
        if row.status == "error":
            assert row.error and ":" in row.error
        else:
            mask = decode_png(row.mask_png)
            assert mask.shape == (row.height, row.width)
            assert 0.0 <= row.score <= 1.0
            assert row.model_versions.count("@") == 3

    # A second run over the same output has nothing left to do and adds no rows.
    again = scan("s3://archive/in", "s3://archive/out", weights, options, show_progress=False)
    assert again.skipped_done == sum(v == "ok" for v in expected.values())
    df2 = read_results("s3://archive/out", s3_filesystem(options))
    assert sorted(df2["uri"]) == sorted(expected)

    # Other result-changing settings (as after new weights): nothing counts as done, every
    # URI is scanned again and appears once, with the new provenance.
    changed = weights.model_copy(update={"mask_threshold": 0.123})
    third = scan("s3://archive/in", "s3://archive/out", changed, options, show_progress=False)
    assert third.skipped_done == 0
    df3 = read_results("s3://archive/out", s3_filesystem(options))
    assert sorted(df3["uri"]) == sorted(expected), "every input exactly once"
    assert set(df3["model_versions"]) == {model_versions(changed)}


def test_killed_scan_resumes_without_duplicates(ray_local, weights, tmp_path):
    source = tmp_path / "in"
    for key, data in good_images(40).items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "out"
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(yaml.safe_dump(weights.model_dump()))
    cmd = [sys.executable, "-m", "tamperscan.cli", "scan", str(source), "--out", str(out),
           "--config", str(config_file), "--batch-size", "2", "--num-cpus", "2"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sink = ResultSink(str(out))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(sink.part_paths()) < 3 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the scan finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Ray's own processes run in sessions of their own, so a worker that was mid-batch when
    # the driver died may still write its (atomic) part: read once the output is quiet.
    quiet_since, seen = time.monotonic(), len(sink.part_paths())
    while time.monotonic() - quiet_since < 5 and time.monotonic() < deadline + 60:
        time.sleep(0.5)
        if len(sink.part_paths()) != seen:
            quiet_since, seen = time.monotonic(), len(sink.part_paths())
    partial = read_results(str(out))
    assert 0 < len(partial) < 41

    summary = scan(str(source), str(out), weights, show_progress=False)
    assert summary.skipped_done == (partial["status"] == "ok").sum()
    df = read_results(str(out))
    assert len(df) == 41 and df["uri"].is_unique
    assert (df["status"] == "error").sum() == 1
    assert not any(p.name.startswith(".tmp") for p in (out / "results").iterdir())


def test_fused_and_staged_layouts_write_the_same_rows(ray_local, weights, tmp_path):
    """The CPU default (every stage in one actor) and the GPU-style staged graph run the same
    stages: same URIs, statuses, errors, scores and masks."""
    from tamperscan.graph import STAGES, split
    from tamperscan.pipeline import _plan

    assert _plan(ScanResources())["layout"] == "fused"  # no GPU in this cluster
    assert _plan(ScanResources(gpus_per_actor=0.5))["layout"] == "staged"
    # GPUs get model batches of >= 32 (launch-bound below); CPUs keep batch_size.
    assert _plan(ScanResources(gpus_per_actor=0.5))["model_batch"] == 32
    assert _plan(ScanResources(layout="staged", batch_size=2))["model_batch"] == 2
    # Every actor pool (one per evidence stage, the tail) and a decode task fit at once.
    staged = _plan(ScanResources(layout="staged"))
    pools = len(split(STAGES)[1]) + 1
    assert pools * staged["cpus_per_actor"] + staged["task_cpus"] <= 2.0
    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in good_images(5).items():
        (folder / name.replace("/", "_")).write_bytes(data)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    frames = {}
    for layout in ("fused", "staged"):
        out = tmp_path / f"out-{layout}"
        # staged: the model stages batch 3 rows across the decoders' batches of 2
        summary = scan(str(folder), str(out), weights,
                       resources=ScanResources(batch_size=2, layout=layout,
                                               model_batch_size=3 if layout == "staged" else 0),
                       show_progress=False)
        assert summary.processed == 7
        frames[layout] = read_results(str(out)).sort_values("uri").reset_index(drop=True)
    fused, staged = frames["fused"], frames["staged"]
    assert list(fused["uri"]) == list(staged["uri"]) and len(fused) == 7
    assert list(fused["status"]) == list(staged["status"]) and (fused["status"] == "ok").sum() == 5
    assert list(fused["error"]) == list(staged["error"])
    ok = fused["status"] == "ok"
    assert abs(fused["score"][ok] - staged["score"][ok]).max() < 1e-6
    assert list(fused["mask_png"][ok]) == list(staged["mask_png"][ok])
    # the JPEG stage still reads the file's bytes, which the staged layout drops after it
    assert list(fused["jpeg_table"]) == list(staged["jpeg_table"])
    assert fused["jpeg_table"][ok].str.startswith(("ijg:", "nonstandard:")).any()


def test_compaction_prefers_ok_over_earlier_error(tmp_path):
    import pyarrow as pa

    sink = ResultSink(str(tmp_path))
    sink.write_part(pa.table({"uri": ["a", "b"], "status": ["error", "ok"],
                              "run_id": ["r1", "r1"]}), "r1")
    sink.write_part(pa.table({"uri": ["a"], "status": ["ok"], "run_id": ["r2"]}), "r2")
    sink.write_part(pa.table({"uri": ["c", "c"], "status": ["error", "error"],
                              "run_id": ["r2", "r2"]}), "r2")
    assert sink.compact() == 2
    index = sink.read_index().to_pylist()
    assert sorted((r["uri"], r["status"]) for r in index) == [("a", "ok"), ("b", "ok"),
                                                              ("c", "error")]
    assert isinstance(sink.fs, pafs.LocalFileSystem)
