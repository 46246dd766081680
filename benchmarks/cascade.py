"""What the refinement cascade saves on a mostly authentic archive.

Usage: .venv/bin/python benchmarks/cascade.py [--images 100] [--forged-fraction 0.05]
       [--batch-size 8] [--threads 1] [--photos auto|procedural|shared] [--out-json path]
       [--calibrate-on models/eval/synthetic_val.json --recalls 0.9 0.8]

The archive (deterministic): ``--images`` synthetic images from tamperscan.train.synth, of
which round(images x forged-fraction) are forgeries (splice / copy-move / removal) at seeded
positions and the rest authentic (the same save chain, no manipulation); longer side
640-1024 px; made from the shared authentic *training* photos when ../shared/data/train
exists (``--photos auto``), else procedural scenes. Never from ../shared/data/eval, and no
threshold is tuned here: every arm uses a fixed, named configuration.

Each arm runs the in-process graph (``tamperscan.graph.build_stages``: decode + ELA, the
evidence stages, score and cascade, refine, fuse) over the whole archive in batches of
``--batch-size``, with the shipped weights and the production backend (``runtime.backend:
auto``), ``--threads`` intra-op threads (OpenCV too). The files are read into memory first (as
ReadBytes would; not timed); building the stages (weights, ONNX session, segmenter) and one
warm-up batch are not timed. Reported per arm: wall and CPU (process time) seconds, the same
per image, the Refine stage alone, and the images refined.

Arms:

* ``shipped`` -- the shipped PipelineConfig: refine.threshold 0.3, refine.cam_weight 0.0.
  With cam_weight 0 the refined map cannot change the output, so the cascade
  (``tamperscan.graph.cascade``) selects no image: this arm refines nothing whatever the
  scores.
* ``cascade`` -- the design blend cam_weight 0.5 with the default threshold 0.3: only images
  whose image score (``tamperscan.graph.image_score``) reaches 0.3 are refined.
* ``refine-all`` -- cam_weight 0.5, threshold 0.0: every image refined with the real
  segmenter (no cascade).
* ``cascade@R`` (with ``--calibrate-on REPORT``, one per ``--recalls`` value R) -- cam_weight
  0.5 and the refine.threshold that keeps the share R of the report's forged images refined
  (its per-image ``final`` scores, the score the gate reads). The report must be a
  *validation* report (``models/eval/synthetic_val.json``: held-apart training photos), never
  this archive: the threshold is calibrated elsewhere and only measured here, with the share
  of this archive's forgeries it actually refined.

Cost is CPU seconds (process time: the work, single-threaded by default, which other load on
a shared machine barely changes), with wall seconds beside it; the arms run interleaved,
batch by batch, so a change of load hits all of them alike. The cascade's saving is
refine-all / cascade (target in issue #6: >= 5x); refine-all / shipped is what the shipped
configuration saves by not refining at all. Also printed: the image scores of the shipped
weights per class (why the cascade refines what it refines) and a *derived* (not measured)
ceiling: the cost if the score let exactly the forged images through.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cascade_calibrated import recall_threshold  # noqa: E402
from benchmarks.common import finish_report, markdown_table, run_benchmark  # noqa: E402
from benchmarks.image_sets import ImageSet, archive_image_set  # noqa: E402
from benchmarks.machine_info import shared_note  # noqa: E402
from tamperscan.batch import Batch, bytes_batch  # noqa: E402
from tamperscan.config import PipelineConfig, merge_settings  # noqa: E402
from tamperscan.graph import build_stages  # noqa: E402
from tamperscan.stages import Refine  # noqa: E402

TARGET = 5.0
#: Each arm's PipelineConfig changes (nested, as a YAML --config would give them).
ARMS = {
    "shipped": {},
    "cascade": {"refine": {"cam_weight": 0.5}},
    "refine-all": {"refine": {"cam_weight": 0.5, "threshold": 0.0}},
}


def byte_batches(image_set: ImageSet, size: int) -> list[Batch]:
    """What ReadBytes hands to DecodeELA, read once up front."""
    batches = []
    for i in range(0, len(image_set.paths), size):
        paths = image_set.paths[i:i + size]
        batches.append(bytes_batch([p.read_bytes() for p in paths], [str(p) for p in paths]))
    return batches


class Arm:
    """One configuration's stages and its running totals."""

    def __init__(self, name: str, config: PipelineConfig) -> None:
        self.name, self.config = name, config
        self.stages = build_stages(config)
        self.totals = {"wall": 0.0, "cpu": 0.0, "refine_wall": 0.0, "refine_cpu": 0.0}
        self.scores: list[float] = []
        self.refined: list[bool] = []
        self.failed: list[str] = []

    def warm_up(self, batch: Batch) -> None:
        for stage in self.stages:  # ORT arenas, first calls; not timed
            batch = stage(batch)

    def run(self, batch: Batch) -> None:
        for stage in self.stages:
            is_refine = isinstance(stage, Refine)
            w0, c0 = time.perf_counter(), time.process_time()
            batch = stage(batch)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            self.totals["wall"] += wall
            self.totals["cpu"] += cpu
            if is_refine:
                self.totals["refine_wall"] += wall
                self.totals["refine_cpu"] += cpu
        self.scores += batch["score"].tolist()  # the graph's image score (NaN: failed row)
        self.refined += batch["refined"].tolist()
        self.failed += [e for e in batch["error"] if e]

    def summary(self, labels: list[int]) -> dict:
        t, n = self.totals, len(self.scores)
        labels_arr, refined = np.array(labels[:n]), np.array(self.refined, bool)
        return {
            "config": {"refine": self.config.refine.model_dump(),
                       "runtime": self.config.runtime.model_dump()},
            "backends": ", ".join(s.backends for s in self.stages if hasattr(s, "engines")),
            "images": n, "failed": len(self.failed), "seconds": t["wall"],
            "cpu_seconds": t["cpu"], "s_per_image": t["wall"] / n,
            "cpu_s_per_image": t["cpu"] / n,
            "refine_seconds": t["refine_wall"], "refine_cpu_seconds": t["refine_cpu"],
            "refined": int(refined.sum()), "refined_fraction": float(refined.mean()),
            "refined_forged": int(refined[labels_arr == 1].sum()),
            "refined_authentic": int(refined[labels_arr == 0].sum()),
            "refine_cpu_s_per_refined_image": (t["refine_cpu"] / refined.sum()
                                               if refined.any() else float("nan")),
            "scores": self.scores,
        }


