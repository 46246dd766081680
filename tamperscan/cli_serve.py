"""`tamperscan serve`: the online endpoint on a local Ray (or the cluster in RAY_ADDRESS)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer
import yaml


def local_settings(settings: dict, cpus: float) -> dict:
    """One replica per deployment, each reserving a share of this machine's CPUs, unless the
    settings file says otherwise: autoscaling defaults assume a cluster."""
    share = min(1.0, cpus / 4)
    for group in ("ingress", "models", "refine"):
        options = settings.setdefault(group, {})
        options.setdefault("num_replicas", 1)
        options.setdefault("num_cpus", share)
    return settings


def serve_command(
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML file with PipelineConfig fields (weights, thresholds).")] = None,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="YAML file with ServeSettings fields (see deployments/"
                           "serve_config.yaml `args`).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    api_keys_file: Annotated[Path | None, typer.Option(
        "--api-keys-file", help="One key per line (or set TAMPERSCAN_API_KEYS).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(
        help="Requests stacked into one model forward pass.")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Serve without API keys (local development only).")] = False,
) -> None:
    """Serve POST /v1/scan (and /v1/models, /healthz, /readyz, /docs) until Ctrl-C."""
    import ray
    from ray import serve

    from tamperscan.cluster import init_ray
    from tamperscan.config import load_pipeline_config
    from tamperscan.serve import ServeSettings, build_app

    raw = yaml.safe_load(settings_file.read_text()) if settings_file else {}
    raw = raw or {}
    pipeline = load_pipeline_config(config).model_dump() if config else {}
    raw["pipeline"] = {**raw.get("pipeline", {}), **pipeline}
    overrides = {"api_keys_file": str(api_keys_file) if api_keys_file else None,
                 "max_batch_size": max_batch_size,
                 "allow_unauthenticated": True if insecure_no_auth else None}
    raw.update({k: v for k, v in overrides.items() if v is not None})

    init_ray(num_cpus)
    if not os.environ.get("RAY_ADDRESS"):  # a Ray started here, on this machine
        raw = local_settings(raw, ray.cluster_resources().get("CPU", 1.0))
    if raw.get("max_batch_size") and "models" in raw:
        raw["models"].setdefault("max_ongoing_requests", max(16, 2 * raw["max_batch_size"]))
    settings = ServeSettings.model_validate(raw)
    serve.start(http_options={"host": host, "port": port})
    typer.echo(f"tamperscan endpoint on http://{host}:{port}  (docs: /docs; Ctrl-C stops)",
               err=True)
    signal.signal(signal.SIGTERM, _interrupt)  # containers stop with SIGTERM: shut down cleanly
    try:
        serve.run(build_app(settings), name="tamperscan", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
