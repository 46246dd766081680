"""Settings of the online endpoint: the application builder's validated arguments (``args:``
in serve_config.yaml) and each deployment's replica options."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tamperscan.config import PipelineConfig, S3Options


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