def calibrated_arms(report: Path, recalls: list[float]) -> dict[str, dict]:
    """``cascade@R`` arms: the design blend with the threshold calibrated on ``report``."""
    data = json.loads(report.read_text())
    return {f"cascade@{recall:.0%}": {"refine": {"cam_weight": 0.5,
                                                 "threshold": recall_threshold(data, recall)}}
            for recall in recalls}


def run_arms(configs: dict[str, PipelineConfig], batches: list[Batch],
             labels: list[int]) -> dict[str, dict]:
    """Every arm over every batch, interleaved batch by batch (arm order rotating), so that a
    change of machine load hits all arms alike."""
    arms = [Arm(name, config) for name, config in configs.items()]
    for arm in arms:
        arm.warm_up(batches[0])
    for index, batch in enumerate(batches):
        for k in range(len(arms)):
            arms[(index + k) % len(arms)].run(batch)
    return {arm.name: arm.summary(labels) for arm in arms}


def score_summary(scores: list[float], labels: list[int]) -> dict[str, dict[str, float]]:
    out = {}
    for label, name in ((0, "authentic"), (1, "forged")):
        values = np.array([s for s, lab in zip(scores, labels, strict=True)
                           if lab == label and np.isfinite(s)])
        if values.size:
            out[name] = {"n": int(values.size), "min": float(values.min()),
                         "median": float(np.median(values)), "max": float(values.max()),
                         "at_or_over_0.3": int((values >= 0.3).sum())}
    return out


def ceiling(result: dict) -> dict[str, float]:
    """Derived, not measured: the cost if the image score separated the classes perfectly, so
    the cascade refined exactly the forged images -- the no-refinement cost per image plus
    the measured refine cost per refined image for each forged image."""
    arms = result["arms"]
    base, full = arms["shipped"], arms["refine-all"]
    forged = full["refined_forged"]
    cpu = base["cpu_seconds"] + forged * full["refine_cpu_s_per_refined_image"]
    return {"forged": forged, "cpu_seconds": cpu, "ratio": full["cpu_seconds"] / cpu}


