"""Smoke tests of the benchmark scripts on a few images, so they cannot rot: every arm runs and
reports positive figures. No wall-clock assertions (the figures are meaningless at this size).
The benchmarks derive what they run from the scan graph (tamperscan.graph); the tests check
that too, and that no benchmark leans on the test suite or the CLI module."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import (
    cascade,
    cascade_calibrated,
    copy_move_matching,
    gpu,
    int8_fidelity,
    jpeg_cost,
    serve_load,
    shared_backbone,
    stages,
    throughput,
)
from benchmarks.graph_stages import GRAPH_NAMES, NAMES, worker_stages
from benchmarks.throughput_naive import NaiveScanner
from benchmarks.throughput_report import score_agreement
from tamperscan.graph import STAGES

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_benchmarks_import_neither_tests_nor_the_cli():
    for path in sorted(BENCHMARKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] != "tests", (path.name, name)
                assert not name.startswith("tamperscan.cli"), (path.name, name)


def test_timed_stages_are_the_graphs(tmp_path):
    """The arms time what a scan worker runs: read, the graph's stages in order, write."""
    assert len(GRAPH_NAMES) == len(STAGES) and len(set(NAMES)) == len(NAMES)
    assert NAMES[0] == "read" and NAMES[-1] == "write"
    assert {"decode", "copy_move", "jpeg", "nets", "score", "refine", "fuse"} <= set(NAMES)
    config, _ = throughput.pipeline_config(tmp_path)
    named = worker_stages(config.with_runtime(backend="torch"), tmp_path / "out")
    assert [type(stage) for _, stage in named[1:-1]] == list(STAGES)


@pytest.mark.slow  # starts Ray, twice
def test_throughput_all_arms(tmp_path, capsys):
    out = tmp_path / "throughput.json"
    result = throughput.main(["--images", "5", "--photos", "procedural", "--batch-size", "2",
                              "--bound-batch-sizes", "2", "--naive-threads", "1",
                              "--ray-warmup", "0", "--layouts", "fused", "staged",
                              "--out-json", str(out)])
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    for key in ("naive", "bound", "ray", "ratios", "machine", "markdown"):
        assert key in saved, key
    assert saved["naive"]["images"] == saved["ray"]["images"] == 5
    assert saved["ray"]["ok_rows"] == 5
    for value in (result["naive"]["images_per_s"], result["bound"]["images_per_s"],
                  result["ray"]["images_per_s"], result["ray"]["end_to_end_images_per_s"],
                  result["bound"]["sum_cpu_s_per_image"], *result["ratios"].values()):
        assert _positive(value), value
    assert set(result["ratios"]) == {"ray/naive", "ray/bound", "naive/bound",
                                     "ray/ray (staged layout)"}
    staged = result["ray_other"][0]
    assert (result["ray"]["layout"], staged["layout"]) == ("fused", "staged")
    assert staged["ok_rows"] == 5 and _positive(staged["images_per_s"])
    assert score_agreement(staged["scores"], result["ray"]["scores"]) < 1e-6
    assert list(result["bound"]["cpu_s_per_image"]) == list(NAMES)
    assert saved["naive"]["ok_rows"] == 5
    # Same graph: the naive loop (eager fp32) and the pipeline agree on every score --
    # exactly in fp32, within quantization error where `precision: auto` picked int8 here.
    int8 = any("int8" in b for b in result["bound"]["backends"].values())
    assert result["max_score_diff"] < (0.05 if int8 else 1e-3)
    for text in ("os.getloadavg()", "machine:", "versions:", "command:", "ray/naive",
                 "## Throughput"):
        assert text in printed, text


