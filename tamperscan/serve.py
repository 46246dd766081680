"""The online endpoint: the bulk scan's stages as a Ray Serve application.

Graph (deployment names in brackets; serve_config.yaml tunes them by these names)::

    HTTP ─► [ScanAPI] auth, body limits, DecodeELA ─┬─► [Localize] ─┐
                                                    └─► [Detect]  ─┴─► cascade? ─► [Refine]
                     ◄── JSON ◄── Finalize (+ mask RLE, overlay) ◄──────────────────┘

- The stage classes are those of `tamperscan.stages`, unchanged: a request is a one-row batch,
  so the JSON for an image is the bulk scan's row for it.
- Localize and Detect read disjoint inputs, so the ingress calls them concurrently.
- Model stages sit behind ``@serve.batch``: concurrent requests are stacked into one forward
  pass (``max_batch_size`` / ``batch_wait_timeout_s`` via ``user_config``, live-tunable).
- Refine is only called when the image score reaches ``refine_threshold`` (the cascade).
- Every deployment has ``max_ongoing_requests`` and ``max_queued_requests``; beyond them a
  request gets 503 with ``Retry-After`` and the service keeps serving the admitted ones.

Start it with ``tamperscan serve``, ``serve run deployments/serve_config.yaml`` or
``serve.run(build_app({...}))``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from pathlib import Path

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from tamperscan.config import PipelineConfig, S3Options, model_path
from tamperscan.io import SourceError, read_bytes
from tamperscan.serve_auth import AuthConfigError, KeyChecker, load_api_keys
from tamperscan.serve_response import (
    DECODE_STATUS,
    SOURCE_STATUS,
    ScanFailure,
    internal_failure,
    overlay_png,
    scan_result,
)
from tamperscan.stages import (
    Batch,
    DecodeELA,
    Detect,
    Finalize,
    Localize,
    Refine,
    final_map,
    image_score,
    weights_version,
)

logger = logging.getLogger("ray.serve")

#: Stages that run in their own deployments, by deployment name.
REMOTE_STAGES: dict[str, type] = {"Localize": Localize, "Detect": Detect, "Refine": Refine}
DEPLOYMENT_NAMES = ("ScanAPI", *REMOTE_STAGES)
_ROW_STATE = ("status", "error")


class ReplicaOptions(BaseModel):
    """Serve options of one deployment; serve_config.yaml may still override any of them by
    deployment name."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int | None = Field(default=None, ge=1,
                                     description="fixed replica count; unset = autoscale")
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    max_ongoing_requests: int = Field(default=8, ge=1)
    max_queued_requests: int = Field(default=32, ge=1)
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float | None = Field(default=0.0, ge=0,
                                   description="unset = 1 when the cluster has GPUs")

    def deployment_options(self, cluster_has_gpus: bool) -> dict:
        gpus = self.num_gpus if self.num_gpus is not None else (1.0 if cluster_has_gpus else 0.0)
        options: dict = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": gpus},
        }
        if self.num_replicas:
            options["num_replicas"] = self.num_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        return options


