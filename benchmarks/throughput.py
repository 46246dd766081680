"""Images/s of the bulk scan (Ray Data) against a naive per-image PyTorch loop and the
compute bound of the machine.

Usage: .venv/bin/python benchmarks/throughput.py [--images 384] [--out-json path]
       [--photos auto|procedural|shared] [--seed 0] [--config pipeline.yaml] [--batch-size 8]
       [--bound-batch-sizes 1 8] [--naive-threads 0] [--ray-warmup 16]
       [--skip-naive] [--skip-bound] [--skip-ray]

The image set (deterministic): the bundled samples/images, then synthetic forgeries and
authentic images from tamperscan.train.synth (the training mixture: splice / copy-move /
removal / authentic; JPEG, PNG, TIFF; longer side 640-1024 px) over the shared authentic
training photos when ../shared/data/train exists (``--photos auto``), else over procedural
scenes. Shipped weights and the shipped PipelineConfig (cascade included) in all three arms,
or ``--config``'s PipelineConfig in all three (e.g. a cheaper copy-move detector).

What is timed:

* **Ray Data** -- ``tamperscan.pipeline.build_dataset`` (the graph ``tamperscan scan`` runs:
  local folder in, Parquet parts written to a temporary folder) on a local Ray started as
  the CLI starts it (``tamperscan.cli.init_ray``: every core). First an untimed warm-up scan
  of the first ``--ray-warmup`` images through ``tamperscan.pipeline.scan`` itself (starts
  Ray's task workers, fills the ONNX export and backend-choice caches). For the timed run
  ``DataContext.wait_for_min_actors_s`` is set, so each actor pool waits until its actors
  are up (weights loaded) before execution starts and no stage runs ahead while another is
  still loading; nothing else changes. Timed: from the moment the last actor became ready
  (GCS actor table; the first batch is dispatched then) to the last output row reaching the
  driver -- pipeline fill and drain included, Ray start-up, actor start-up and model loading
  excluded. *End to end* (from submitting the dataset: actor start-up and model loading
  included, what one ``tamperscan scan`` run pays) is printed beside it.
* **naive loop** -- what a research script does: for each file in turn read, decode, ELA,
  the two-stream localizer and WCBnet in eager PyTorch at batch 1 with torch's default
  threads (all cores), the same cascade and refinement as the pipeline, mask PNG, one Parquet
  at the end. Model loading and one warm-up image are not timed.
* **compute bound** -- every stage of the graph (read, decode+ELA, localize, detect, refine,
  finalize, write) run alone in this process on the same images, single-threaded (1 intra-op
  thread, OpenCV 1 thread), with the production backend (``backend: auto``) at each of
  ``--bound-batch-sizes`` after a warm-up batch; cost = CPU seconds (process time) per image,
  the best batch size per stage. ``bound images/s = cores / sum over stages of that cost``:
  every core busy all the time with useful work and no overhead between stages.

N: the pipeline moves blocks of 2 x batch size rows, and the timed window holds its fill
(the first block through the first actor) and drain (the last block through the last), about
two blocks' worth of time whatever N: use N well above 16 for bulk throughput (default 384;
with int8 nets 128 images pass in ≈ 4 s, and fill + drain weigh ≈ 10 % of that).

Also printed, as the profile: per-stage cost of the bound, the t_* columns of the Ray output
(wall seconds per row inside each stage, in the pipeline), Ray Data's ``ds.stats()`` per
operator, and the CPU accounting of the timed window, which splits ray/bound into two
factors: *CPU efficiency* (the stages' isolated CPU cost per image / the CPU the Ray process
tree -- driver, raylet, GCS, workers -- spent per image: serialisation, scheduling and
contention overhead) times *occupancy* (cores the Ray tree kept busy / cores: idle cores in
fill and drain, and cores taken by other processes; note that Ray runs its workers at nice
15, so on a shared machine other processes take precedence).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    CpuSampler,
    CpuWindow,
    ImageSet,
    finish_report,
    load_average,
    markdown_table,
    mixed_image_set,
    run_benchmark,
    shared_note,
)
from tamperscan.config import (  # noqa: E402
    PipelineConfig,
    load_pipeline_config,
    model_path,
)
from tamperscan.copy_move import detect_copy_move  # noqa: E402
from tamperscan.nets.build import build_model, load_config, load_weights, save_weights  # noqa: E402
from tamperscan.preprocess.decode import DecodeLimits, decode_image  # noqa: E402
from tamperscan.preprocess.inputs import model_inputs  # noqa: E402
from tamperscan.refine.cam import fuse_geometric, normalize_cams  # noqa: E402
from tamperscan.refine.segmenters import build_segmenter  # noqa: E402
from tamperscan.results import WriteResults  # noqa: E402
from tamperscan.stages import (  # noqa: E402
    DecodeELA,
    Detect,
    Finalize,
    Localize,
    ReadBytes,
    Refine,
    encode_png,
    final_decision,
    final_map,
    image_score,
    input_sizes,
    map_score,
    refine_heatmap,
)

Batch = dict[str, np.ndarray]
STAGES = ("read", "decode+ela", "localize", "detect", "refine", "finalize", "write")
TARGET_VS_NAIVE, TARGET_VS_BOUND = 3.0, 0.85


# -- configuration --------------------------------------------------------------------------
def pipeline_config(folder: Path, path: Path | None = None) -> tuple[PipelineConfig, str]:
    """The shipped config (or the YAML at ``path``, as ``scan --config`` reads it) and
    weights; seeded random weights of the same nets when the weights are missing (speed does
    not depend on the values; scores do)."""
    config = load_pipeline_config(path)
    label = ("shipped PipelineConfig" if path is None else
             f"PipelineConfig from {path} ({' '.join(path.read_text().split())})")
    if all(model_path(w).exists() for w in (config.two_stream_weights, config.wcbnet_weights)):
        return config, f"Shipped weights (models/*.safetensors), {label}"
    torch.manual_seed(0)
    paths = {}
    for name in ("two_stream", "wcbnet"):
        paths[name] = str(folder / f"{name}-random.safetensors")
        save_weights(build_model(load_config(name)), paths[name])
    return (config.model_copy(update={"two_stream_weights": paths["two_stream"],
                                      "wcbnet_weights": paths["wcbnet"]}),
            f"Seeded random weights (models/*.safetensors missing), {label}")


# -- naive loop -----------------------------------------------------------------------------
def _load_net(name: str, weights: str) -> torch.nn.Module:
    model = build_model(load_config(name)).eval()
    load_weights(model, model_path(weights))
    return model


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1),
                                                 np.float32))[None]


class NaiveScanner:
    """One image at a time, eager PyTorch, batch 1: the loop a research script would write,
    computing what the pipeline computes (same preprocessing, score, cascade, refinement,
    mask). Intermediate maps are rounded to float16 where the pipeline stores them as such,
    so the two give the same scores."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.localizer = _load_net(config.two_stream_config, config.two_stream_weights)
        self.wcbnet = _load_net(config.wcbnet_config, config.wcbnet_weights)
        self.ts_size, self.cb_size = input_sizes(config)
        self.limits = DecodeLimits(max_bytes=config.max_image_bytes,
                                   max_pixels=config.max_image_pixels)
        self.segmenter = build_segmenter(config.segmenter, **config.segmenter_options)
        self.refine = config.cam_weight > 0  # as stages.Refine: weight 0 cannot change output

    def __call__(self, path: Path, times: dict[str, float]) -> dict:
        c = self.config
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times[stage] = times.get(stage, 0.0) + now - clock
            clock = now

        data = path.read_bytes()
        lap("read")
        image = decode_image(data, self.limits)
        inputs = model_inputs(image.rgb, c.ela_quality, self.ts_size, self.cb_size)
        ela = inputs.ela.astype(np.float16).astype(np.float32)
        sela = inputs.sela.astype(np.float16).astype(np.float32)
        copy_move = detect_copy_move(inputs.rgb, c.copy_move)  # in DecodeELA too
        lap("decode+ela")
        with torch.inference_mode():
            logits = self.localizer(_chw(inputs.rgb) / 255.0, _chw(ela)).numpy()
        prob = expit(logits[0, 0])
        ts_map = prob.astype(np.float16)
        score_ts = map_score(prob)
        lap("localize")
        with torch.inference_mode():
            head_logits, cams = (t.numpy() for t in self.wcbnet(_chw(sela)))
        heads = expit(head_logits[0])
        score_cb = float(heads.mean())
        cam = fuse_geometric(normalize_cams(cams[0])).astype(np.float16)
        lap("detect")
        # the pipeline's own rule (nets' mean or score model, noisy-OR with the clone)
        score = float(image_score({
            "score_two_stream": np.array([score_ts], np.float32),
            "score_wcbnet": np.array([score_cb], np.float32),
            "score_copy_move": np.array([copy_move.confidence], np.float32),
            "ts_map": ts_map[None], "ela": inputs.ela[None]}, c)[0])
        refined, was_refined = None, False
        if self.refine and score >= c.refine_threshold:
            refined = refine_heatmap(self.segmenter, inputs.rgb, cam, c.refine_size)
            refined, was_refined = refined.astype(np.float16), True
        lap("refine")
        heat = final_map(ts_map, refined, was_refined, c.cam_weight,
                         copy_move.region.astype(np.float16))
        full = cv2.resize(heat, (image.width, image.height), interpolation=cv2.INTER_LINEAR)
        clone = cv2.resize(copy_move.region, (image.width, image.height),
                           interpolation=cv2.INTER_LINEAR)
        mask = final_decision(full, score, c, clone)
        row = {"uri": str(path), "score": score, "tampered": score >= c.tamper_threshold,
               "score_two_stream": score_ts, "score_wcbnet": score_cb,
               "score_copy_move": copy_move.confidence, "refined": was_refined,
               "mask_fraction": float(mask.mean()),
               "mask_png": encode_png(mask.astype(np.uint8) * 255)}
        lap("finalize")
        return row


