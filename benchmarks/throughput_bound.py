"""The compute-bound arm of benchmarks/throughput.py: every stage of a fused scan worker
(`benchmarks.graph_stages.worker_stages`: read, the graph's stages, write) run alone in this
process on the same images, single-threaded (1 intra-op thread, OpenCV 1 thread), with the
configured backend, at each batch size after a warm-up batch. Cost = CPU seconds (process
time) per image, the best batch size per stage; ``bound images/s = cores / sum of those``:
every core busy all the time with useful work and no overhead between stages."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.graph_stages import worker_stages
from benchmarks.image_sets import ImageSet
from tamperscan.batch import Batch
from tamperscan.config import PipelineConfig
from tamperscan.stages import Refine


def uri_batches(uris: list[str], size: int) -> list[Batch]:
    return [{"uri": np.array(uris[i:i + size], dtype=object)}
            for i in range(0, len(uris), size)]


def run_bound(image_set: ImageSet, config: PipelineConfig, batch_sizes: list[int], cores: int,
              out: Path) -> dict:
    """Each stage alone, single-threaded, production backend: CPU seconds per image."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    config = config.with_runtime(threads=1)  # as each fused scan worker runs
    stages = worker_stages(config, out, "bound")
    backends = {name: stage.backends for name, stage in stages if hasattr(stage, "engines")}
    n = len(image_set.uris)
    cpu: dict[str, dict[int, float]] = {name: {} for name, _ in stages}
    wall: dict[str, dict[int, float]] = {name: {} for name, _ in stages}
    refined = 0
    for size in batch_sizes:
        batch = uri_batches(image_set.uris, size)[0]
        for _, stage in stages:  # warm-up batch: ORT arenas, first-call costs
            batch = stage(batch)
        for name in cpu:
            cpu[name][size] = wall[name][size] = 0.0
        refined = 0
        for batch in uri_batches(image_set.uris, size):
            for name, stage in stages:
                c0, w0 = time.process_time(), time.perf_counter()
                batch = stage(batch)
                cpu[name][size] += (time.process_time() - c0) / n
                wall[name][size] += (time.perf_counter() - w0) / n
                if isinstance(stage, Refine):
                    refined += int(batch["refined"].sum())
    best = {name: min(cpu[name], key=cpu[name].__getitem__) for name in cpu}
    per_image = sum(cpu[name][best[name]] for name in cpu)
    wall_per_image = sum(wall[name][best[name]] for name in wall)
    return {"cores": cores, "backends": backends, "batch_sizes": batch_sizes,
            "cpu_s_per_image": cpu, "wall_s_per_image": wall, "best_batch": best,
            "sum_cpu_s_per_image": per_image, "sum_wall_s_per_image": wall_per_image,
            "images_per_s": cores / per_image, "refined": refined}