class ServeSettings(BaseModel):
    """Arguments of the application builder (``args:`` in serve_config.yaml). No secrets here:
    API keys come from the environment or a secrets file, S3 credentials from ``AWS_*``."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    api_keys_file: str | None = Field(default=None, description="one key per line; see "
                                      "tamperscan.serve_auth for TAMPERSCAN_API_KEYS")
    allow_unauthenticated: bool = Field(default=False, description="local development only")
    allowed_buckets: list[str] = Field(default_factory=list,
                                       description="buckets {'uri': 's3://...'} may name")
    s3: S3Options = Field(default_factory=S3Options)
    max_body_bytes: int | None = Field(default=None, ge=1,
                                       description="unset = pipeline.max_image_bytes + 1 MiB")
    body_timeout_s: float = Field(default=120.0, gt=0, description="the whole request body "
                                  "must arrive within this many seconds, else 408 (a client "
                                  "trickling bytes cannot hold a request slot for ever)")
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    overlay_max_side: int = Field(default=1024, ge=16)
    decode_concurrency: int = Field(default=2, ge=1, description="images decoded at once per "
                                    "ingress replica: bounds memory (ELA of a large image is "
                                    "several bytes per pixel)")
    public_docs: bool = Field(default=True, description="/docs and /openapi.json without a "
                              "key (they hold no data); false removes them")
    ingress: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(
        max_ongoing_requests=32, max_queued_requests=128, target_ongoing_requests=8))
    models: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(
        num_gpus=None, max_ongoing_requests=16, max_queued_requests=64,
        target_ongoing_requests=8))
    refine: ReplicaOptions = Field(default_factory=lambda: ReplicaOptions(
        max_ongoing_requests=4, max_queued_requests=32, target_ongoing_requests=2))

    @model_validator(mode="after")
    def _batches_can_fill(self) -> ServeSettings:
        if self.models.max_ongoing_requests < self.max_batch_size:
            raise ValueError("models.max_ongoing_requests must be >= max_batch_size, else a "
                             "replica never holds enough requests to fill a batch")
        return self

    @property
    def body_limit(self) -> int:
        return self.max_body_bytes or self.pipeline.max_image_bytes + 2**20


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


def pass_through_refine(config: PipelineConfig) -> Refine:
    """A Refine that never refines: its output columns for rows under the cascade threshold,
    so the ingress skips the Refine hop without loading the configured segmenter (SAM & co.);
    the training-free default costs nothing to build. ``model_copy`` does not validate, so
    the threshold may sit above any score."""
    return Refine(config.model_copy(update={"refine_threshold": math.inf,
                                            "segmenter": "felzenszwalb",
                                            "segmenter_options": {}}))


# --- deployments ------------------------------------------------------------------------------

@serve.deployment
class StageDeployment:
    """One pipeline stage (Localize, Detect or Refine) behind ``@serve.batch``."""

    def __init__(self, stage: str, config: PipelineConfig) -> None:
        self.name = stage
        self.config = config
        self.stage = REMOTE_STAGES[stage](config)
        self.batching = {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}

    def reconfigure(self, user_config: dict) -> None:
        self.batching = {"max_batch_size": int(user_config.get("max_batch_size", 8)),
                         "batch_wait_timeout_s": float(user_config.get("batch_wait_timeout_s",
                                                                       0.01))}
        self._run_batch.set_max_batch_size(self.batching["max_batch_size"])
        self._run_batch.set_batch_wait_timeout_s(self.batching["batch_wait_timeout_s"])

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _run_batch(self, batches: list[Batch]) -> list[Batch]:
        merged, sizes = concat_batches(batches)
        # In a worker thread: the replica's event loop keeps admitting the next batch.
        out = await asyncio.to_thread(self.stage, merged)
        return split_batch(new_columns(merged, out), sizes)

    async def __call__(self, batch: Batch) -> Batch:
        return await self._run_batch(batch)

    def info(self) -> dict:
        """What runs here: /v1/models and /readyz."""
        out = {"stage": self.name, "batching": self.batching}
        if hasattr(self.stage, "config_attr"):
            weights = model_path(getattr(self.config, self.stage.weights_attr))
            engine = getattr(self.stage, "engine", None)
            out.update(model=getattr(self.config, self.stage.config_attr),
                       weights=Path(weights).name, version=weights_version(str(weights)),
                       input_size=self.stage.size,
                       engine={k: str(getattr(engine, k, "")) for k in
                               ("name", "device", "precision")})
        else:
            out.update(segmenter=self.config.segmenter,
                       refine_threshold=self.config.refine_threshold)
        return out


def _failure_from_row(batch: Batch, where: str) -> ScanFailure:
    """A row's error as an HTTP failure: decode errors are the client's, the rest ours."""
    code, _, message = str(batch["error"][0]).partition(": ")
    if code in DECODE_STATUS and where == "decode":
        return ScanFailure(DECODE_STATUS[code], code, message)
    return internal_failure(f"{where}: {batch['error'][0]}")


class ScanService:
    """The request path, independent of HTTP: bytes in, JSON-ready dict out."""

    def __init__(self, settings: ServeSettings, stages: dict) -> None:
        self.settings = settings
        config = settings.pipeline
        keys = load_api_keys(settings.api_keys_file)
        if not keys and not settings.allow_unauthenticated:
            raise AuthConfigError("no API keys configured: set TAMPERSCAN_API_KEYS, "
                                  "TAMPERSCAN_API_KEYS_FILE or api_keys_file (or "
                                  "allow_unauthenticated for local development)")
        self.keys = KeyChecker(keys)
        self.decode, self.finalize = DecodeELA(config), Finalize(config)
        self.skip_refine = pass_through_refine(config)
        self.cpu_slots = asyncio.Semaphore(settings.decode_concurrency)
        self.stages = stages  # deployment name -> DeploymentHandle
        self.thresholds = {"tamper": config.tamper_threshold, "mask": config.mask_threshold,
                           "refine": config.refine_threshold}

    def key_ok(self, key: str | None) -> bool:
        if self.settings.allow_unauthenticated and not self.keys:
            return True
        return self.keys.check(key)

    async def _call(self, name: str, batch: Batch) -> Batch:
        try:
            return await self.stages[name].remote(batch)
        except BackPressureError as exc:
            raise ScanFailure(503, "overloaded", f"the service is at capacity ({name}); "
                              "retry shortly", {"Retry-After": "1"}) from exc
        except (DeploymentUnavailableError, RayActorError) as exc:
            logger.warning("stage %s unavailable: %s", name, exc)
            raise ScanFailure(503, "unavailable", f"the {name} stage is not available; "
                              "retry shortly", {"Retry-After": "5"}) from exc

    async def scan_bytes(self, data: bytes, source: str, heatmap: bool = False) -> dict:
        start = time.perf_counter()
        batch: Batch = {"uri": np.array([source], dtype=object),
                        "data": np.array([data], dtype=object)}
        async with self.cpu_slots:
            batch = await asyncio.to_thread(self.decode, batch)
        if batch["status"][0] != "ok":
            raise _failure_from_row(batch, "decode")
        localized, detected = await asyncio.gather(self._call("Localize", batch),
                                                   self._call("Detect", batch))
        batch = merge_outputs(batch, localized, detected)
        if batch["status"][0] != "ok":
            raise _failure_from_row(batch, "models")
        pipeline = self.settings.pipeline
        if pipeline.cam_weight > 0 and image_score(batch, pipeline)[0] >= pipeline.refine_threshold:
            batch = merge_outputs(batch, await self._call("Refine", batch))
        else:
            batch = self.skip_refine(batch)
        if batch["status"][0] != "ok":
            raise _failure_from_row(batch, "refine")
        async with self.cpu_slots:
            return await asyncio.to_thread(self._finish, batch, heatmap, start)

    def _finish(self, batch: Batch, heatmap: bool, start: float) -> dict:
        began = time.perf_counter()
        row = self.finalize(batch)
        overlay = None
        if heatmap:
            heat = final_map(batch["ts_map"][0], batch["refined"][0], batch["was_refined"][0],
                             self.settings.pipeline.cam_weight)
            overlay = overlay_png(batch["rgb"][0], heat, int(row["width"][0]),
                                  int(row["height"][0]), self.settings.overlay_max_side)
        now = time.perf_counter()
        return scan_result(row, overlay, now - began, now - start, self.thresholds)

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
        calls = [self.stages[name].info.remote() for name in REMOTE_STAGES]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*calls), timeout_s))
        except (TimeoutError, DeploymentUnavailableError, RayActorError, BackPressureError) as exc:
            raise ScanFailure(503, "not_ready", "model stages are not ready") from exc

    async def models(self) -> dict:
        config = self.settings.pipeline
        return {"model_versions": self.finalize.versions, "stages": await self.stage_info(),
                "thresholds": self.thresholds, "ela_quality": config.ela_quality,
                "limits": {"max_image_bytes": config.max_image_bytes,
                           "max_image_pixels": config.max_image_pixels,
                           "max_body_bytes": self.settings.body_limit}}


@serve.deployment
@serve.ingress()
class ScanAPI(ScanService):
    """The FastAPI ingress; the app is built per replica from the settings (docs on/off,
    body limits), see `tamperscan.serve_api`."""

    def __serve_build_asgi_app__(self):
        from tamperscan.serve_api import build_api

        return build_api(self)


# --- the application builder ------------------------------------------------------------------

def _cluster_has_gpus() -> bool:
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def build_app(args: dict | ServeSettings | None = None) -> Application:
    """Serve application builder (``import_path: tamperscan.serve:build_app``)."""
    settings = args if isinstance(args, ServeSettings) else ServeSettings.model_validate(args or {})
    gpus = _cluster_has_gpus()
    handles = {}
    for name, options in (("Localize", settings.models), ("Detect", settings.models),
                          ("Refine", settings.refine)):
        config = settings.pipeline
        if not config.torch_threads:  # one intra-op thread per reserved CPU: no oversubscription
            config = config.model_copy(update={"torch_threads": max(1, math.ceil(
                options.num_cpus))})
        batch = settings.max_batch_size if name != "Refine" else 1
        handles[name] = StageDeployment.options(
            name=name, **options.deployment_options(gpus),
            user_config={"max_batch_size": batch,
                         "batch_wait_timeout_s": settings.batch_wait_timeout_s},
        ).bind(name, config)
    return ScanAPI.options(
        name="ScanAPI", **settings.ingress.deployment_options(False),
        backpressure_config={"status_code": 503, "retry_after_s": 1},
    ).bind(settings, handles)
