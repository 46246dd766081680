"""Latency and throughput of the online endpoint, batched vs unbatched, at concurrency 1/4/16.

Usage: .venv/bin/python benchmarks/serve_load.py [--batch 8] [--requests 4] [--min-requests 12]
       [--skip-refine] [--backend torch|onnxruntime] [--config pipeline.yaml] [--num-cpus N]
       [--concurrency 1 4 16]

Deploys the Serve app (tamperscan.serve.build_app: the graph of tamperscan.graph, placed by
tamperscan.serve_service) on a local Ray, one replica per deployment, twice: model stages
with ``max_batch_size`` 1 (unbatched) and ``--batch`` (batched). For each concurrency c,
max(--min-requests, --requests * c) POST /v1/scan requests (raw body, images from
samples/images in turn) go over loopback HTTP with at most c in flight, after 2c untimed
warm-up requests at the same concurrency; p50/p95/p99 are per-request latencies, throughput
is requests / wall time. Queues are sized so nothing is rejected; any non-200 is counted and
reported. ``--skip-refine`` sets refine.cam_weight=0 so the cascade refines no image (the
shipped config already has it 0; give a ``--config`` with a cam_weight to measure
refinement): Refine is per image and unbatched, so with it the CPU time of segment-and-fuse
dominates and hides what batching does to the model stages.
Weights: models/*.safetensors when present, else seeded random weights of the same nets
(speed does not depend on the values).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import ray
from ray import serve

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.machine_info import machine_info, print_header  # noqa: E402
from benchmarks.model_weights import with_weights  # noqa: E402
from tamperscan.cluster import init_ray  # noqa: E402
from tamperscan.config import PipelineConfig, load_pipeline_config  # noqa: E402
from tamperscan.serve import ReplicaOptions, ServeSettings, build_app  # noqa: E402

KEY = "benchmark-key-0123456789abcdef"


def pipeline_config(tmp: Path, path: Path | None, skip_refine: bool,
                    backend: str | None) -> tuple[PipelineConfig, str]:
    """The shipped config (or ``--config``'s) with the options of the command line."""
    config = load_pipeline_config(path, refine={"cam_weight": 0.0} if skip_refine else None,
                                  runtime={"backend": backend} if backend else None)
    return with_weights(config, tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(config: PipelineConfig, batch: int, cpus: float) -> ServeSettings:
    share = max(0.1, min(1.0, cpus / 4))
    fixed = {"num_replicas": 1, "num_cpus": share, "num_gpus": 0}
    big_queue = {"max_ongoing_requests": 64, "max_queued_requests": 1024}
    return ServeSettings(
        pipeline=config, max_batch_size=batch, batch_wait_timeout_s=0.01,
        ingress=ReplicaOptions(**fixed, **big_queue),
        models=ReplicaOptions(**fixed, **big_queue),
        refine=ReplicaOptions(**fixed, **big_queue),
    )


async def load(url: str, images: list[bytes], concurrency: int, total: int) -> dict:
    """``total`` requests with at most ``concurrency`` in flight."""
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal failures
        async with slots:
            start = time.perf_counter()
            response = await client.post("/v1/scan", content=images[i % len(images)])
            latencies.append(time.perf_counter() - start)
            failures += response.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits,
                                 headers={"X-API-Key": KEY}) as client:
        # Warm-up at the same concurrency (untimed): each new batch shape allocates and
        # fills oneDNN's primitive cache once.
        await asyncio.gather(*(one(client, i) for i in range(2 * concurrency)))
        latencies.clear()
        failures = 0
        start = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(total)))
        wall = time.perf_counter() - start
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {"p50": p50, "p95": p95, "p99": p99, "rps": total / wall, "n": total,
            "failures": failures}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="max_batch_size when batched")
    parser.add_argument("--requests", type=int, default=4, help="requests per unit of "
                        "concurrency (total = this * c, at least --min-requests)")
    parser.add_argument("--min-requests", type=int, default=12)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--skip-refine", action="store_true")
    parser.add_argument("--backend", help="runtime.backend (default: the config's)")
    parser.add_argument("--config", type=Path, help="YAML of PipelineConfig fields")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    images = [p.read_bytes() for p in sorted((REPO / "samples" / "images").iterdir())
              if p.is_file()]
    os.environ.setdefault("TAMPERSCAN_API_KEYS", KEY)
    with tempfile.TemporaryDirectory() as tmp:
        config, weights = pipeline_config(Path(tmp), args.config, args.skip_refine,
                                          args.backend)
        print_header(machine_info([sys.argv[0] if argv is None else "benchmarks/serve_load.py",
                                   *(sys.argv[1:] if argv is None else argv)]))
        print(f"Ray CPUs: {args.num_cpus}; weights: {weights}; images: {len(images)} from "
              f"samples/images; refine {config.refine.model_dump()}; backend "
              f"{config.runtime.backend}")
        init_ray(args.num_cpus)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        results = {}
        try:
            for label, batch in (("unbatched", 1), ("batched", args.batch)):
                settings = settings_for(config, batch, args.num_cpus)
                serve.run(build_app(settings), name="tamperscan", route_prefix="/")
                for c in args.concurrency:
                    results[label, c] = asyncio.run(
                        load(f"http://127.0.0.1:{port}", images, c,
                             max(args.min_requests, args.requests * c)))
                serve.delete("tamperscan")
        finally:
            serve.shutdown()
            ray.shutdown()

    print("\n| mode | max_batch_size | concurrency | requests | p50 s | p95 s | p99 s | "
          "req/s | non-200 |\n|---|---|---|---|---|---|---|---|---|")
    for (label, c), r in results.items():
        batch = 1 if label == "unbatched" else args.batch
        print(f"| {label} | {batch} | {c} | {r['n']} | {r['p50']:.3f} | {r['p95']:.3f} | "
              f"{r['p99']:.3f} | {r['rps']:.2f} | {r['failures']} |")
    print("\nthroughput ratio batched / unbatched:")
    ratios = [results["batched", c]["rps"] / results["unbatched", c]["rps"]
              for c in args.concurrency]
    for c, ratio in zip(args.concurrency, ratios, strict=True):
        print(f"  concurrency {c:>2}: {ratio:.2f}x")
    print(f"  median over concurrencies: {statistics.median(ratios):.2f}x")
    return {f"{label} c{c}": r for (label, c), r in results.items()}


if __name__ == "__main__":
    main()
