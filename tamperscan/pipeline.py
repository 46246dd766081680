"""The bulk scan as Ray Data over the graph of `tamperscan.graph`.

Ray specifics stay here and stay thin: the graph's stages are plain callables, and the layout
decides which process runs each. ``staged`` (clusters with GPUs): read and decode run as CPU
tasks, each evidence stage in an actor pool of its own (GPUs for the model stages), the
score/refine/fuse stages and the write in CPU actors (``ScanTail``). ``fused`` (CPU-only
clusters, the default there): one actor per CPU runs the whole graph on its batch
(``ScanWorker``), so no array crosses a process boundary.
"""

from __future__ import annotations

import gc
import json
import math
import re
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Literal

import pyarrow as pa
import ray
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tamperscan.batch import Batch
from tamperscan.config import PipelineConfig, S3Options
from tamperscan.graph import STAGES, analyse, build_stages, last_file_reader, split
from tamperscan.io import ResultSink, list_source, new_run_id
from tamperscan.provenance import model_versions
from tamperscan.results import WriteResults
from tamperscan.stages import ReadBytes


class ScanFailed(RuntimeError):
    """The scan stopped part-way (storage gone, disk full...). The parts written before are
    whole (written atomically) and kept: re-running with the same output resumes.
    ``reason`` is the underlying error, e.g. ``OSError: ... No space left on device``;
    ``details`` its full traceback, as text (see ``scan`` for why not as a live chain)."""

    def __init__(self, message: str, reason: str, details: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.details = details


_ERROR_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.+)$")