def run_naive(image_set: ImageSet, config: PipelineConfig, out: Path, threads: int) -> dict:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    start = time.perf_counter()
    scanner = NaiveScanner(config)
    load_s = time.perf_counter() - start
    scanner(image_set.paths[0], {})  # warm-up: allocator, oneDNN primitive cache
    times: dict[str, float] = {}
    rows = []
    window = CpuWindow().start()
    for path in image_set.paths:
        try:
            rows.append(scanner(path, times))
        except Exception as exc:  # a research script would skip a bad file and go on
            rows.append({"uri": str(path), "error": f"{type(exc).__name__}: {exc}"})
    clock = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "results.parquet")
    times["write"] = time.perf_counter() - clock
    window.stop()
    n = len(image_set.paths)
    return {"images": n, "seconds": window.wall, "images_per_s": n / window.wall,
            "torch_threads": torch.get_num_threads(), "model_load_s": load_s,
            "ms_per_image": {k: 1e3 * times.get(k, 0.0) / n for k in STAGES},
            "cpu": window.as_dict(),
            "scores": {r["uri"]: r.get("score", float("nan")) for r in rows},
            "refined": sum(bool(r.get("refined")) for r in rows)}


# -- compute bound --------------------------------------------------------------------------
def _batches(uris: list[str], size: int) -> list[Batch]:
    return [{"uri": np.array(uris[i:i + size], dtype=object)}
            for i in range(0, len(uris), size)]


