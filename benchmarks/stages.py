"""Images/s of each stage of the scan graph, per inference backend and batch size.

Usage: .venv/bin/python benchmarks/stages.py [--batch-sizes 1 4 8]
       [--backends torch onnxruntime onnxruntime/int8] [--threads 1] [--runs 3] [--image 1024x768]

Times the stages of ``tamperscan.graph.build_stages`` one at a time, in the graph's order:
the input batch of a stage is the previous stage's output, then the stage is called once to
warm up and ``--runs`` times; images/s = batch size / median seconds per call. The model
stage (``kind`` "model": Nets, the localizer and WCBnet) runs once per backend
(``runtime.backend`` / ``runtime.precision``); the others do not depend on it. The cascade is opened
(``refine.threshold`` 0, ``refine.cam_weight`` 0.5) so every row is refined: the refine
figure is the cost per *refined* image (the shipped cascade skips most rows). Weights:
models/*.safetensors when present, else seeded random weights of the same nets (speed does not
depend on the values). Ratios are against the same stage's torch batch-1 figure measured in
the same run. One thread per backend by default: on a small shared box more threads than free
cores make every backend slower.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.graph_stages import stage_name  # noqa: E402
from benchmarks.machine_info import load_average, machine_info, print_header  # noqa: E402
from benchmarks.model_weights import with_weights  # noqa: E402
from tamperscan.batch import Batch, bytes_batch  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.fixtures import natural_image  # noqa: E402
from tamperscan.graph import STAGES, build_stages  # noqa: E402

Row = tuple[str, str, int, float]  # (stage, backend, batch, seconds per call)


def run_timed(stage: Callable[[Batch], Batch], batch: Batch, runs: int) -> tuple[float, Batch]:
    """(median seconds per call, the stage's output). The first call is the warm-up
    (allocators, oneDNN / ORT kernel caches) and yields the next stage's input."""
    output = stage(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        stage(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


@cache
def jpeg_bytes(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(natural_image(height, width, seed)).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def jpeg_batch(count: int, width: int, height: int) -> Batch:
    """Photo-like JPEGs (quality 92), as ReadBytes hands them to the graph."""
    return bytes_batch([jpeg_bytes(width, height, i) for i in range(count)],
                       [f"bench/{i}.jpg" for i in range(count)])


def base_config(threads: int, folder: Path) -> tuple[PipelineConfig, str]:
    """The shipped config with the cascade open (every row refined), ``threads`` threads."""
    config = PipelineConfig.model_validate({"refine": {"threshold": 0.0, "cam_weight": 0.5},
                                            "runtime": {"threads": threads}})
    return with_weights(config, folder)


def graph_variants(config: PipelineConfig, backends: list[str]) -> list[dict[str, Callable]]:
    """The graph's stages in order, each as {backend: stage}: one per ``backend[/precision]``
    for the model stages, one ("-") for the others."""
    variants: list[dict[str, Callable]] = [{} for _ in STAGES]
    for spec in backends:
        backend, _, precision = spec.partition("/")
        stages = build_stages(config.with_runtime(backend=backend, precision=precision or "fp32"))
        for i, stage in enumerate(stages):
            if stage.kind != "model":
                variants[i].setdefault("-", stage)
                continue
            ran = {engine.name for engine in stage.engines.values()}
            if ran != {backend}:
                raise SystemExit(f"{stage_name(stage)} ran on {sorted(ran)}, not {backend}")
            variants[i][spec] = stage
    return variants


def measure(variants: list[dict[str, Callable]], batch: Batch, runs: int) -> list[Row]:
    """Every stage on ``batch``, in order; the last variant's output feeds the next stage."""
    rows, size = [], len(batch["uri"])
    for stages in variants:
        for backend, stage in stages.items():
            seconds, output = run_timed(stage, batch, runs)
            rows.append((stage_name(stage), backend, size, seconds))
        batch = output
    return rows


def report(rows: list[Row]) -> None:
    baseline = {stage: batch / seconds for stage, backend, batch, seconds in rows
                if batch == 1 and backend in ("torch", "-")}
    print(f"{'stage':<12}{'backend':<18}{'batch':>6}{'ms/image':>10}{'images/s':>10}"
          f"{'vs torch b1':>13}")
    order = [stage_name(stage) for stage in STAGES]
    for stage, backend, batch, seconds in sorted(rows, key=lambda r: (order.index(r[0]), r[1],
                                                                       r[2])):
        rate = batch / seconds
        ratio = f"{rate / baseline[stage]:.2f}x" if stage in baseline else "n/a"
        print(f"{stage:<12}{backend:<18}{batch:>6}{1e3 / rate:>10.1f}{rate:>10.2f}{ratio:>13}")


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--backends", nargs="+",
                        default=["torch", "onnxruntime", "onnxruntime/int8"],
                        help="backend[/precision]; precision defaults to fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="1024x768", help="WIDTHxHEIGHT of the test JPEGs")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.image.lower().split("x"))
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    print_header(machine_info([sys.argv[0] if argv is None else "benchmarks/stages.py",
                               *(sys.argv[1:] if argv is None else argv)]))
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            config, weights = base_config(args.threads, Path(folder))
            print(f"weights: {weights} | images {width}x{height} JPEG | {args.threads} "
                  f"thread(s) | median of {args.runs} runs after 1 warm-up")
            variants = graph_variants(config, args.backends)
            for size in args.batch_sizes:
                rows += measure(variants, jpeg_batch(size, width, height), args.runs)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    one, five, _ = load_average()
    print(f"os.getloadavg() at end: {one:.2f} {five:.2f}")
    report(rows)
    return rows


if __name__ == "__main__":
    main()
