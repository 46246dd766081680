"""The Ray Data arm of benchmarks/throughput.py: ``tamperscan.pipeline.build_dataset`` (the
graph ``tamperscan scan`` runs, in the fused or staged layout) on a local Ray started as every
entry point starts it (``tamperscan.cluster.init_ray``: every core).

First an untimed warm-up scan of the first images through ``tamperscan.pipeline.scan`` itself
(starts Ray's task workers, fills the ONNX export and backend-choice caches). For the timed
run ``DataContext.wait_for_min_actors_s`` is set, so each actor pool waits until its actors
are up (weights loaded) before execution starts and no stage runs ahead while another is
still loading. Timed: from the moment the last actor became ready (GCS actor table) to the
last output row reaching the driver; end to end (from submission) beside it. The CPU of the
Ray process tree is sampled throughout (`benchmarks.cpu_accounting.CpuSampler`)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import ray

from benchmarks.cpu_accounting import CpuSampler
from benchmarks.image_sets import ImageSet
from tamperscan.cluster import init_ray
from tamperscan.config import PipelineConfig
from tamperscan.graph import STAGES
from tamperscan.io import list_source, new_run_id
from tamperscan.pipeline import ScanResources, _plan, build_dataset, scan

#: The per-row stage timings in the output (``t_decode``, ``t_copy_move``...), from the graph.
T_COLUMNS = tuple(stage.timing for stage in STAGES if hasattr(stage, "timing"))
_OP = re.compile(r"^Operator \d+ (?P<name>.+?): (?P<tasks>\d+) tasks executed")
_TOTAL = re.compile(r"\* Remote (?P<kind>wall|cpu) time: .*?, (?P<total>[\d.]+)(?P<unit>us|ms|s)"
                    r" total")


def parse_stats(text: str) -> list[dict]:
    """Per-operator task counts and total remote wall / CPU seconds from ``ds.stats()``."""
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    ops: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if match := _OP.match(line):
            ops.append({"operator": match["name"], "tasks": int(match["tasks"])})
        elif ops and (match := _TOTAL.search(line)):
            ops[-1][f"{match['kind']}_s"] = float(match["total"]) * scale[match["unit"]]
    return ops


def actor_ready_times(since: float) -> list[float]:
    """When each Ray Data map actor started after ``since`` became ready (constructor done,
    i.e. weights loaded), from the GCS actor table; [] where that table cannot be read."""
    try:
        actors = ray._private.state.actors().values()
    except Exception:  # a private API: absent or changed in another Ray version
        return []
    return sorted(a["StartTime"] / 1e3 for a in actors
                  if "MapWorker" in str(a.get("ActorClassName", ""))
                  and a.get("StartTime", 0) / 1e3 >= since)


def run_ray(image_set: ImageSet, config: PipelineConfig, batch_size: int, scratch: Path,
            warmup_images: int, layout: str = "auto") -> dict:
    started_here = not ray.is_initialized()
    clock = time.perf_counter()
    init_ray()
    ray_start_s = time.perf_counter() - clock
    resources = ScanResources(batch_size=batch_size, layout=layout)
    scratch = scratch / f"ray-{layout}"
    context = ray.data.DataContext.get_current()
    wait_before = context.wait_for_min_actors_s
    try:
        # Warm-up: the scan function of `tamperscan scan` itself, on the first images.
        clock = time.perf_counter()
        if warmup_images:
            warm = scratch / "warm-in"
            warm.mkdir(parents=True)
            for path in image_set.paths[:warmup_images]:
                shutil.copyfile(path, warm / path.name)
            scan(str(warm), str(scratch / "warm-out"), config, resources=resources,
                 show_progress=False)
        warm_s = time.perf_counter() - clock

        # Timed run. With wait_for_min_actors_s each actor pool waits for its actors (weights
        # loaded) before execution starts, so no stage runs ahead while another still loads;
        # the steady state is unchanged.
        out = scratch / "ray-out"
        uris = list_source(str(image_set.folder))
        plan = _plan(resources)
        plan["ray_cpus"] = ray.cluster_resources().get("CPU", 0.0)
        context.wait_for_min_actors_s = 3600
        ds = build_dataset(uris, str(out), new_run_id(), config, None, resources)
        arrivals: list[tuple[float, int]] = []
        sampler = CpuSampler().start()
        submitted = time.time()
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            arrivals.append((time.time(), len(batch["uri"])))
        sampler.stop()
        ready = actor_ready_times(submitted)
        stats_text = ds.stats()
    finally:
        context.wait_for_min_actors_s = wait_before
        if started_here:
            ray.shutdown()
    n = sum(rows for _, rows in arrivals)
    last = arrivals[-1][0]
    # Timed from the moment the last actor was ready (the first batch is dispatched then) to
    # the last output row; without the actor table, from submission (start-up included).
    start = ready[-1] if ready else submitted
    results = pq.read_table(out / "results").to_pandas()
    t_cols = {c: float(results[c].fillna(0).mean()) for c in T_COLUMNS}
    return {
        "images": n, "batch_size": batch_size, "plan": plan, "layout": plan["layout"],
        "ray_start_s": ray_start_s,
        "warmup_scan_s": warm_s,
        "end_to_end_s": last - submitted, "end_to_end_images_per_s": n / (last - submitted),
        "actors": len(ready), "actor_startup_s": start - submitted,
        "first_batch_s": arrivals[0][0] - start, "output_batches": len(arrivals),
        "timed_s": last - start, "images_per_s": n / (last - start),
        "timed_from": "last actor ready" if ready else "submission (actor table unreadable)",
        "cpu_timed": sampler.window(start, last),
        "cpu_by_process_timed": sampler.by_role(start, last),
        "cpu_total": sampler.window(submitted, last),
        "t_columns_s_per_row": t_cols,
        "ok_rows": int((results["status"] == "ok").sum()),
        "refined": int(results["refined"].fillna(False).astype(bool).sum()),
        "scores": dict(zip(results["uri"], results["score"].astype(float), strict=True)),
        "stats": parse_stats(stats_text), "stats_text": stats_text,
    }
