"""Cost of the copy-move detector, and of its exact nearest-neighbour search against OpenCV's.

Usage: .venv/bin/python benchmarks/copy_move_matching.py [--images 24] [--threads 1]
       [--photos auto|procedural|shared] [--neighbours 6] [--keypoint-scales 1 0.75 0.5]
       [--out-json path]

On the input the graph's FindCopyMove stage reads -- DecodeELA's localizer-size RGB -- of
``--images`` synthetic images (the benchmark image set of tamperscan.train.synth, as
throughput.py), in grey: SIFT keypoints once per image, then
the k nearest other descriptors by ``cv2.BFMatcher.knnMatch`` (baseline) and by
``tamperscan.copy_move._nearest`` (blocked matrix products + top-k), each timed over the same
descriptors, median of 3 runs per image after a warm-up, checked to return the same
neighbours. Also the whole detector per image (``detect_copy_move``) and its SIFT share.
``--keypoint-scales``: the whole detector again with SIFT on a smaller image
(``CopyMoveOptions.keypoint_scale``), timed against scale 1 on the same images; what each
scale detects comes from scripts/calibrate_copy_move.py ``--set keypoint_scale=S``.
``--threads`` sets torch and OpenCV threads (1: as one fused scan worker runs it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import finish_report, markdown_table, run_benchmark  # noqa: E402
from benchmarks.image_sets import mixed_image_set  # noqa: E402
from benchmarks.machine_info import shared_note  # noqa: E402
from benchmarks.nets import median_seconds  # noqa: E402
from tamperscan.batch import bytes_batch, ok_rows  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.copy_move import _nearest, detect_copy_move  # noqa: E402
from tamperscan.stages import DecodeELA  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--photos", default="auto", choices=("auto", "procedural", "shared"))
    parser.add_argument("--neighbours", type=int, default=6)
    parser.add_argument("--keypoint-scales", type=float, nargs="*", default=[])
    parser.add_argument("--out-json", type=Path, default=None)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, info: dict) -> dict:
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    config = PipelineConfig()
    options, decode = config.copy_move, DecodeELA(config)
    with tempfile.TemporaryDirectory() as tmp:
        image_set = mixed_image_set(Path(tmp), args.images, photos=args.photos)
        decoded = decode(bytes_batch([p.read_bytes() for p in image_set.paths],
                                     image_set.uris))
    rgbs = list(decoded["rgb"][ok_rows(decoded)])
    sift = cv2.SIFT_create(nfeatures=options.max_keypoints,
                           contrastThreshold=options.contrast_threshold)
    rows = {"sift": [], "bf": [], "ours": [], "detector": [], "keypoints": []}
    scaled = {s: options.model_copy(update={"keypoint_scale": s}) for s in args.keypoint_scales
              if s != options.keypoint_scale}
    rows.update({f"detector@{s:g}": [] for s in scaled})
    mismatched = 0
    matcher, k = cv2.BFMatcher(cv2.NORM_L2), args.neighbours
    for rgb in rgbs:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rows["sift"].append(median_seconds(lambda g=gray: sift.detectAndCompute(g, None), 3))
        rows["detector"].append(median_seconds(lambda x=rgb: detect_copy_move(x, options), 3))
        for scale, opts in scaled.items():  # same image, right after scale 1: same load
            rows[f"detector@{scale:g}"].append(
                median_seconds(lambda x=rgb, o=opts: detect_copy_move(x, o), 3))
        _, desc = sift.detectAndCompute(gray, None)
        if desc is None or len(desc) <= args.neighbours:
            continue
        rows["keypoints"].append(len(desc))
        rows["bf"].append(median_seconds(lambda d=desc: matcher.knnMatch(d, d, k=k + 1), 3))
        rows["ours"].append(median_seconds(lambda d=desc: _nearest(d, k), 3))
        idx, _ = _nearest(desc, args.neighbours)
        want = np.array([[m.trainIdx for m in r if m.trainIdx != i][:args.neighbours]
                         for i, r in enumerate(matcher.knnMatch(desc, desc,
                                                                k=args.neighbours + 1))])
        mismatched += int((idx[:, 0] != want[:, 0]).sum())  # ties may reorder later ranks
    ms = {k: 1000 * float(np.mean(v)) for k, v in rows.items() if k != "keypoints"}
    result = {"machine": info, "images": len(rgbs), "photos": image_set.description,
              "mean_keypoints": float(np.mean(rows["keypoints"])), "ms_per_image": ms,
              "nearest_speedup": ms["bf"] / ms["ours"], "first_neighbour_mismatches": mismatched,
              "keypoint_scale_speedup": {s: ms["detector"] / ms[f"detector@{s:g}"]
                                         for s in scaled},
              "threads": args.threads, "size": int(decode.ts_size)}
    return finish_report(result, info, report, markdown)


def report(result: dict) -> None:
    ms = result["ms_per_image"]
    print(f"\n{result['images']} images, mean {result['mean_keypoints']:.0f} SIFT keypoints")
    print(f"SIFT {ms['sift']:.1f} ms, whole detector {ms['detector']:.1f} ms per image")
    print(f"k-NN: cv2.BFMatcher {ms['bf']:.1f} ms, torch blocked matmul+topk {ms['ours']:.1f} ms "
          f"-> {result['nearest_speedup']:.2f}x; first-neighbour mismatches: "
          f"{result['first_neighbour_mismatches']}")
    for scale, speedup in result["keypoint_scale_speedup"].items():
        print(f"detector with keypoint_scale {scale:g}: {ms[f'detector@{scale:g}']:.1f} ms "
              f"-> {speedup:.2f}x cheaper than scale 1")


def markdown(result: dict) -> str:
    ms = result["ms_per_image"]
    table = markdown_table(
        [f"part (per image, {result['size']}², {result['threads']} thread)", "ms"],
        [["SIFT detect + describe", f"{ms['sift']:.1f}"],
         ["k-NN, cv2.BFMatcher.knnMatch (baseline)", f"{ms['bf']:.1f}"],
         ["k-NN, torch blocked matmul + top-k (shipped)", f"{ms['ours']:.1f}"],
         ["whole detector (`detect_copy_move`)", f"{ms['detector']:.1f}"]]
        + [[f"whole detector, `keypoint_scale` {scale:g} ({speedup:.2f}× cheaper)",
            f"{ms[f'detector@{scale:g}']:.1f}"]
           for scale, speedup in result["keypoint_scale_speedup"].items()])
    return (f"## Copy-move detector cost\n\n{shared_note(result['machine'])}. "
            f"{result['images']} images ({result['photos']}), mean "
            f"{result['mean_keypoints']:.0f} keypoints. Exact k-NN "
            f"**{result['nearest_speedup']:.2f}×** faster than cv2.BFMatcher (first neighbours "
            f"identical: {result['first_neighbour_mismatches']} mismatches).\n\n{table}\n")


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/copy_move_matching.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