def run_bound(image_set: ImageSet, config: PipelineConfig, batch_sizes: list[int], cores: int,
              out: Path) -> dict:
    """Each stage alone, single-threaded, production backend: CPU seconds per image."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    config = config.model_copy(update={"torch_threads": 1})  # as each pipeline actor runs
    stages: list[tuple[str, Callable[[Batch], Batch]]] = [
        ("read", ReadBytes(config)), ("decode+ela", DecodeELA(config)),
        ("localize", Localize(config)), ("detect", Detect(config)), ("refine", Refine(config)),
        ("finalize", Finalize(config)), ("write", WriteResults(str(out), "bound")),
    ]
    backends = {name: f"{stage.engine.name} {stage.engine.precision}" for name, stage in stages
                if hasattr(stage, "engine")}
    n = len(image_set.uris)
    cpu: dict[str, dict[int, float]] = {name: {} for name, _ in stages}
    wall: dict[str, dict[int, float]] = {name: {} for name, _ in stages}
    refined = 0
    for size in batch_sizes:
        batch = _batches(image_set.uris, size)[0]
        for _, stage in stages:  # warm-up batch: ORT arenas, first-call costs
            batch = stage(batch)
        for name in cpu:
            cpu[name][size] = wall[name][size] = 0.0
        refined = 0
        for batch in _batches(image_set.uris, size):
            for name, stage in stages:
                c0, w0 = time.process_time(), time.perf_counter()
                batch = stage(batch)
                cpu[name][size] += (time.process_time() - c0) / n
                wall[name][size] += (time.perf_counter() - w0) / n
                if name == "refine":
                    refined += int(batch["was_refined"].sum())
    best = {name: min(cpu[name], key=cpu[name].__getitem__) for name in cpu}
    per_image = sum(cpu[name][best[name]] for name in cpu)
    wall_per_image = sum(wall[name][best[name]] for name in wall)
    return {"cores": cores, "backends": backends, "batch_sizes": batch_sizes,
            "cpu_s_per_image": cpu, "wall_s_per_image": wall, "best_batch": best,
            "sum_cpu_s_per_image": per_image, "sum_wall_s_per_image": wall_per_image,
            "images_per_s": cores / per_image, "refined": refined}


# -- Ray Data -------------------------------------------------------------------------------
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
    import ray

    try:
        actors = ray._private.state.actors().values()
    except Exception:  # a private API: absent or changed in another Ray version
        return []
    return sorted(a["StartTime"] / 1e3 for a in actors
                  if "MapWorker" in str(a.get("ActorClassName", ""))
                  and a.get("StartTime", 0) / 1e3 >= since)


def run_ray(image_set: ImageSet, config: PipelineConfig, batch_size: int, scratch: Path,
            warmup_images: int, layout: str = "auto") -> dict:
    import ray

    from tamperscan.cluster import init_ray
    from tamperscan.io import list_source, new_run_id
    from tamperscan.pipeline import ScanResources, _plan, build_dataset, scan

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
    t_cols = {c: float(results[c].fillna(0).mean()) for c in
              ("t_decode", "t_localize", "t_detect", "t_refine")}
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


# -- report ---------------------------------------------------------------------------------
def score_agreement(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |score difference| between two arms over the images both scored."""
    common = [u for u in a if u in b and np.isfinite(a[u]) and np.isfinite(b[u])]
    return max((abs(a[u] - b[u]) for u in common), default=float("nan"))


