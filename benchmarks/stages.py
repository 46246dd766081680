"""Images/s of each pipeline stage, per inference backend and batch size.

Usage: .venv/bin/python benchmarks/stages.py [--batch-sizes 1 4 8]
       [--backends torch onnxruntime onnxruntime/int8] [--threads 1] [--runs 3] [--image 1024x768]

Times the stage classes of tamperscan/stages.py one at a time: the input batch of a stage is
prepared once by the stages before it, then the stage is called once to warm up and ``--runs``
times; images/s = batch size / median seconds per call. Localize and Detect run once per
backend (through ``PipelineConfig.backend``); decode+ELA, refine and finalize do not depend on
it. Refine runs with refine_threshold=0 so every row is refined: its figure is the cost per
*refined* image (the cascade skips most rows). Weights: models/*.safetensors when present, else
seeded random weights of the default configs (speed does not depend on the values). Ratios are
against the same stage's torch batch-1 figure measured in the same run. One thread per backend
by default: on a small shared box more threads than free cores make every backend slower.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ holds the synthetic photos and random-weight helpers

from tamperscan.config import PipelineConfig, model_path  # noqa: E402
from tamperscan.stages import DecodeELA, Detect, Finalize, Localize, Refine, bytes_batch  # noqa: E402
from tamperscan.sysinfo import cpu_model  # noqa: E402
from tests.corpus import natural_image  # noqa: E402
from tests.helpers import random_weights_config  # noqa: E402

Batch = dict[str, np.ndarray]
MODEL_STAGES = {"localize": Localize, "detect": Detect}


def versions() -> str:
    import onnxruntime

    return (f"python {platform.python_version()} | torch {torch.__version__} | "
            f"onnxruntime {onnxruntime.__version__} | numpy {np.__version__} | "
            f"opencv {cv2.__version__}")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


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
    """Photo-like JPEGs (quality 92), as ReadBytes hands them to decode+ELA."""
    return bytes_batch([jpeg_bytes(width, height, i) for i in range(count)],
                       [f"bench/{i}.jpg" for i in range(count)])


def base_config(threads: int, folder: Path) -> PipelineConfig:
    shipped = PipelineConfig(torch_threads=threads, refine_threshold=0.0)
    if all(model_path(w).exists() for w in (shipped.two_stream_weights,
                                            shipped.wcbnet_weights)):
        return shipped
    return random_weights_config(folder, torch_threads=threads, refine_threshold=0.0)


def model_stage(name: str, config: PipelineConfig, backend: str):
    """``backend`` is a backend name, optionally with a precision: "onnxruntime/int8"."""
    backend, _, precision = backend.partition("/")
    stage = MODEL_STAGES[name](config.model_copy(update={"backend": backend,
                                                         "precision": precision or "fp32"}))
    engine = getattr(stage, "engine", None)
    if engine is not None and engine.name != backend:
        raise SystemExit(f"{name} ran on {engine.name}, not {backend}")
    return stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--backends", nargs="+",
                        default=["torch", "onnxruntime", "onnxruntime/int8"],
                        help="backend[/precision]; precision defaults to fp32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="1024x768", help="WIDTHxHEIGHT of the test JPEGs")
    args = parser.parse_args()
    width, height = (int(v) for v in args.image.lower().split("x"))
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_model()} | logical cores: {os.cpu_count()} | threads: {args.threads}")
    print(versions())
    print(f"start: {load()}")
    backends = list(args.backends)
    if "backend" not in PipelineConfig.model_fields:
        print("note: this PipelineConfig has no `backend` field; model stages run on the "
              "stages' built-in torch path only")
        backends = ["torch"]

    rows = []  # (stage, backend, batch, seconds per call)
    with tempfile.TemporaryDirectory() as folder:
        config = base_config(args.threads, Path(folder))
        print(f"weights: {config.two_stream_weights}, {config.wcbnet_weights} | "
              f"images {width}x{height} JPEG | median of {args.runs} runs after 1 warm-up")
        decode, refine, finalize = DecodeELA(config), Refine(config), Finalize(config)
        models = {(n, b): model_stage(n, config, b) for b in backends for n in MODEL_STAGES}
        for size in args.batch_sizes:
            seconds, decoded = run_timed(decode, jpeg_batch(size, width, height), args.runs)
            rows.append(("decode+ela", "-", size, seconds))
            for backend in backends:
                batch = decoded
                for name in MODEL_STAGES:
                    seconds, batch = run_timed(models[name, backend], batch, args.runs)
                    rows.append((name, backend, size, seconds))
            seconds, refined = run_timed(refine, batch, args.runs)
            rows.append(("refine", "-", size, seconds))
            rows.append(("finalize", "-", size, run_timed(finalize, refined, args.runs)[0]))
    print(f"end: {load()}")
    report(rows)


def report(rows: list[tuple[str, str, int, float]]) -> None:
    baseline = {stage: batch / seconds for stage, backend, batch, seconds in rows
                if batch == 1 and backend in ("torch", "-")}
    print(f"{'stage':<12}{'backend':<18}{'batch':>6}{'ms/image':>10}{'images/s':>10}"
          f"{'vs torch b1':>13}")
    order = ["decode+ela", *MODEL_STAGES, "refine", "finalize"]
    for stage, backend, batch, seconds in sorted(rows, key=lambda r: (order.index(r[0]), r[1],
                                                                       r[2])):
        rate = batch / seconds
        ratio = f"{rate / baseline[stage]:.2f}x" if stage in baseline else "n/a"
        print(f"{stage:<12}{backend:<18}{batch:>6}{1e3 / rate:>10.1f}{rate:>10.2f}{ratio:>13}")


if __name__ == "__main__":
    main()