@pytest.mark.slow  # the whole graph over many images, four arms
def test_cascade_arms(tmp_path, capsys):
    out = tmp_path / "cascade.json"
    # a validation report whose forged images all score 0.2: keeping all of them refined
    # needs refine_threshold 0.2, keeping half of them too (the median is 0.2)
    report = tmp_path / "val.json"
    report.write_text(json.dumps({"images": [
        {"label": 1, "scores": {"final": 0.2}}, {"label": 1, "scores": {"final": 0.2}},
        {"label": 0, "scores": {"final": 0.9}}]}))
    result = cascade.main(["--images", "4", "--forged-fraction", "0.25", "--photos",
                           "procedural", "--batch-size", "2", "--out-json", str(out),
                           "--calibrate-on", str(report), "--recalls", "1.0"])
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert set(saved["arms"]) == {"shipped", "cascade", "refine-all", "cascade@100%"}
    arms = result["arms"]
    assert arms["cascade@100%"]["config"]["refine"]["threshold"] == pytest.approx(0.2)
    scores = np.array(arms["shipped"]["scores"])
    assert arms["cascade@100%"]["refined"] == int((scores >= 0.2).sum())
    assert "refine-all/cascade@100%" in result["ratios"]
    assert arms["refine-all"]["refined"] == 4  # refine everything means every image
    assert arms["shipped"]["refined"] == 0  # shipped cam_weight 0 skips refinement
    for arm in arms.values():
        assert arm["images"] == 4 and arm["failed"] == 0
        assert _positive(arm["seconds"]) and _positive(arm["cpu_s_per_image"])
    for value in result["ratios"].values():
        assert _positive(value)
    assert "## Cascade" in printed and "os.getloadavg()" in printed


