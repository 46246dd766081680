"""The graph's entry from storage: uri -> the original bytes."""

from __future__ import annotations

import numpy as np

from tamperscan.batch import Batch, objects, strings
from tamperscan.config import PipelineConfig, S3Options
from tamperscan.io import SourceError, read_bytes


class ReadBytes:
    """uri -> original bytes (ELA needs the real file, never a re-encode). An unreadable
    source becomes an error row (``not_found``, ``io``, ``too_large``...)."""

    def __init__(self, config: PipelineConfig, s3: S3Options | None = None) -> None:
        self.max_bytes = config.max_image_bytes
        self.s3 = s3

    def __call__(self, batch: Batch) -> Batch:
        uris = list(batch["uri"])
        data, status, error = [], [], []
        for uri in uris:
            try:
                data.append(read_bytes(uri, self.max_bytes, self.s3))
                status.append("ok")
                error.append("")
            except SourceError as exc:
                data.append(b"")
                status.append("error")
                error.append(f"{exc.kind}: {exc}")
        return {"uri": strings(uris), "data": objects(data), "status": strings(status),
                "error": strings(error)}


def read_batch(uris: list[str], config: PipelineConfig, s3: S3Options | None = None) -> Batch:
    """A batch of URIs read into bytes: the in-process entry for callers holding URIs."""
    return ReadBytes(config, s3)({"uri": np.array(uris, dtype=object)})
