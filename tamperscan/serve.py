"""The online endpoint: the scan graph as a Ray Serve application.

Graph (deployment names in brackets; serve_config.yaml tunes them by these names)::

    HTTP ─► [ScanAPI] auth, limits, DecodeELA ─┬─► FindCopyMove, JpegEvidence (ingress) ─┐
                                               └─► [Nets] localizer + WCBnet ─────────────┴─► Score
                 ◄── JSON (render) ◄── Fuse ◄── [Refine] if the cascade selects the row ◄┘

- The stages and their order are `tamperscan.graph`'s (placement: `tamperscan.serve_service`):
  a request is a one-row batch, so the JSON for an image is the bulk scan's row for it.
- Model stages sit behind ``@serve.batch``: concurrent requests are stacked into one forward
  pass (``max_batch_size`` / ``batch_wait_timeout_s`` via ``user_config``, live-tunable).
- Every deployment has ``max_ongoing_requests`` and ``max_queued_requests``; beyond them a
  request gets 503 with ``Retry-After`` and the service keeps serving the admitted ones.

Start it with ``tamperscan serve``, ``serve run deployments/serve_config.yaml`` or
``serve.run(build_app({...}))``.
"""

from __future__ import annotations

import asyncio
import math

import ray
from ray import serve
from ray.serve import Application

from tamperscan.batch import Batch
from tamperscan.config import PipelineConfig
from tamperscan.provenance import weights_version
from tamperscan.serve_api import build_api
from tamperscan.serve_service import (
    REMOTE_STAGES,
    ScanService,
    concat_batches,
    new_columns,
    split_batch,
)
from tamperscan.serve_settings import ReplicaOptions, ServeSettings
from tamperscan.stages import NETS, Nets

__all__ = ["DEPLOYMENT_NAMES", "ReplicaOptions", "ScanAPI", "ServeSettings", "build_app"]

DEPLOYMENT_NAMES = ("ScanAPI", *REMOTE_STAGES)


# --- deployments ------------------------------------------------------------------------------

@serve.deployment
class StageDeployment:
    """One remote stage of the graph (a model stage or Refine) behind ``@serve.batch``."""

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
        if isinstance(self.stage, Nets):
            out.update(
                nets={net.name: {"model": self.stage.model_names[net.name],
                                 "weights": self.stage.weights[net.name].name,
                                 "version": weights_version(str(self.stage.weights[net.name]))}
                      for net in NETS},
                shared_encoder=self.stage.shared, input_size=self.stage.size,
                engines={name: {k: str(getattr(engine, k, "")) for k in
                                ("name", "device", "precision")}
                         for name, engine in self.stage.engines.items()})
        else:
            out.update(segmenter=self.config.refine.segmenter,
                       refine_threshold=self.config.refine.threshold)
        return out


@serve.deployment
@serve.ingress()
class ScanAPI(ScanService):
    """The FastAPI ingress; the app is built per replica from the settings (docs on/off,
    body limits), see `tamperscan.serve_api`."""

    def __serve_build_asgi_app__(self):
        return build_api(self)


# --- the application builder ------------------------------------------------------------------

def _cluster_has_gpus() -> bool:
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def build_app(args: dict | ServeSettings | None = None) -> Application:
    """Serve application builder (``import_path: tamperscan.serve:build_app``)."""
    settings = args if isinstance(args, ServeSettings) else ServeSettings.model_validate(args or {})
    gpus = _cluster_has_gpus()
    handles = {}
    for name, stage in REMOTE_STAGES.items():
        model = stage.kind == "model"
        options = settings.models if model else settings.refine
        config = settings.pipeline
        if not config.runtime.threads:  # one intra-op thread per reserved CPU: no oversubscription
            config = config.with_runtime(threads=max(1, math.ceil(options.num_cpus)))
        batch = settings.max_batch_size if model else 1
        handles[name] = StageDeployment.options(
            name=name, **options.deployment_options(gpus),
            user_config={"max_batch_size": batch,
                         "batch_wait_timeout_s": settings.batch_wait_timeout_s},
        ).bind(name, config)
    return ScanAPI.options(
        name="ScanAPI", **settings.ingress.deployment_options(False),
        backpressure_config={"status_code": 503, "retry_after_s": 1},
    ).bind(settings, handles)
