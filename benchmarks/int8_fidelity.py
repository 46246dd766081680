"""How far int8 moves each image's scores from fp32, and what keeping the stems in fp32 buys.

Usage: .venv/bin/python benchmarks/int8_fidelity.py DATASET [--images 150] [--out-json path]

DATASET is a folder in the evaluation layout (MANIFEST.csv), normally a synthetic validation
split (scripts/make_val_set.py), never an evaluation set: this chooses a quantization recipe.
The images go through the pipeline's own stages (DecodeELA, then the graph's model stage,
``tamperscan.stages.Nets``: the localizer and WCBnet, on ONNX Runtime, one thread) three
times: fp32 (the reference), int8 with every convolution quantized (the baseline:
``quantize.FLOAT_STEM_CONVS`` emptied for the run) and the shipped int8 recipe (each stream's
stem convolutions kept in fp32). Printed per net and graph: the per-image |score - fp32
score| (median, 90th and 99th percentile, max), the Spearman rank correlation with fp32, the
localizer's mean |probability - fp32| over the map, and ms per image of the stage (both nets)
at batch 1 (best of 3 passes over the first 20 images).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import finish_report, markdown_table, run_benchmark  # noqa: E402
from tamperscan.batch import bytes_batch  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.engines import quantize  # noqa: E402
from tamperscan.evaluate import read_manifest  # noqa: E402
from tamperscan.stages import NETS, DecodeELA, Nets  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--out-json", type=Path, default=None)
    return parser.parse_args(argv)


def decoded_rows(dataset: Path, count: int, config: PipelineConfig) -> list[dict]:
    """One DecodeELA batch per image: the model stages' inputs, exactly as a scan makes them."""
    decode = DecodeELA(config)
    items = list(read_manifest(dataset))[:count]
    return [decode(bytes_batch([item.image.read_bytes()], [str(item.image)])) for item in items]


def run_stage(stage: Nets, rows: list[dict]) -> tuple[dict[str, list[float]], list, float]:
    """(image scores per net, localizer maps, ms per image of the stage at batch 1)."""
    outputs = [stage(row) for row in rows]
    scores = {net.name: [float(out[f"score_{net.name}"][0]) for out in outputs] for net in NETS}
    maps = [out["ts_map"][0].astype(np.float32) for out in outputs]
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for row in rows[:20]:
            stage(row)
        passes.append((time.perf_counter() - start) / len(rows[:20]))
    return scores, maps, 1000 * min(passes)


def measure(args: argparse.Namespace, info: dict) -> dict:
    base = PipelineConfig().with_runtime(backend="onnxruntime", threads=1)
    rows_in = decoded_rows(args.dataset, args.images, base)
    graphs = {"fp32 (reference)": ("fp32", nullcontext()),
              "int8, every convolution": (
                  "int8", mock.patch.dict(quantize.FLOAT_STEM_CONVS, clear=True)),
              "int8, shipped recipe": ("int8", nullcontext())}
    rows = []
    reference = ref_maps = None
    for label, (precision, recipe) in graphs.items():
        with recipe:
            stage = Nets(base.with_runtime(precision=precision))
        scores, maps, ms = run_stage(stage, rows_in)
        if reference is None:
            reference, ref_maps = scores, maps
        for net in NETS:
            row = {"net": net.name, "graph": label, "ms": ms}
            if scores is not reference:
                diff = np.abs(np.array(scores[net.name]) - np.array(reference[net.name]))
                row |= {"p50": float(np.median(diff)), "p90": float(np.percentile(diff, 90)),
                        "p99": float(np.percentile(diff, 99)), "max": float(diff.max()),
                        "rho": float(spearmanr(reference[net.name], scores[net.name]).statistic)}
                if net.name == "two_stream":
                    row["map_mae"] = float(np.mean([np.abs(a - b).mean() for a, b in
                                                    zip(ref_maps, maps, strict=True)]))
            rows.append(row)
    result = {"machine": info, "dataset": str(args.dataset), "images": len(rows_in),
              "float_stem_convs": {" + ".join(k): v
                                   for k, v in quantize.FLOAT_STEM_CONVS.items()},
              "rows": rows}
    return finish_report(result, info, report, markdown)


def _cells(row: dict) -> list[str]:
    if "p50" not in row:
        return [row["net"], row["graph"], "–", "–", "–", "–", "–", "–", f"{row['ms']:.1f}"]
    return [row["net"], row["graph"], f"{row['p50']:.4f}", f"{row['p90']:.4f}",
            f"{row['p99']:.4f}", f"{row['max']:.4f}", f"{row['rho']:.4f}",
            f"{row['map_mae']:.4f}" if "map_mae" in row else "–", f"{row['ms']:.1f}"]


HEADER = ["net", "graph", "abs. Δscore median", "90th pct", "99th pct", "max", "Spearman vs fp32",
          "map mean abs. Δp", "ms/image (1 thread)"]


def report(result: dict) -> None:
    print(f"\n{result['images']} images of {result['dataset']}; fp32 stem convolutions per "
          f"stream in the shipped recipe: {result['float_stem_convs']}")
    for row in result["rows"]:
        print(" | ".join(_cells(row)))


def markdown(result: dict) -> str:
    return (f"## int8 fidelity\n\n{result['images']} images of `{result['dataset']}`\n\n"
            + markdown_table(HEADER, [_cells(row) for row in result["rows"]]) + "\n")


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/int8_fidelity.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
