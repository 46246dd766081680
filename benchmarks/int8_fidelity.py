"""How far int8 moves each image's scores from fp32, and what keeping the stems in fp32 buys.

Usage: .venv/bin/python benchmarks/int8_fidelity.py DATASET [--images 150] [--out-json path]

DATASET is a folder in the evaluation layout (MANIFEST.csv), normally a synthetic validation
split (scripts/make_val_set.py), never an evaluation set: this chooses a quantization recipe.
For each shipped net, the images go through the pipeline's preprocessing (model_inputs, float16
storage as DecodeELA keeps them) into three ONNX Runtime sessions on one thread: fp32 (the
reference), int8 with every convolution quantized (the baseline), and the shipped int8 recipe
(``quantize.FLOAT_STEM_CONVS`` convolutions of each stream kept in fp32). Printed per net and
graph: the per-image |score - fp32 score| (median, 90th and 99th percentile, max), the
Spearman rank correlation with fp32, the localizer's mean |probability - fp32| over the map,
and ms per image at batch 1 (best of 3 passes over the first 20 images).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import expit
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import finish_report, markdown_table, run_benchmark  # noqa: E402
from tamperscan.config import PipelineConfig, model_path  # noqa: E402
from tamperscan.engines.cache import cached_onnx, default_cache_dir  # noqa: E402
from tamperscan.engines.quantize import FLOAT_STEM_CONVS, cached_int8_onnx  # noqa: E402
from tamperscan.evaluate import read_manifest  # noqa: E402
from tamperscan.nets.build import build_model, load_config, load_weights  # noqa: E402
from tamperscan.preprocess.decode import decode_image  # noqa: E402
from tamperscan.preprocess.inputs import model_inputs  # noqa: E402
from tamperscan.score_model import map_score  # noqa: E402

NETS = {"two_stream": ("two_stream_config", "two_stream_weights"),
        "wcbnet": ("wcbnet_config", "wcbnet_weights")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--out-json", type=Path, default=None)
    return parser.parse_args(argv)


def _chw(array: np.ndarray) -> np.ndarray:
    """(1, C, H, W) float32."""
    return np.ascontiguousarray(array.astype(np.float32).transpose(2, 0, 1)[None])


def feeds_for(dataset: Path, count: int, ts_size: int, cb_size: int) -> dict[str, list[dict]]:
    """Per image, each net's feed as stages.Localize / stages.Detect build it."""
    feeds: dict[str, list[dict]] = {"two_stream": [], "wcbnet": []}
    for item in list(read_manifest(dataset))[:count]:
        inputs = model_inputs(decode_image(item.image.read_bytes()).rgb, 90, ts_size, cb_size)
        # ELA maps travel as float16 batch columns (DecodeELA), RGB as uint8
        feeds["two_stream"].append({"rgb": _chw(inputs.rgb / np.float32(255.0)),
                                    "ela": _chw(inputs.ela.astype(np.float16))})
        feeds["wcbnet"].append({"sela": _chw(inputs.sela.astype(np.float16))})
    return feeds


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_graph(net: str, path: Path, feeds: list[dict]) -> tuple[list[float], list, float]:
    """(image scores, localizer maps or None, ms per image)."""
    session = _session(path)
    name = session.get_inputs()[0].name
    scores, maps = [], []
    for feed in feeds:
        if net == "two_stream":
            prob = expit(session.run(None, feed)[0][0, 0])
            scores.append(map_score(prob))
            maps.append(prob)
        else:
            scores.append(float(expit(session.run(None, {name: feed["sela"]})[0][0]).mean()))
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for feed in feeds[:20]:
            session.run(None, feed if net == "two_stream" else {name: feed["sela"]})
        passes.append((time.perf_counter() - start) / len(feeds[:20]))
    return scores, maps, 1000 * min(passes)


def measure(args: argparse.Namespace, info: dict) -> dict:
    config, cache = PipelineConfig(), default_cache_dir()
    models, sizes = {}, {}
    for net, (config_attr, weights_attr) in NETS.items():
        net_config = load_config(getattr(config, config_attr))
        models[net] = build_model(net_config).eval()
        load_weights(models[net], model_path(getattr(config, weights_attr)))
        sizes[net] = int(net_config["input_size"])
    feeds = feeds_for(args.dataset, args.images, sizes["two_stream"], sizes["wcbnet"])
    rows = []
    for net, model in models.items():
        size = sizes[net]
        reference, ref_maps, ref_ms = run_graph(net, cached_onnx(model, cache, size), feeds[net])
        rows.append({"net": net, "graph": "fp32", "ms": ref_ms})
        shipped = FLOAT_STEM_CONVS.get(model.config.arch, 0)
        graphs = {"int8, every convolution": 0}
        if shipped:
            graphs[f"int8, shipped ({shipped} stem convolutions per stream fp32)"] = shipped
        for label, stems in graphs.items():
            path = cached_int8_onnx(model, cache, size, float_stems=stems)
            scores, maps, ms = run_graph(net, path, feeds[net])
            diff = np.abs(np.array(scores) - np.array(reference))
            row = {"net": net, "graph": label, "ms": ms,
                   "p50": float(np.median(diff)), "p90": float(np.percentile(diff, 90)),
                   "p99": float(np.percentile(diff, 99)), "max": float(diff.max()),
                   "rho": float(spearmanr(reference, scores).statistic)}
            if maps:
                row["map_mae"] = float(np.mean([np.abs(a - b).mean()
                                                for a, b in zip(ref_maps, maps, strict=True)]))
            rows.append(row)
    result = {"machine": info, "dataset": str(args.dataset), "images": len(feeds["wcbnet"]),
              "rows": rows}
    return finish_report(result, info, report, markdown)


def _cells(row: dict) -> list[str]:
    if row["graph"] == "fp32":
        return [row["net"], "fp32 (reference)", "–", "–", "–", "–", "–", "–", f"{row['ms']:.1f}"]
    return [row["net"], row["graph"], f"{row['p50']:.4f}", f"{row['p90']:.4f}",
            f"{row['p99']:.4f}", f"{row['max']:.4f}", f"{row['rho']:.4f}",
            f"{row['map_mae']:.4f}" if "map_mae" in row else "–", f"{row['ms']:.1f}"]


HEADER = ["net", "graph", "|Δscore| median", "90th pct", "99th pct", "max", "Spearman vs fp32",
          "map mean |Δp|", "ms/image (1 thread)"]


def report(result: dict) -> None:
    print(f"\n{result['images']} images of {result['dataset']}")
    for row in result["rows"]:
        print(" | ".join(_cells(row)))


def markdown(result: dict) -> str:
    return (f"## int8 fidelity\n\n{result['images']} images of `{result['dataset']}`\n\n"
            + markdown_table(HEADER, [_cells(row) for row in result["rows"]]) + "\n")


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("benchmarks/int8_fidelity.py", parse_args, measure, argv)


if __name__ == "__main__":
    main()
