"""CPU cost of the JPEG evidence stage next to the rest of the scan graph, on the same images.

Usage: .venv/bin/python benchmarks/jpeg_cost.py [--count 24] [--batch 4] [--threads 1]

Images: ``mixed_image_set`` (bundled samples + synthetic forgeries and authentic images, the
training mixture of kinds and formats, longer side 640-1024 px). Each batch goes through
``build_stages`` (the shipped graph, shipped cascade, the JPEG stage included) stage by
stage; CPU seconds (``time.process_time``: every thread of the process) and wall seconds are
summed per stage. The first batch only warms up. Prints ms per image per stage and the ratio
JPEG stage / the rest of the graph (the issue's budget: <= 25 % more CPU per image).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.graph_stages import stage_name  # noqa: E402
from benchmarks.image_sets import mixed_image_set  # noqa: E402
from benchmarks.model_weights import with_weights  # noqa: E402
from tamperscan.batch import bytes_batch  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.graph import build_stages  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        images = mixed_image_set(Path(tmp) / "images", args.count + args.batch)
        config, weights = with_weights(
            PipelineConfig.model_validate({"runtime": {"threads": args.threads}}), Path(tmp))
        stages = build_stages(config)
        cpu: dict[str, float] = defaultdict(float)
        wall: dict[str, float] = defaultdict(float)
        counted = 0
        paths = images.paths
        for first in range(0, len(paths), args.batch):
            chunk = paths[first:first + args.batch]
            batch = bytes_batch([p.read_bytes() for p in chunk], [str(p) for p in chunk])
            timings = {}
            for stage in stages:
                c, w = time.process_time(), time.perf_counter()
                batch = stage(batch)
                timings[stage_name(stage)] = (time.process_time() - c, time.perf_counter() - w)
            if first == 0:
                continue  # warm-up
            counted += len(chunk)
            for name, (c, w) in timings.items():
                cpu[name] += c
                wall[name] += w
    graph = [name for name in cpu if name != "jpeg"]
    print(f"{counted} images ({images.description}), batches of {args.batch}, "
          f"{args.threads} thread(s), {weights}")
    print(f"{'stage':10s} {'CPU ms/image':>13s} {'wall ms/image':>14s}")
    for name in [*graph, "jpeg"]:
        print(f"{name:10s} {1e3 * cpu[name] / counted:13.1f} {1e3 * wall[name] / counted:14.1f}")
    graph_cpu = sum(cpu[n] for n in graph) / counted
    jpeg_cpu = cpu["jpeg"] / counted
    print(f"graph without it {1e3 * graph_cpu:.1f} CPU ms/image; JPEG stage {1e3 * jpeg_cpu:.1f} "
          f"CPU ms/image = {jpeg_cpu / graph_cpu:.1%} more CPU per image (budget 25 %)")
    return {"graph_ms": 1e3 * graph_cpu, "jpeg_ms": 1e3 * jpeg_cpu,
            "ratio": jpeg_cpu / graph_cpu}


if __name__ == "__main__":
    main()