def ray_profile_lines(ray_: dict, bound: dict | None, cores: int) -> list[str]:
    """Where one Ray run's time went: CPU accounting, t_* columns, ds.stats(), start-up."""
    lines: list[str] = []
    cpu, rows = ray_["cpu_timed"], ray_["images"]
    window = f"{ray_['layout']} layout, timed window (from {ray_['timed_from']})"
    if cpu["wall_s"] > 0 and rows and cpu["tree_cpu_s"] > 0:
        per_image = cpu["tree_cpu_s"] / rows
        capacity = cores * cpu["wall_s"]
        line = (f"{window}: the Ray process tree (driver, raylet, GCS, workers) spent "
                f"{1e3 * per_image:.1f} CPU ms per image and kept "
                f"{cpu['tree_cpu_s'] / cpu['wall_s']:.2f} of {cores} cores busy; other "
                f"processes took {cpu['others_cpu_s'] / cpu['wall_s']:.2f} cores, "
                f"{max(0.0, capacity - cpu['machine_busy_cpu_s']) / cpu['wall_s']:.2f} "
                f"idle, steal {cpu['steal_cpu_s'] / cpu['wall_s']:.2f}")
        if bound:
            efficiency = bound["sum_cpu_s_per_image"] / per_image
            occupancy = cpu["tree_cpu_s"] / capacity
            line += (f" => ray/bound {efficiency * occupancy:.2f} = CPU efficiency "
                     f"{efficiency:.2f} (isolated {1e3 * bound['sum_cpu_s_per_image']:.1f}"
                     f" / {1e3 * per_image:.1f} CPU ms) x occupancy {occupancy:.2f}")
        lines.append(line)
        roles = ray_.get("cpu_by_process_timed", {})
        lines.append("CPU ms per image by process in that window: " + ", ".join(
            f"{role} {1e3 * cpu_s / rows:.1f}" for role, cpu_s in roles.items()
            if cpu_s / rows >= 5e-4))
    name = f"{ray_['layout']} layout"
    lines.append(f"{name}, t_* columns of the Ray output (wall ms per row inside the stage): "
                 + ", ".join(f"{k[2:]} {1e3 * v:.1f}"
                             for k, v in ray_["t_columns_s_per_row"].items()))
    lines.append(f"{name}, ds.stats() per operator (tasks; remote CPU s / wall s): " + "; ".join(
        f"{op['operator']} ({op['tasks']}; {op.get('cpu_s', 0):.2f} / "
        f"{op.get('wall_s', 0):.2f})" for op in ray_["stats"]))
    lines.append(f"{name}, not timed: Ray start-up {ray_['ray_start_s']:.1f} s, warm-up scan "
                 f"{ray_['warmup_scan_s']:.1f} s, starting {ray_['actors']} actors and "
                 f"loading their weights {ray_['actor_startup_s']:.1f} s; timed: first "
                 f"output batch after {ray_['first_batch_s']:.1f} s, "
                 f"{ray_['output_batches']} output batches in {ray_['timed_s']:.1f} s")
    return lines