def root_cause(exc: BaseException) -> str:
    """The original error behind a failed Ray task: Ray re-raises it wrapped, with the remote
    traceback as text, so take the first ``SomeError: message`` line that is not Ray's own."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        for line in str(exc).splitlines():
            match = _ERROR_LINE.match(line)
            if match and not match.group(1).startswith("ray."):
                return f"{match.group(1)}: {match.group(2)}"
    return f"{type(exc).__name__}: {exc}"


class ScanResources(BaseModel):
    """How the graph maps onto a cluster. Zero means "derive from the cluster"."""

    batch_size: int = Field(default=8, ge=1)
    model_actors: int = Field(default=0, ge=0, description="max actors per model stage")
    refine_actors: int = Field(default=0, ge=0)
    cpus_per_actor: float = Field(default=0.0, ge=0.0)
    gpus_per_actor: float = Field(default=0.0, ge=0.0, description="fractional GPUs allowed")
    #: "fused": every stage in one actor per CPU -- nothing crosses a process boundary, the
    #: fastest layout without GPUs (benchmarks/throughput.py); "staged": decode tasks, model
    #: actor pools, refinement actors -- lets a few GPU actors serve many CPU decoders;
    #: "auto": fused on a cluster without GPUs, staged with them.
    layout: Literal["auto", "fused", "staged"] = "auto"
    #: Batch of the model stage (both nets) in the staged layout (the fused layout runs everything
    #: at ``batch_size``). 0: ``batch_size`` on CPUs, at least 32 with GPUs, where a batch of 8
    #: is launch-bound -- on an H200 the localizer took ~5 ms a call at batch 1 and at batch 8
    #: alike, and 2-5x the images/s from batch 32 on (benchmarks/RESULTS.md, GPU).
    model_batch_size: int = Field(default=0, ge=0)


@dataclass
class ScanSummary:
    source: str
    out: str
    run_id: str
    total: int
    skipped_done: int
    processed: int = 0                  # rows produced by this run
    #: Over the whole output after this run (earlier runs included): rows by status, flagged.
    counts: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)  # this run
    seconds: float = 0.0
    superseded_rows_dropped: int = 0
    #: The verdict's threshold and where it came from (the false-alarm rate it was set at).
    tamper_threshold: float = 0.5
    operating_point: dict | None = None

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "images_per_second": self.images_per_second}, indent=2)


def _plan(resources: ScanResources) -> dict:
    """Concrete layout, actor counts and per-actor resources for the running cluster.

    Fused: one single-threaded worker per CPU (``model_actors`` caps their number). Staged:
    on a small machine (< 8 CPUs) the actor pools -- one per evidence stage of the graph, and
    the tail -- and the decode tasks split the CPUs evenly, so that every stage fits at once
    (else the pipeline stalls waiting for a CPU that an idle actor holds: with five pools at
    half a CPU each, two CPUs never started the tail)."""
    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 1.0), cluster.get("GPU", 0.0)
    layout = resources.layout
    if layout == "auto":
        layout = "staged" if gpus or resources.gpus_per_actor else "fused"
    if layout == "fused":
        per_worker = resources.cpus_per_actor or 1.0
        workers = max(1, int(cpus // per_worker))
        return {"layout": "fused", "cpus_per_actor": per_worker,
                "scan_actors": min(workers, resources.model_actors or workers)}
    _, evidence, _ = split(STAGES)
    # The pools, the tail and the decode tasks; rounded down so that the sum stays <= cpus.
    share = min(1.0, math.floor(100 * cpus / (len(evidence) + 2)) / 100)
    cpus_per_actor = resources.cpus_per_actor or (1.0 if cpus >= 8 else share)
    model_actors = resources.model_actors or max(1, int(cpus // 8))
    gpus_per_actor = resources.gpus_per_actor or (1.0 if gpus else 0.0)
    if gpus:
        model_actors = resources.model_actors or max(1, int(gpus / gpus_per_actor) // 2)
    model_batch = resources.model_batch_size or (
        max(32, resources.batch_size) if gpus_per_actor else resources.batch_size)
    return {
        "layout": "staged",
        "model_batch": model_batch,
        "model_actors": model_actors,
        "refine_actors": resources.refine_actors or max(1, int(cpus // 8)),
        "cpus_per_actor": cpus_per_actor,
        "gpus_per_actor": gpus_per_actor,
        "task_cpus": share if cpus < 8 else 1.0,
    }


def build_dataset(uris: list[str], out: str, run_id: str, config: PipelineConfig,
                  s3: S3Options | None, resources: ScanResources) -> ray.data.Dataset:
    plan = _plan(resources)
    bs = resources.batch_size
    if not config.runtime.threads:  # one thread per actor: actors share the node's cores
        config = config.with_runtime(threads=max(1, int(plan["cpus_per_actor"])))
    # Several small blocks, so the stages pipeline and no task holds the whole archive.
    # (Not ds.repartition(): with actor pools downstream it stalls on Ray 2.60.)
    table = pa.table({"uri": pa.array(uris, pa.string())})
    chunk = bs * 2
    ds = ray.data.from_arrow([table.slice(i, chunk) for i in range(0, len(uris), chunk)])
    if plan["layout"] == "fused":
        workers = ray.data.ActorPoolStrategy(size=plan["scan_actors"])
        return ds.map_batches(worker_class(run_id), compute=workers, batch_size=bs,
                              batch_format="numpy", num_cpus=plan["cpus_per_actor"],
                              fn_constructor_args=(config, out, run_id, s3))
    task = {"batch_size": bs, "num_cpus": plan["task_cpus"], "batch_format": "numpy"}
    actor = {
        "batch_size": bs, "batch_format": "numpy", "fn_constructor_args": (config,),
        "num_cpus": plan["cpus_per_actor"],
    }
    # On a CPU-only node Ray fuses read + decode into the first actor (no copy between
    # them); once the model stages ask for GPUs the resources differ, so decode and ELA stay
    # CPU tasks and the GPU actors only run the nets.
    ds = ds.map_batches(ReadBytes(config, s3), **task)
    front, evidence, _ = split(STAGES)  # classes: each actor builds its own
    for stage in front:
        ds = ds.map_batches(stage(config), **task)
    last_reader = last_file_reader(evidence)
    for index, stage in enumerate(evidence):  # each in its own pool: the model stages on GPUs
        model = stage.kind == "model"
        pool = ray.data.ActorPoolStrategy(
            min_size=1, max_size=plan["model_actors" if model else "refine_actors"])
        if index == last_reader:  # the file's bytes go no further than their last reader
            stage = dropping_file(stage)
        ds = ds.map_batches(stage, compute=pool, num_gpus=plan["gpus_per_actor"] if model else 0,
                            **{**actor, "batch_size": plan["model_batch"] if model else bs})
    tails = ray.data.ActorPoolStrategy(min_size=1, max_size=plan["refine_actors"])
    return ds.map_batches(ScanTail, compute=tails,
                          **{**actor, "fn_constructor_args": (config, out, run_id, s3)})


def dropping_file(stage: type) -> type:
    """``stage`` whose output leaves out the original file bytes (``data``), for its last
    reader in the staged layout: the model actors and the tail never receive them, and no
    extra Ray operator copies the batch to drop them."""

    class DroppingFile(stage):
        def __call__(self, batch: Batch) -> Batch:
            return {k: v for k, v in super().__call__(batch).items() if k != "data"}

    DroppingFile.__name__ = DroppingFile.__qualname__ = stage.__name__
    return DroppingFile


class ScanTail:
    """The graph after its evidence stages (score, refine, fuse) and the write, in CPU actors.

    Fuse and the write cost 1-2 ms per row, but as Ray tasks they need task worker
    processes, and when a node runs more workers than it has CPUs (actors included) Ray ends
    any worker idle for 1 s (``idle_worker_killing_time_threshold_ms``, soft limit = CPUs).
    On a small node that was every gap between batches: each batch started a fresh worker
    that imported torch, ONNX Runtime and OpenCV again -- on 2 cores more CPU than both nets
    used (benchmarks/throughput.py, per-process profile). In the actor they run in a process
    that lives for the whole scan, and the large per-row arrays skip one more trip through
    the object store."""

    def __init__(self, config: PipelineConfig, out: str, run_id: str,
                 s3: S3Options | None) -> None:
        _, _, back = split(build_stages(config))
        self.stages = [*back, WriteResults(out, run_id, s3, config.runtime.write_heatmaps)]

    def __call__(self, batch: Batch) -> Batch:
        return analyse(self.stages, batch)


class ScanWorker:
    """The whole graph for one batch in one process: read, the graph, the write. On CPUs
    the staged layout spent a third more CPU per image than the stages cost alone, moving
    the 384-px RGB/ELA arrays and maps between actors through the object store
    (benchmarks/RESULTS.md); here they never leave the process. Same stages, same order,
    same rows out as the staged layout."""

    def __init__(self, config: PipelineConfig, out: str, run_id: str,
                 s3: S3Options | None) -> None:
        self.stages = [ReadBytes(config, s3), *build_stages(config),
                       WriteResults(out, run_id, s3, config.runtime.write_heatmaps)]

    def __call__(self, batch: Batch) -> Batch:
        return analyse(self.stages, batch)


def worker_class(run_id: str) -> type[ScanWorker]:
    """``ScanWorker`` under a name unique to the run, so ``release_workers`` finds this run's
    actors and no other's."""
    return type("ScanWorker_" + re.sub(r"\W", "_", run_id), (ScanWorker,), {})


