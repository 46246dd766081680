"""Images/s of the bulk scan (Ray Data) against a naive per-image loop and the compute bound
of the machine.

Usage: .venv/bin/python benchmarks/throughput.py [--images 384] [--out-json path]
       [--photos auto|procedural|shared] [--seed 0] [--config pipeline.yaml] [--batch-size 8]
       [--bound-batch-sizes 1 8] [--naive-threads 0] [--ray-warmup 16]
       [--layouts auto|fused|staged ...] [--skip-naive] [--skip-bound] [--skip-ray]

The image set (deterministic, `benchmarks.image_sets`): the bundled samples/images, then
synthetic forgeries and authentic images from tamperscan.train.synth (the training mixture:
splice / copy-move / removal / authentic; JPEG, PNG, TIFF; longer side 640-1024 px) over the
shared authentic training photos when ../shared/data/train exists (``--photos auto``), else
over procedural scenes. Shipped weights and the shipped PipelineConfig (cascade included) in
all three arms, or ``--config``'s PipelineConfig in all three (e.g. a cheaper copy-move
detector). Every arm runs the stages of `tamperscan.graph` (none wires stages of its own):

* **Ray Data** (`benchmarks.throughput_ray`) -- ``tamperscan.pipeline.build_dataset`` on a
  local Ray, per ``--layouts`` (the first is the headline): from the last actor ready to the
  last output row (pipeline fill and drain included; Ray start-up, actor start-up and model
  loading not), and end to end beside it.
* **naive loop** (`benchmarks.throughput_naive`) -- one file at a time, the graph's stages on
  a batch of one in eager PyTorch with torch's default threads (all cores), one Parquet at the
  end.
* **compute bound** (`benchmarks.throughput_bound`) -- every stage of a fused scan worker
  alone, single-threaded, at each of ``--bound-batch-sizes``: ``cores / CPU s per image``.

N: the pipeline moves blocks of 2 x batch size rows, and the timed window holds its fill
(the first block through the first actor) and drain (the last block through the last), about
two blocks' worth of time whatever N: use N well above 16 for bulk throughput (default 384;
with int8 nets 128 images pass in ≈ 4 s, and fill + drain weigh ≈ 10 % of that).

Also printed, as the profile (`benchmarks.throughput_profile`): per-stage cost of the bound,
the CPU accounting of each Ray run's timed window by process, its t_* columns and Ray Data's
``ds.stats()`` per operator, and the naive loop's time per stage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import finish_report, run_benchmark  # noqa: E402
from benchmarks.image_sets import mixed_image_set  # noqa: E402
from benchmarks.machine_info import load_average  # noqa: E402
from benchmarks.model_weights import with_weights  # noqa: E402
from benchmarks.throughput_bound import run_bound  # noqa: E402
from benchmarks.throughput_naive import run_naive  # noqa: E402
from benchmarks.throughput_ray import run_ray  # noqa: E402
from benchmarks.throughput_report import compare, markdown, report  # noqa: E402
from tamperscan.config import PipelineConfig, load_pipeline_config  # noqa: E402


def pipeline_config(folder: Path, path: Path | None = None) -> tuple[PipelineConfig, str]:
    """The shipped config (or the YAML at ``path``, as ``scan --config`` reads it) with the
    shipped weights, else seeded random weights of the same nets in ``folder``."""
    config, weights = with_weights(load_pipeline_config(path), folder)
    label = ("shipped PipelineConfig" if path is None else
             f"PipelineConfig from {path} ({' '.join(path.read_text().split())})")
    return config, f"{weights[0].upper()}{weights[1:]}, {label}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=384, help="number of images (N)")
    parser.add_argument("--out-json", type=Path, help="write all figures here")
    parser.add_argument("--photos", choices=["auto", "procedural", "shared"], default="auto",
                        help="photos the synthetic images are made from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML with PipelineConfig fields for every arm (as scan --config), "
                             "e.g. copy_move: {keypoint_scale: 0.5}")
    parser.add_argument("--batch-size", type=int, default=8, help="pipeline batch size")
    parser.add_argument("--bound-batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--naive-threads", type=int, default=0,
                        help="torch threads of the naive loop (0: all cores)")
    parser.add_argument("--ray-warmup", type=int, default=None,
                        help="images in the untimed warm-up scan (default 2 x batch size)")
    parser.add_argument("--layouts", nargs="+", default=["auto"],
                        choices=["auto", "fused", "staged"],
                        help="pipeline layouts to time (ScanResources.layout); the first is "
                             "the headline, the others are printed beside it")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-bound", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be >= 1")
    return args


def measure(args: argparse.Namespace, info: dict) -> dict:
    cores = os.cpu_count() or 1
    result: dict = {"machine": info}
    with tempfile.TemporaryDirectory(prefix="tamperscan-throughput-") as tmp:
        scratch = Path(tmp)
        config, result["weights"] = pipeline_config(scratch, args.config)
        image_set = mixed_image_set(scratch / "images", args.images, args.photos, args.seed)
        result["image_set"] = image_set.description
        print(f"images: {image_set.description}", flush=True)
        if not args.skip_naive:
            result["naive"] = run_naive(image_set, config, scratch / "naive-out",
                                        args.naive_threads or cores)
            print(f"naive loop: {result['naive']['images_per_s']:.2f} images/s", flush=True)
        if not args.skip_bound:
            result["bound"] = run_bound(image_set, config, args.bound_batch_sizes, cores,
                                        scratch / "bound-out")
            print(f"compute bound: {result['bound']['images_per_s']:.2f} images/s", flush=True)
        if not args.skip_ray:
            warmup = 2 * args.batch_size if args.ray_warmup is None else args.ray_warmup
            runs = [run_ray(image_set, config, args.batch_size, scratch, warmup, layout)
                    for layout in args.layouts]
            result["ray"], result["ray_other"] = runs[0], runs[1:]
            for run in runs:
                print(f"Ray Data, {run['layout']}: {run['images_per_s']:.2f} images/s",
                      flush=True)
    info["load_average_end"] = [round(v, 2) for v in load_average()]
    compare(result)
    return finish_report(result, info, report, markdown)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/throughput.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