def profile_lines(result: dict) -> list[str]:
    """Where the time goes, one line per source (plain text, also used as Markdown bullets)."""
    cores = result["machine"]["logical_cores"]
    bound, ray_ = result.get("bound"), result.get("ray")
    lines = []
    if bound:
        total = bound["sum_cpu_s_per_image"]
        lines.append("isolated stage cost (CPU ms/image, 1 thread, best batch): " + ", ".join(
            f"{name} {1e3 * bound['cpu_s_per_image'][name][bound['best_batch'][name]]:.1f}"
            for name in STAGES) + f"; sum {1e3 * total:.1f}")
    for run in [ray_, *result.get("ray_other", [])] if ray_ else []:
        lines += ray_profile_lines(run, bound, cores)
    naive = result.get("naive")
    if naive:
        lines.append(f"naive loop ({naive['torch_threads']} torch threads), ms/image: "
                     + ", ".join(f"{k} {naive['ms_per_image'][k]:.1f}" for k in STAGES))
    return lines


def arm_rows(result: dict) -> list[list[str]]:
    naive, bound, ray_ = result.get("naive"), result.get("bound"), result.get("ray")
    rows = []
    for run in [ray_, *result.get("ray_other", [])] if ray_ else []:
        rows.append([f"Ray Data, {run['layout']} layout (`pipeline.build_dataset`, batch "
                     f"{run['batch_size']}), from {run['timed_from']} to last row",
                     f"{run['images_per_s']:.2f}"])
        rows.append([f"Ray Data, {run['layout']} layout, end to end incl. actor start-up and "
                     "model loading", f"{run['end_to_end_images_per_s']:.2f}"])
    if naive:
        rows.append([f"naive loop (eager torch, batch 1, {naive['torch_threads']} threads)",
                     f"{naive['images_per_s']:.2f}"])
    if bound:
        rows.append([f"compute bound ({bound['cores']} cores / "
                     f"{1e3 * bound['sum_cpu_s_per_image']:.1f} CPU ms per image)",
                     f"{bound['images_per_s']:.2f}"])
    return rows