def release_workers(run_id: str) -> int:
    """Kill the fused workers of a failed run; returns how many.

    Ray Data 2.60 keeps the actor handles of a dataset whose task failed in the done-callbacks
    of its other in-flight tasks, so after a failure the actors -- and the CPUs they reserved
    -- live as long as the driver. With the fused layout they hold every CPU, and the next
    scan from the same process (a notebook, a retry loop, tests) would wait forever for CPUs
    to start its own workers. Ray kills an actor when its handles are gone; these are not."""
    from ray.actor import ActorHandle

    name = worker_class(run_id).__name__
    gc.collect()
    handles = [obj for obj in gc.get_objects() if isinstance(obj, ActorHandle)
               and name in obj._ray_actor_creation_function_descriptor.class_name]
    killed = set()
    for handle in handles:
        if handle._actor_id not in killed:
            ray.kill(handle, no_restart=True)
            killed.add(handle._actor_id)
    return len(killed)


def scan(source: str, out: str, config: PipelineConfig | None = None,
         s3: S3Options | None = None, resources: ScanResources | None = None,
         show_progress: bool = True) -> ScanSummary:
    """Scan every file under ``source`` into the Parquet dataset at ``out``; resumable."""
    config = config or PipelineConfig()
    resources = resources or ScanResources()
    sink = ResultSink(out, s3)
    run_id = new_run_id()
    uris = list_source(source, s3)
    done = sink.done_uris(model_versions(config))
    todo = [u for u in uris if u not in done]
    summary = ScanSummary(
        source, out, run_id, total=len(uris), skipped_done=len(uris) - len(todo),
        tamper_threshold=config.tamper_threshold,
        operating_point=config.operating_point and config.operating_point.model_dump(
            mode="json"))
    start = time.perf_counter()
    try:
        if todo:
            _run(build_dataset(todo, out, run_id, config, s3, resources), summary, len(todo),
                 show_progress)
        summary.seconds = time.perf_counter() - start
        summary.superseded_rows_dropped = sink.compact()
        index = sink.read_index(("uri", "status", "tampered")).to_pydict()
        summary.counts = dict(Counter(index["status"]))
        summary.flagged = sum(bool(t) for t in index["tampered"])
        sink.write_file("summary.json", summary.to_json().encode())
    except Exception as exc:
        reason = root_cause(exc)
        failure = ScanFailed(
            f"scan of {source} into {out} failed after {summary.processed} of {len(todo)} "
            f"rows: {reason}. The rows written so far are kept: fix the cause and re-run "
            "with the same output to resume.", reason, "".join(traceback.format_exception(exc)))
    else:
        return summary
    # Raised outside the handler, with the original error kept as text: a live traceback
    # would hold the dataset (and its actors) for as long as anyone keeps the error.
    release_workers(run_id)
    raise failure


def _run(ds: ray.data.Dataset, summary: ScanSummary, total: int, show_progress: bool) -> None:
    kinds: Counter[str] = Counter()
    columns = [TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}")]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task("scan", total=total, info="")
        flagged = 0
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            summary.processed += len(batch["uri"])
            flagged += int(batch["tampered"].sum())
            kinds.update(e.split(":", 1)[0] for e in batch["error"].tolist() if e)
            summary.errors_by_kind = dict(kinds)
            progress.update(bar, advance=len(batch["uri"]),
                            info=f"errors {sum(kinds.values())}  flagged {flagged}")
