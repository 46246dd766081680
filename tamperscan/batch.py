"""Column batches: the one data shape every stage takes and returns.

A batch is ``dict[str, np.ndarray]`` with one entry per row. ``status``/``error`` carry each
row's outcome: a stage skips rows that are already ``error`` and marks a row it fails on
instead of raising, so a bad input never stops a batch and is never dropped.
"""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]


def size(batch: Batch) -> int:
    return len(batch["uri"])


def ok_rows(batch: Batch) -> np.ndarray:
    """Boolean per row: still ``ok``."""
    return np.asarray(batch["status"]) == "ok"


def strings(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def objects(values: list) -> np.ndarray:
    """An object column of arbitrary per-row values (arrays of varying shape, bytes...);
    ``np.array`` would try to stack equal-shaped arrays into one block."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def mark_error(batch: Batch, i: int, kind: str, message: str) -> None:
    batch["status"][i] = "error"
    batch["error"][i] = f"{kind}: {message}"


def with_row_state(batch: Batch) -> Batch:
    """A shallow copy whose ``status``/``error`` columns may be written without touching the
    caller's batch (Ray Data hands stages read-only arrays)."""
    return {**batch, "status": strings(batch["status"]), "error": strings(batch["error"])}


def bytes_batch(data: list[bytes], uris: list[str] | None = None) -> Batch:
    """Encoded images as ReadBytes hands them on: the in-process entry to the graph."""
    n = len(data)
    return {"uri": strings(uris or [f"image-{i}" for i in range(n)]),
            "data": objects(list(data)), "status": strings(["ok"] * n),
            "error": strings([""] * n)}