def targets_line(ratios: dict[str, float]) -> str:
    parts = []
    if "ray/naive" in ratios:
        met = "met" if ratios["ray/naive"] >= TARGET_VS_NAIVE else "NOT met"
        parts.append(f"ray/naive ≥ {TARGET_VS_NAIVE:g}: {met}")
    if "ray/bound" in ratios:
        met = "met" if ratios["ray/bound"] >= TARGET_VS_BOUND else "NOT met"
        parts.append(f"ray/bound ≥ {TARGET_VS_BOUND:g}: {met}")
    return "targets (issue #6): " + "; ".join(parts) if parts else ""


def report(result: dict) -> None:
    bound = result.get("bound")
    print(f"\nimages: {result['image_set']}\nweights: {result['weights']}")
    if bound:
        print(f"\ncompute bound, each stage alone, 1 thread, backends {bound['backends']}; "
              f"CPU ms per image (wall ms in brackets) per batch size:")
        total = bound["sum_cpu_s_per_image"]
        for name in STAGES:
            costs, walls = bound["cpu_s_per_image"][name], bound["wall_s_per_image"][name]
            best = bound["best_batch"][name]
            cells = "  ".join(f"b{b}: {1e3 * costs[b]:6.1f} ({1e3 * walls[b]:6.1f})"
                              for b in bound["batch_sizes"])
            print(f"  {name:<11}{cells}   best b{best}, {100 * costs[best] / total:4.1f} %")
    print()
    for name, rate in arm_rows(result):
        print(f"{name.replace('`', ''):<72}{rate:>8} images/s")
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}")
    if line := targets_line(result["ratios"]):
        print(line)
    if "max_score_diff" in result:
        print(f"max |score difference| naive vs Ray: {result['max_score_diff']:.2e}")
    ray_ = result.get("ray")
    if bound and ray_ and ray_["plan"].get("ray_cpus") not in (None, bound["cores"]):
        print(f"note: Ray saw {ray_['plan']['ray_cpus']:g} CPUs, the bound assumes "
              f"{bound['cores']} cores (os.cpu_count())")
    print("\nprofile:")
    for line in profile_lines(result):
        print(f"  - {line}")


