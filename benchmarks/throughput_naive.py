"""The baseline arm of benchmarks/throughput.py: a naive per-image loop in one process.

What a research script does around the pipeline's own code: for each file in turn, read it
(``read_batch``), run the graph's stages (`tamperscan.graph.build_stages`: decode + ELA, the
evidence, score and cascade, refinement, fuse) on a batch of one with eager PyTorch (backend
torch, fp32) and torch's default threads, keep the row; one Parquet at the end. Same stages,
same rules, so the same scores as the pipeline; only the way they are run is naive. Building
the stages (model loading) and one warm-up image are not timed.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.cpu_accounting import CpuWindow
from benchmarks.graph_stages import NAMES, named
from benchmarks.image_sets import ImageSet
from tamperscan.batch import Batch
from tamperscan.config import PipelineConfig
from tamperscan.graph import build_stages
from tamperscan.results import to_table
from tamperscan.stages import read_batch


class NaiveScanner:
    """One image at a time, batch 1, eager PyTorch: the graph's stages in a plain loop.
    Returns each image's output row as a one-row batch; adds wall seconds per stage name to
    ``times``."""

    def __init__(self, config: PipelineConfig, threads: int = 0) -> None:
        self.config = config.with_runtime(backend="torch", precision="fp32", threads=threads)
        self.stages = named(build_stages(self.config))

    def __call__(self, path: Path, times: dict[str, float]) -> Batch:
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times[name] = times.get(name, 0.0) + now - clock
            clock = now

        batch = read_batch([str(path)], self.config)
        lap("read")
        for name, stage in self.stages:
            batch = stage(batch)
            lap(name)
        return batch


def run_naive(image_set: ImageSet, config: PipelineConfig, out: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    start = time.perf_counter()
    scanner = NaiveScanner(config, threads)
    load_s = time.perf_counter() - start
    scanner(image_set.paths[0], {})  # warm-up: allocator, oneDNN primitive cache
    times: dict[str, float] = {}
    rows: list[Batch] = []
    window = CpuWindow().start()
    for path in image_set.paths:
        rows.append(scanner(path, times))
    clock = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables([to_table(row, "naive", [None]) for row in rows]),
                   out / "results.parquet")
    times["write"] = time.perf_counter() - clock
    window.stop()
    n = len(image_set.paths)
    return {"images": n, "seconds": window.wall, "images_per_s": n / window.wall,
            "torch_threads": torch.get_num_threads(), "model_load_s": load_s,
            "ms_per_image": {k: 1e3 * times.get(k, 0.0) / n for k in NAMES},
            "cpu": window.as_dict(),
            "ok_rows": sum(int(row["status"][0] == "ok") for row in rows),
            "scores": {str(row["uri"][0]): float(row["score"][0]) for row in rows},
            "refined": sum(bool(row["refined"][0]) for row in rows)}
