"""The endpoint's request path, independent of HTTP: bytes in, JSON-ready dict out.

A request is a one-row batch through the graph of `tamperscan.graph`, placed as the graph
allows: the decoder and the CPU evidence stages run in the ingress (in worker threads, at
most ``decode_concurrency`` at once), the model stages and Refine in their own deployments
(``remote``). The evidence stages read only the decoder's columns, so they run concurrently;
Refine is called only for rows the cascade selected. The JSON is rendered from the row's
values (`tamperscan.render`), so an image gets the bulk scan's row.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import numpy as np
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from tamperscan.batch import Batch, bytes_batch
from tamperscan.graph import EVIDENCE, STAGES, Fuse, split
from tamperscan.io import SourceError, read_bytes
from tamperscan.render import heatmap_png, overlay_png
from tamperscan.serve_auth import AuthConfigError, KeyChecker, load_api_keys
from tamperscan.serve_response import (
    DECODE_STATUS,
    SOURCE_STATUS,
    ScanFailure,
    internal_failure,
    scan_result,
)
from tamperscan.serve_settings import ServeSettings
from tamperscan.stages import Refine

logger = logging.getLogger("ray.serve")

#: Stages that run in deployments of their own, by deployment name: the model stages (GPUs,
#: batching across requests) and Refine (a segmenter such as SAM is a model too).
REMOTE_STAGES: dict[str, type] = {
    **{stage.__name__: stage for stage in EVIDENCE if stage.kind == "model"},
    Refine.__name__: Refine}
_ROW_STATE = ("status", "error")


# --- batches across the wire ----------------------------------------------------------------

def concat_batches(batches: list[Batch]) -> tuple[Batch, list[int]]:
    """Stack the one-row batches of concurrent requests into one batch (same columns)."""
    sizes = [len(b["uri"]) for b in batches]
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}, sizes


def split_batch(batch: Batch, sizes: list[int]) -> list[Batch]:
    bounds = np.cumsum([0, *sizes])
    return [{k: v[a:b] for k, v in batch.items()} for a, b in itertools.pairwise(bounds)]


def new_columns(before: Batch, after: Batch) -> Batch:
    """What a stage added, plus the row state: all a caller needs back (inputs stay home)."""
    return {k: v for k, v in after.items() if k not in before or k in _ROW_STATE}


def merge_outputs(batch: Batch, *outputs: Batch) -> Batch:
    """Fold stage outputs into ``batch``; a row's first error (in stage order) wins, as in
    the sequential graph where later stages pass error rows through."""
    merged = dict(batch)
    status, error = np.array(batch["status"], dtype=object), np.array(batch["error"], dtype=object)
    for out in outputs:
        merged.update({k: v for k, v in out.items() if k not in _ROW_STATE})
        failed = (np.asarray(out["status"]) != "ok") & (status == "ok")
        status[failed], error[failed] = out["status"][failed], out["error"][failed]
    merged["status"], merged["error"] = status, error
    return merged


def _failure_from_row(batch: Batch, where: str) -> ScanFailure:
    """A row's error as an HTTP failure: decode errors are the client's, the rest ours."""
    code, _, message = str(batch["error"][0]).partition(": ")
    if code in DECODE_STATUS and where == "decode":
        return ScanFailure(DECODE_STATUS[code], code, message)
    return internal_failure(f"{where}: {batch['error'][0]}")


class ScanService:
    """The request path: auth check, the graph's stages placed as the module says."""

    def __init__(self, settings: ServeSettings, remote: dict) -> None:
        self.settings = settings
        config = settings.pipeline
        keys = load_api_keys(settings.api_keys_file)
        if not keys and not settings.allow_unauthenticated:
            raise AuthConfigError("no API keys configured: set TAMPERSCAN_API_KEYS, "
                                  "TAMPERSCAN_API_KEYS_FILE or api_keys_file (or "
                                  "allow_unauthenticated for local development)")
        self.keys = KeyChecker(keys)
        front, evidence, back = split(STAGES)
        self.front = [stage(config) for stage in front]
        self.evidence = [stage.__name__ if stage.__name__ in REMOTE_STAGES else stage(config)
                         for stage in evidence]
        # Fuse keeps the inputs: the overlay is drawn over the decoded pixels.
        self.back = [stage.__name__ if stage.__name__ in REMOTE_STAGES else
                     Fuse(config, keep_inputs=True) if stage is Fuse else stage(config)
                     for stage in back]
        self.versions = next(s for s in self.back if isinstance(s, Fuse)).versions
        self.cpu_slots = asyncio.Semaphore(settings.decode_concurrency)
        self.remote = remote  # deployment name -> DeploymentHandle
        self.reads = {name: stage.reads(config) for name, stage in REMOTE_STAGES.items()}
        self.thresholds = {"tamper": config.tamper_threshold, "mask": config.mask_threshold,
                           "refine": config.refine.threshold}

    def key_ok(self, key: str | None) -> bool:
        if self.settings.allow_unauthenticated and not self.keys:
            return True
        return self.keys.check(key)

    async def _call(self, name: str, batch: Batch) -> Batch:
        # Only what the stage reads crosses to its deployment (the file's bytes, the other
        # stages' inputs and outputs stay in the ingress).
        batch = {k: batch[k] for k in ("uri", *_ROW_STATE, *self.reads[name])}
        try:
            return await self.remote[name].remote(batch)
        except BackPressureError as exc:
            raise ScanFailure(503, "overloaded", f"the service is at capacity ({name}); "
                              "retry shortly", {"Retry-After": "1"}) from exc
        except (DeploymentUnavailableError, RayActorError) as exc:
            logger.warning("stage %s unavailable: %s", name, exc)
            raise ScanFailure(503, "unavailable", f"the {name} stage is not available; "
                              "retry shortly", {"Retry-After": "5"}) from exc

    async def _local(self, stage, batch: Batch) -> Batch:
        """A CPU stage in a worker thread, holding one of the ingress's CPU slots."""
        async with self.cpu_slots:
            return await asyncio.to_thread(stage, batch)

    async def _new_columns(self, stage, batch: Batch) -> Batch:
        if isinstance(stage, str):
            return await self._call(stage, batch)
        return new_columns(batch, await self._local(stage, batch))

    async def scan_bytes(self, data: bytes, source: str, heatmap: bool = False) -> dict:
        start = time.perf_counter()
        batch = bytes_batch([data], [source])
        for stage in self.front:
            batch = await self._local(stage, batch)
        if batch["status"][0] != "ok":
            raise _failure_from_row(batch, "decode")
        outputs = await asyncio.gather(*(self._new_columns(s, batch) for s in self.evidence))
        batch = merge_outputs(batch, *outputs)
        if batch["status"][0] != "ok":
            raise _failure_from_row(batch, "evidence")
        began = time.perf_counter()
        for stage in self.back:
            if isinstance(stage, str):  # Refine: only where the cascade selected the row
                if batch["refine"].any():
                    batch = merge_outputs(batch, await self._call(stage, batch))
            else:
                batch = await asyncio.to_thread(stage, batch)
            if batch["status"][0] != "ok":
                raise _failure_from_row(batch, stage if isinstance(stage, str) else
                                        type(stage).__name__)
        return await asyncio.to_thread(self._render, batch, heatmap, began, start)

    def _render(self, row: Batch, heatmap: bool, began: float, start: float) -> dict:
        """The edge: the row's values encoded for JSON."""
        images = None
        if heatmap:
            width, height = int(row["width"][0]), int(row["height"][0])
            images = {"overlay": overlay_png(row["rgb"][0], row["heatmap"][0], width, height,
                                             self.settings.overlay_max_side),
                      "values": heatmap_png(row["heatmap"][0])}
        now = time.perf_counter()
        return scan_result(row, images, now - began, now - start, self.thresholds)

    async def scan_uri(self, uri: str, heatmap: bool = False) -> dict:
        try:
            data = await asyncio.to_thread(read_bytes, uri, self.settings.pipeline.max_image_bytes,
                                           self.settings.s3)
        except SourceError as exc:
            if exc.kind == "io":  # storage details (endpoints, credentials errors) stay in logs
                logger.warning("reading %s failed: %s", uri, exc)
                raise ScanFailure(502, "storage", "could not read the object from storage") \
                    from exc
            # bad_uri (a key that cannot be addressed faithfully) is the client's: 422
            raise ScanFailure(SOURCE_STATUS.get(exc.kind, 422), exc.kind, str(exc)) from exc
        return await self.scan_bytes(data, uri, heatmap)

    async def stage_info(self, timeout_s: float = 10.0) -> list[dict]:
        calls = [self.remote[name].info.remote() for name in REMOTE_STAGES]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*calls), timeout_s))
        except (TimeoutError, DeploymentUnavailableError, RayActorError, BackPressureError) as exc:
            raise ScanFailure(503, "not_ready", "model stages are not ready") from exc

    async def models(self) -> dict:
        config = self.settings.pipeline
        point = config.operating_point
        return {"model_versions": self.versions, "stages": await self.stage_info(),
                "thresholds": self.thresholds,
                "operating_point": point.model_dump(mode="json") if point else None,
                "ela_quality": config.ela_quality,
                "limits": {"max_image_bytes": config.max_image_bytes,
                           "max_image_pixels": config.max_image_pixels,
                           "max_body_bytes": self.settings.body_limit}}