def markdown(result: dict) -> str:
    info, bound = result["machine"], result.get("bound")
    v = info["versions"]
    out = ["## Throughput: Ray Data vs naive loop vs compute bound (`benchmarks/throughput.py`)",
           "",
           f"{info['date']} · {info['cpu']}, {info['logical_cores']} logical cores, "
           f"{info['ram_gib']:.0f} GiB RAM · python {v['python']}, torch {v['torch']}, "
           f"ray {v['ray']}, onnxruntime {v['onnxruntime']} · {shared_note(info)}",
           f"· `{info['command']}`",
           "",
           f"Images: {result['image_set']}. {result['weights']}.",
           "",
           markdown_table(["arm", "images/s"], arm_rows(result)),
           "",
           " · ".join(f"{k} **{val:.2f}**" for k, val in result["ratios"].items())]
    if line := targets_line(result["ratios"]):
        out += ["", line[0].upper() + line[1:] + "."]
    if bound:
        total = bound["sum_cpu_s_per_image"]
        rows = []
        for name in STAGES:
            best = bound["best_batch"][name]
            cost = bound["cpu_s_per_image"][name][best]
            rows.append([name, best, f"{1e3 * cost:.1f}",
                         f"{1e3 * bound['wall_s_per_image'][name][best]:.1f}",
                         f"{100 * cost / total:.0f} %"])
        out += ["", f"Compute bound: each stage alone, 1 thread, backends "
                    f"{', '.join(f'{k} {b}' for k, b in bound['backends'].items())}:", "",
                markdown_table(["stage", "best batch", "CPU ms/image", "wall ms/image",
                                "share"], rows)]
    out += ["", "Profile:", ""] + [f"- {line}" for line in profile_lines(result)]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="number of images (N)")
    parser.add_argument("--out-json", type=Path, help="write all figures here")
    parser.add_argument("--photos", choices=["auto", "procedural", "shared"], default="auto",
                        help="photos the synthetic images are made from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML with PipelineConfig fields for every arm (as scan --config), "
                             "e.g. copy_move: {keypoint_scale: 0.5}")
    parser.add_argument("--batch-size", type=int, default=8, help="pipeline batch size")
    parser.add_argument("--bound-batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--naive-threads", type=int, default=0,
                        help="torch threads of the naive loop (0: all cores)")
    parser.add_argument("--ray-warmup", type=int, default=None,
                        help="images in the untimed warm-up scan (default 2 x batch size)")
    parser.add_argument("--layouts", nargs="+", default=["auto"],
                        choices=["auto", "fused", "staged"],
                        help="pipeline layouts to time (ScanResources.layout); the first is "
                             "the headline, the others are printed beside it")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-bound", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be >= 1")
    return args


def measure(args: argparse.Namespace, info: dict) -> dict:
    cores = os.cpu_count() or 1
    result: dict = {"machine": info}
    with tempfile.TemporaryDirectory(prefix="tamperscan-throughput-") as tmp:
        scratch = Path(tmp)
        config, result["weights"] = pipeline_config(scratch, args.config)
        image_set = mixed_image_set(scratch / "images", args.images, args.photos, args.seed)
        result["image_set"] = image_set.description
        print(f"images: {image_set.description}", flush=True)
        if not args.skip_naive:
            result["naive"] = run_naive(image_set, config, scratch / "naive-out",
                                        args.naive_threads or cores)
            print(f"naive loop: {result['naive']['images_per_s']:.2f} images/s", flush=True)
        if not args.skip_bound:
            result["bound"] = run_bound(image_set, config, args.bound_batch_sizes, cores,
                                        scratch / "bound-out")
            print(f"compute bound: {result['bound']['images_per_s']:.2f} images/s", flush=True)
        if not args.skip_ray:
            warmup = 2 * args.batch_size if args.ray_warmup is None else args.ray_warmup
            runs = [run_ray(image_set, config, args.batch_size, scratch, warmup, layout)
                    for layout in args.layouts]
            result["ray"], result["ray_other"] = runs[0], runs[1:]
            for run in runs:
                print(f"Ray Data, {run['layout']}: {run['images_per_s']:.2f} images/s",
                      flush=True)
    info["load_average_end"] = [round(v, 2) for v in load_average()]
    ratios = {}
    if "ray" in result and "naive" in result:
        ratios["ray/naive"] = result["ray"]["images_per_s"] / result["naive"]["images_per_s"]
        result["max_score_diff"] = score_agreement(result["naive"]["scores"],
                                                   result["ray"]["scores"])
    if "ray" in result and "bound" in result:
        ratios["ray/bound"] = result["ray"]["images_per_s"] / result["bound"]["images_per_s"]
    for run in result.get("ray_other", []):
        ratios[f"ray/ray ({run['layout']} layout)"] = (result["ray"]["images_per_s"]
                                                       / run["images_per_s"])
    if "naive" in result and "bound" in result:
        ratios["naive/bound"] = result["naive"]["images_per_s"] / result["bound"]["images_per_s"]
    result["ratios"] = ratios
    return finish_report(result, info, report, markdown)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/throughput.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