def verdict(result: dict) -> str:
    arms, ratios = result["arms"], result["ratios"]
    cascade, shipped = arms["cascade"], arms["shipped"]
    met = "met" if ratios["refine-all/cascade"] >= TARGET else "NOT met"
    lines = []
    if shipped["refined"] == 0:
        lines.append(
            "The shipped config (cam_weight 0) refines nothing: the cascade selects no "
            "image whatever its score, so the shipped saving over "
            f"refine-all ({ratios['refine-all/shipped']:.1f}× in CPU seconds) comes from "
            "switching refinement off, not from the cascade.")
    authentic = result["authentic"]
    why = ""
    if authentic and cascade["refined_authentic"] > authentic / 2:
        over = result["scores"]["authentic"]["at_or_over_0.3"]
        why = f", because the shipped weights score {over} of them at or above 0.3"
    lines.append(
        "With the design blend (cam_weight 0.5) and the default refine.threshold 0.3 the "
        f"cascade refined {cascade['refined']}/{cascade['images']} images "
        f"({cascade['refined_authentic']} of the {authentic} authentic ones{why}): "
        f"{ratios['refine-all/cascade']:.2f}× cheaper than refine-all in CPU seconds "
        f"({ratios['refine-all/cascade (wall)']:.2f}× wall); target ≥ {TARGET:g}× {met}.")
    forged = arms["refine-all"]["images"] - authentic
    for name, arm in arms.items():
        if name.startswith("cascade@"):
            recall = name.removeprefix("cascade@")
            lines.append(
                f"Calibrated on {result['calibrated_on']} to refine {recall} of its forgeries "
                f"(refine.threshold {arm['config']['refine']['threshold']:.3f}), the cascade "
                f"refined "
                f"{arm['refined_forged']} of this archive's {forged} forged and "
                f"{arm['refined_authentic']} of its {authentic} authentic images: "
                f"{ratios['refine-all/' + name]:.2f}× cheaper than refine-all in CPU seconds.")
    c = result["ceiling"]
    lines.append(
        f"Derived, not measured: a score that let only the forged images ({c['forged']}) "
        f"through would cost {c['cpu_seconds']:.1f} CPU s, {c['ratio']:.1f}× less than refine-all.")
    return " ".join(lines)


def report(result: dict) -> None:
    print(f"\nimages: {result['image_set']}")
    print(f"{'arm':<12}{'refine_thr':>11}{'cam_w':>7}{'refined':>10}{'wall s':>9}"
          f"{'CPU s':>9}{'ms/img':>9}{'CPU ms/img':>11}{'refine CPU s':>13}")
    for name, arm in result["arms"].items():
        c = arm["config"]["refine"]
        print(f"{name:<12}{c['threshold']:>11.2f}{c['cam_weight']:>7.2f}"
              f"{arm['refined']:>5}/{arm['images']:<4}{arm['seconds']:>9.1f}"
              f"{arm['cpu_seconds']:>9.1f}{1e3 * arm['s_per_image']:>9.0f}"
              f"{1e3 * arm['cpu_s_per_image']:>11.0f}{arm['refine_cpu_seconds']:>13.1f}"
              + (f"   ({arm['failed']} rows failed)" if arm["failed"] else ""))
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}x")
    for label, s in result["scores"].items():
        print(f"image scores, {label} (n={s['n']}): min {s['min']:.3f}, median "
              f"{s['median']:.3f}, max {s['max']:.3f}; {s['at_or_over_0.3']} at or over the "
              "refine threshold 0.3")
    print(result["verdict"])