def test_copy_move_matching(tmp_path, capsys):
    out = tmp_path / "cm.json"
    result = copy_move_matching.main(["--images", "8", "--photos", "procedural",
                                      "--out-json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["images"] == 8 and saved["first_neighbour_mismatches"] == 0
    for value in (*result["ms_per_image"].values(), result["nearest_speedup"]):
        assert _positive(value), value
    assert "## Copy-move detector cost" in capsys.readouterr().out


def test_gpu_benchmark_runs_on_cpu(tmp_path):
    """The device-call benchmark runs its CPU arms here (the GPU arms need CUDA)."""
    out = tmp_path / "gpu.json"
    result = gpu.main(["--device", "cpu", "--batches", "1", "--runs", "1",
                       "--engine-batches", "1", "--out", str(out)])
    assert json.loads(out.read_text())["machine"]["device"] == "cpu"
    assert {(r["net"], r["variant"]) for r in result["nets"]} == {
        (net, variant) for net in gpu.NETS for variant in ("eager fp32", "channels_last fp32")}
    assert all(_positive(r["images_per_s"]) for r in result["nets"])
    assert _positive(result["ela"][0]["ms_per_image"])
    assert {(r["net"], r["precision"], r["batch"]) for r in result["engines"]} == {
        (net, "fp32", 1) for net in gpu.NETS}
    assert all(_positive(r["images_per_s"]) for r in result["engines"])
    assert "| engine (NumPy in and out) |" in gpu.markdown(result)


def test_calibrated_cascade_saving_from_a_report(tmp_path, capsys):
    """Threshold at the forged scores' quantile, authentic share above it, saving by hand:
    forged 0.6-0.9 at 75 % recall -> threshold 0.675; one of three authentic images above it;
    (100 + 300) / (100 + (0.05 * 0.75 + 0.95 / 3) * 300) = 1.939."""
    images = [{"label": 1, "scores": {"final": s}} for s in (0.9, 0.8, 0.7, 0.6)]
    images += [{"label": 0, "scores": {"final": s}} for s in (0.1, 0.65, 0.95)]
    (tmp_path / "set.json").write_text(json.dumps({"dataset": "set", "images": images}))
    (tmp_path / "forged_only.json").write_text(json.dumps(
        {"dataset": "forged_only", "images": images[:4]}))
    [row] = cascade_calibrated.savings(json.loads((tmp_path / "set.json").read_text()),
                                       100, 300, [0.75])
    assert row["threshold"] == pytest.approx(0.675)
    assert row["authentic_refined"] == pytest.approx(1 / 3)
    assert row["saving"] == pytest.approx(400 / (100 + (0.05 * 0.75 + 0.95 / 3) * 300))
    lines = cascade_calibrated.main([str(tmp_path), "--front-ms", "100", "--refine-ms", "300",
                                     "--recalls", "0.75"])
    assert len(lines) == 3 and lines[2] == "| set | 0.67 / 33% / 1.94× |"


def test_naive_loop_scores_a_clone_as_the_pipeline_does(tmp_path):
    """The baseline must be the same pipeline, only naive: it runs the graph's stages, so its
    image score is the graph's noisy-OR of the nets and the copy-move confidence."""
    from PIL import Image

    from tests.test_copy_move import paste, scene

    forged, _ = paste(scene(), (40, 50), (220, 230), 100)
    Image.fromarray(forged).save(tmp_path / "clone.png")
    config, _ = throughput.pipeline_config(tmp_path)
    # a clone at exactly the reporting threshold (confidence 0.5), where the rules differ most
    detector = config.copy_move.model_copy(update={"confidence_scale": 1e9})
    times: dict[str, float] = {}
    row = NaiveScanner(config.model_copy(update={"copy_move": detector}))(
        tmp_path / "clone.png", times)
    assert list(times) == list(NAMES[:-1])  # every stage of the graph, timed; write at the end
    assert row["status"][0] == "ok" and row["score_copy_move"][0] == pytest.approx(0.5)
    nets = (row["score_two_stream"][0] + row["score_wcbnet"][0]) / 2
    assert row["score"][0] == pytest.approx(1 - (1 - nets) * 0.5, abs=1e-6)
    assert row["mask"][0].shape == (row["height"][0], row["width"][0])


def test_int8_fidelity(tmp_path, capsys):
    from pathlib import Path

    samples = sorted((Path(__file__).resolve().parents[1] / "samples" / "images").iterdir())[:3]
    (tmp_path / "MANIFEST.csv").write_text(
        "image,mask,label\n" + "".join(f"{p},,0\n" for p in samples))
    out = tmp_path / "fidelity.json"
    result = int8_fidelity.main([str(tmp_path), "--images", "3", "--out-json", str(out)])
    rows = {(r["net"], r["graph"]): r for r in json.loads(out.read_text())["rows"]}
    assert {net for net, _ in rows} == {"two_stream", "wcbnet"}
    shipped = [r for (net, graph), r in rows.items() if net == "two_stream" and "shipped" in graph]
    assert len(shipped) == 1 and 0 <= shipped[0]["p50"] <= shipped[0]["max"] < 0.5
    assert all(_positive(r["ms"]) for r in result["rows"])
    assert "## int8 fidelity" in capsys.readouterr().out


def test_stage_benchmark_times_every_graph_stage(capsys):
    rows = stages.main(["--batch-sizes", "1", "--backends", "torch", "--runs", "1",
                        "--image", "320x240"])
    assert [name for name, *_ in rows] == list(GRAPH_NAMES)
    assert {backend for name, backend, *_ in rows if name == "nets"} == {"torch"}
    assert all(_positive(seconds) for *_, seconds in rows)
    assert "vs torch b1" in capsys.readouterr().out


@pytest.mark.slow  # Ray Serve, deployed twice
def test_serve_load_both_modes(monkeypatch, capsys):
    monkeypatch.setenv("TAMPERSCAN_API_KEYS", serve_load.KEY)
    result = serve_load.main(["--concurrency", "1", "--requests", "1", "--min-requests", "2",
                              "--batch", "2", "--num-cpus", "2"])
    assert set(result) == {"unbatched c1", "batched c1"}
    for row in result.values():
        assert row["n"] == 2 and row["failures"] == 0 and _positive(row["rps"])
    assert "median over concurrencies" in capsys.readouterr().out


def test_jpeg_cost_times_the_jpeg_stage_against_the_rest_of_the_graph(capsys):
    result = jpeg_cost.main(["--count", "2", "--batch", "1"])
    assert _positive(result["graph_ms"]) and _positive(result["jpeg_ms"])
    assert result["ratio"] == pytest.approx(result["jpeg_ms"] / result["graph_ms"])
    assert "more CPU per image" in capsys.readouterr().out


def test_shared_backbone_times_both_layouts_and_checks_they_agree(capsys):
    result = shared_backbone.main(["--batch", "1", "--runs", "1", "--stage-backend", "torch"])
    assert all(_positive(v) for v in result.values())
    printed = capsys.readouterr().out
    assert "one encoder pass" in printed and "one shared graph" in printed
