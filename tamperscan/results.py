"""The output row schema and the stage that writes rows to the sink (an edge: masks and
heatmaps are encoded here, `tamperscan.render`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from tamperscan import graph
from tamperscan.config import S3Options
from tamperscan.io import HEATMAPS_DIR, ResultSink
from tamperscan.render import heatmap_png, mask_png


def output_schema() -> pa.Schema:
    """The Parquet schema of output rows. Evidence scores and stage timings come from the
    graph: a new evidence stage adds its columns here without an edit."""
    return pa.schema([
        ("uri", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("score", pa.float32()),
        ("tampered", pa.bool_()),
        ("score_two_stream", pa.float32()),
        ("score_wcbnet", pa.float32()),
        ("score_wcbnet_heads", pa.list_(pa.float32(), 3)),
        *((column, pa.float32()) for column in graph.joined("score_column")),
        *((column, pa.type_for_alias(kind)) for column, kind in graph.findings().items()),
        ("refined", pa.bool_()),
        ("mask_fraction", pa.float32()),
        ("mask_png", pa.binary()),
        ("heatmap_path", pa.string()),
        ("model_versions", pa.string()),
        *((stage.timing, pa.float32()) for stage in graph.STAGES if hasattr(stage, "timing")),
        ("run_id", pa.string()),
    ])


OUTPUT_SCHEMA = output_schema()

SUMMARY_COLUMNS = ("uri", "status", "error", "score", "tampered")


def heatmap_name(uri: str) -> str:
    """Stable, filesystem-safe name: URIs may hold spaces, Unicode or ``../``."""
    return f"{HEATMAPS_DIR}/{hashlib.sha1(uri.encode()).hexdigest()[:20]}.png"


def to_table(batch: dict[str, np.ndarray], run_id: str, heatmap_paths: list[str]) -> pa.Table:
    """Fuse's output rows as the Parquet schema, the masks PNG-encoded."""
    n = len(batch["uri"])
    columns = {}
    schema = output_schema()
    for field in schema:
        if field.name == "run_id":
            values = [run_id] * n
        elif field.name == "heatmap_path":
            values = heatmap_paths
        elif field.name == "mask_png":
            values = [mask_png(mask) for mask in batch["mask"]]
        elif field.name == "score_wcbnet_heads":
            values = [list(map(float, row)) for row in batch[field.name]]
        elif field.name in batch:
            values = batch[field.name].tolist()
        else:
            values = [None] * n
        columns[field.name] = pa.array(values, field.type, from_pandas=True)
    return pa.table(columns, schema=schema)


class WriteResults:
    """Writes one atomic Parquet part per batch (+ heatmap PNGs of ok rows with
    ``write_heatmaps``) and passes on a small summary."""

    def __init__(self, out: str, run_id: str, s3: S3Options | None = None,
                 write_heatmaps: bool = False) -> None:
        self.out, self.run_id, self.s3 = out, run_id, s3
        self.write_heatmaps = write_heatmaps
        self._sink: ResultSink | None = None

    @property
    def sink(self) -> ResultSink:
        if self._sink is None:  # built lazily: filesystems do not pickle to workers reliably
            self._sink = ResultSink(self.out, self.s3)
        return self._sink

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths: list[str | None] = []
        for uri, status, heat in zip(batch["uri"], batch["status"], batch["heatmap"],
                                     strict=True):
            if self.write_heatmaps and status == "ok":
                paths.append(heatmap_name(uri))
                self.sink.write_file(paths[-1], heatmap_png(heat))
            else:
                paths.append(None)
        self.sink.write_part(to_table(batch, self.run_id, paths), self.run_id)
        return {k: batch[k] for k in SUMMARY_COLUMNS}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sink": None}