def markdown(result: dict) -> str:
    info = result["machine"]
    v = info["versions"]
    rows = []
    for name, arm in result["arms"].items():
        c = arm["config"]["refine"]
        rows.append([f"`{name}`", f"{c['threshold']:g}", f"{c['cam_weight']:g}",
                     f"{arm['refined']}/{arm['images']} ({arm['refined_authentic']} authentic)",
                     f"{arm['cpu_seconds']:.1f}", f"{1e3 * arm['cpu_s_per_image']:.0f}",
                     f"{arm['seconds']:.1f}", f"{1e3 * arm['s_per_image']:.0f}",
                     f"{arm['refine_cpu_seconds']:.1f}"])
    score_rows = [[label, s["n"], f"{s['min']:.3f}", f"{s['median']:.3f}", f"{s['max']:.3f}",
                   s["at_or_over_0.3"]] for label, s in result["scores"].items()]
    out = ["## Cascade: cost of a mostly authentic archive with and without it "
           "(`benchmarks/cascade.py`)",
           "",
           f"{info['date']} · {info['cpu']}, {info['logical_cores']} logical cores, "
           f"{info['ram_gib']:.0f} GiB RAM · python {v['python']}, torch {v['torch']}, "
           f"onnxruntime {v['onnxruntime']} · {shared_note(info)}",
           f"· `{info['command']}`",
           "",
           f"Images: {result['image_set']}. Shipped weights, in-process graph "
           f"(`graph.build_stages`), batch {result['batch_size']}, "
           f"{result['threads']} intra-op thread(s), backends {result['backends']}; arms "
           "interleaved batch by batch; building the stages and one warm-up batch not timed. "
           "Cost = CPU seconds of this process (the work; other load on the machine barely "
           "moves it), wall seconds beside it.",
           "",
           markdown_table(["arm", "refine.threshold", "refine.cam_weight", "refined", "CPU s",
                           "CPU ms/image", "wall s", "wall ms/image", "of which refine CPU s"],
                          rows),
           "",
           " · ".join(f"{k} **{val:.2f}×**" for k, val in result["ratios"].items()),
           "",
           markdown_table(["image score, shipped weights", "n", "min", "median", "max",
                           "≥ 0.3 (refined by the cascade)"], score_rows),
           "",
           result["verdict"]]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--forged-fraction", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (ONNX Runtime / torch) and OpenCV threads")
    parser.add_argument("--photos", choices=["auto", "procedural", "shared"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--calibrate-on", type=Path, metavar="REPORT",
                        help="validation report (tamperscan evaluate JSON) whose forged images' "
                             "final scores set the cascade@R arms' thresholds")
    parser.add_argument("--recalls", type=float, nargs="+", default=[0.9, 0.8])
    args = parser.parse_args(argv)
    if args.images < 1 or not 0.0 <= args.forged_fraction <= 1.0:
        parser.error("need --images >= 1 and 0 <= --forged-fraction <= 1")
    return args


def measure(args: argparse.Namespace, info: dict) -> dict:
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    result: dict = {"machine": info, "batch_size": args.batch_size, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="tamperscan-cascade-") as tmp:
        image_set = archive_image_set(Path(tmp) / "images", args.images, args.forged_fraction,
                                      args.photos, args.seed)
        result["image_set"] = image_set.description
        print(f"images: {image_set.description}", flush=True)
        batches = byte_batches(image_set, args.batch_size)
        base = PipelineConfig().with_runtime(threads=args.threads).model_dump()
        arm_options = dict(ARMS)
        if args.calibrate_on:
            arm_options |= calibrated_arms(args.calibrate_on, args.recalls)
            result["calibrated_on"] = str(args.calibrate_on)
        configs = {name: PipelineConfig.model_validate(merge_settings(base, options))
                   for name, options in arm_options.items()}
        arms = run_arms(configs, batches, image_set.labels)
    result["arms"] = arms
    result["backends"] = arms["shipped"]["backends"]
    # Cost = CPU seconds (single-threaded work; robust to other load on the machine); the
    # same ratios in wall seconds beside them.
    result["ratios"] = {
        f"refine-all/{other}{suffix}": arms["refine-all"][key] / arms[other][key]
        for suffix, key in (("", "cpu_seconds"), (" (wall)", "seconds"))
        for other in ("cascade", "shipped", *(a for a in arms if a.startswith("cascade@")))}
    result["scores"] = score_summary(arms["shipped"]["scores"], image_set.labels)
    result["authentic"] = image_set.labels.count(0)
    result["ceiling"] = ceiling(result)
    result["verdict"] = verdict(result)
    return finish_report(result, info, report, markdown)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/cascade.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
