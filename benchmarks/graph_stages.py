"""The scan graph's stages as the benchmarks time them, each under a short name.

The stages and their order come from `tamperscan.graph` (``STAGES``, ``build_stages``) and,
for a whole scan worker, from `tamperscan.pipeline.ScanWorker` (read, the graph, write): a
benchmark never wires stages of its own, so a stage added to the graph is timed too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tamperscan.batch import Batch
from tamperscan.config import PipelineConfig
from tamperscan.graph import STAGES
from tamperscan.pipeline import ScanWorker
from tamperscan.results import WriteResults
from tamperscan.stages import ReadBytes

Stage = Callable[[Batch], Batch]
_EDGES = {ReadBytes: "read", WriteResults: "write"}


def stage_name(stage: object) -> str:
    """Short name of a stage (class or instance): ``read`` / ``write`` at the edges, else its
    timing column without ``t_`` (decode, copy_move, jpeg, nets, refine, fuse), else
    its class name in lower case (score)."""
    cls = stage if isinstance(stage, type) else type(stage)
    if cls in _EDGES:
        return _EDGES[cls]
    timing = getattr(cls, "timing", None)
    return timing.removeprefix("t_") if timing else cls.__name__.lower()


#: Names of the graph's stages, in order, and of a scan worker's (read, graph, write).
GRAPH_NAMES = tuple(stage_name(stage) for stage in STAGES)
NAMES = ("read", *GRAPH_NAMES, "write")


def named(stages: list[Stage]) -> list[tuple[str, Stage]]:
    return [(stage_name(stage), stage) for stage in stages]


def worker_stages(config: PipelineConfig, out: Path | str,
                  run_id: str = "benchmark") -> list[tuple[str, Stage]]:
    """What one fused scan worker runs on a batch of URIs, named: read, the graph, write
    (Parquet parts into ``out``)."""
    stages = named(ScanWorker(config, str(out), run_id, None).stages)
    assert tuple(name for name, _ in stages) == NAMES, stages
    return stages
