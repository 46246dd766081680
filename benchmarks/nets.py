"""Per-image CPU forward time of both nets, paper vs default config (random weights).

Usage: .venv/bin/python benchmarks/nets.py [--runs 5] [--threads N] [--onnx]

Batch 1, eval mode, torch.no_grad; the median of ``--runs`` timed runs after one warm-up.
The paper config of each architecture is the baseline measured in the same run; the table
reports how much faster the default config is. ``--onnx`` adds onnxruntime timings (the
export itself is not timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tamperscan.nets import build_model, load_config
from tamperscan.nets.build import parse_config
from tamperscan.sysinfo import cpu_model

PAIRS = (("two_stream_paper", "two_stream"), ("wcbnet_paper", "wcbnet"))


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: allocator, oneDNN primitive cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inputs_for(cfg: dict) -> tuple[torch.Tensor, ...]:
    size = cfg["input_size"]
    return tuple(torch.rand(1, 3, size, size) for _ in parse_config(cfg).input_names)


def onnx_seconds(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], runs: int,
                 threads: int) -> float:
    import onnxruntime as ort

    from tamperscan.export import export_onnx, io_names

    names, _ = io_names(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", inputs[0].shape[-1])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {name: x.numpy() for name, x in zip(names, inputs, strict=True)}
        return median_seconds(lambda: session.run(None, feeds), runs)


def measure(name: str, runs: int) -> tuple[dict, torch.nn.Module, tuple[torch.Tensor, ...]]:
    cfg = load_config(name)
    model = build_model(cfg).eval()
    inputs = inputs_for(cfg)
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
        seconds = median_seconds(lambda: model(*inputs), runs)
    row = {"config": name, "arch": cfg["arch"], "input": cfg["input_size"],
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
           "gflops": counter.get_total_flops() / 1e9, "torch_ms": seconds * 1e3}
    return row, model, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--onnx", action="store_true", help="also time onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_model()} | logical cores: {os.cpu_count()} | "
          f"torch {torch.__version__} | threads: {torch.get_num_threads()} | "
          f"python {platform.python_version()}")
    print(f"batch 1, eval, no_grad, median of {args.runs} runs after 1 warm-up, random weights")
    rows, nets = {}, {}
    for name in (name for pair in PAIRS for name in pair):
        rows[name], *nets[name] = measure(name, args.runs)
    if args.onnx:  # after all torch timings: onnxruntime's worker threads may linger
        for name, (model, inputs) in nets.items():
            rows[name]["onnx_ms"] = onnx_seconds(model, inputs, args.runs, args.threads) * 1e3

    header = f"{'config':<18}{'input':>6}{'params M':>10}{'GFLOPs':>9}{'torch ms':>10}"
    header += f"{'onnx ms':>9}" if args.onnx else ""
    header += f"{'img/s':>8}{'speedup vs paper':>18}"
    print(header)
    for baseline, default in PAIRS:
        for name in (baseline, default):
            row = rows[name]
            line = (f"{name:<18}{row['input']:>6}{row['params_m']:>10.2f}{row['gflops']:>9.2f}"
                    f"{row['torch_ms']:>10.1f}")
            line += f"{row['onnx_ms']:>9.1f}" if args.onnx else ""
            speedup = rows[baseline]["torch_ms"] / row["torch_ms"]
            line += f"{1e3 / row['torch_ms']:>8.2f}{speedup:>17.2f}x"
            print(line)
    both = rows["two_stream"]["torch_ms"] + rows["wcbnet"]["torch_ms"]
    paper = rows["two_stream_paper"]["torch_ms"] + rows["wcbnet_paper"]["torch_ms"]
    print(f"both nets, default: {both:.1f} ms/image ({1e3 / both:.2f} img/s); "
          f"paper: {paper:.1f} ms/image; speedup {paper / both:.2f}x")


if __name__ == "__main__":
    main()
