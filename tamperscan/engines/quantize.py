"""int8 graphs for CPU inference: ONNX Runtime static quantization (QDQ, per-channel weights).

Why: on a CPU with VNNI (AVX-512 or AVX-VNNI) the int8 convolutions of both nets run about
twice as fast as fp32 (benchmarks/stages.py), while the localizer's pixel AUC on the synthetic
validation split moves by about 0.002 (models/MODEL_CARD.md, *int8*).

Calibration needs inputs whose activations look like real ones, and nothing from the training
data may ship with the package: the inputs are synthetic forgeries (tamperscan.train.synth, the
training mixture of kinds and compression chains) over procedural scenes, deterministic, built
once per (weights, size, recipe) and cached like the other exported graphs. On the validation
split, calibrating on them or on held-apart real photos gave the same accuracy.

The localizer's stems stay in fp32 (``FLOAT_STEM_CONVS``): its first convolutions see raw
pixels and ELA through 3 input channels and depthwise kernels, where 8 bits cost the most
precision and int8 saves the least time. Keeping the first 6 convolutions of each stream in
fp32 cut the per-image score deviation from fp32 by 2-3x (median 0.0068 -> 0.0025-0.0038,
90th percentile 0.044-0.051 -> 0.019-0.033) at the same speed (benchmarks/int8_fidelity.py).
WCBnet's stem is a 7x7 ResNet convolution: in fp32 it costs 50 % more time and its outliers
did not move, so WCBnet stays all-int8.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from torch import nn

from tamperscan.engines.cache import cached_file, cached_onnx, digest
from tamperscan.export import MIN_OPSET, io_names

#: Changes whenever the calibration inputs or quantization settings change (part of the key).
CALIBRATION_RECIPE = {"version": 3, "samples": 24, "photos": 8, "photo_seed": 7, "seed": 3,
                      "photo_size": (576, 768), "ela_quality": 90, "format": "QDQ",
                      "per_channel": True, "activations": "QUInt8", "weights": "QInt8",
                      "method": "MinMax"}


#: Convolutions kept in fp32 from each graph input on, for nets on the localizer's streams
#: (both nets' defaults; see module doc), by input names.
FLOAT_STEM_CONVS = {("rgb", "ela"): 6}


def float_stem_convs(model: nn.Module) -> int:
    return FLOAT_STEM_CONVS.get(tuple(model.config.input_names), 0)


def _graph(onnx_path: Path):
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph


def stem_convs(onnx_path: Path, per_input: int, graph=None) -> list[str]:
    """Names of the first ``per_input`` Conv nodes downstream of each graph input (each
    stream's stem), in graph order (``graph``: the file's, when already loaded)."""
    if per_input <= 0:
        return []
    graph = graph or _graph(onnx_path)
    names = []
    for graph_input in graph.input:
        reached, found = {graph_input.name}, 0
        for node in graph.node:  # ONNX graphs are topologically sorted
            if found == per_input:
                break
            if reached.intersection(node.input):
                reached.update(node.output)
                if node.op_type == "Conv":
                    names.append(node.name)
                    found += 1
    return names


def float_nodes(onnx_path: Path, per_input: int) -> list[str]:
    """The nodes kept out of quantization: each stream's stem convolutions (``stem_convs``)
    and every other reader of a tensor a stem convolution reads. A tensor gets one QDQ pair
    for all its readers, so a quantized second reader would round the stem's own input to 8
    bits too: in the one graph of both nets (`tamperscan.nets.shared`) each stream's F1 also
    feeds the fused F1 Add, and the localizer's score moved about 1.4x further from fp32 than
    in its own graph until that Add stayed in float as well (MODEL_CARD.md, fifteenth
    session)."""
    if per_input <= 0:
        return []
    graph = _graph(onnx_path)
    stems = stem_convs(onnx_path, per_input, graph)
    names = set(stems)
    read = {node.input[0] for node in graph.node if node.name in names}
    return stems + [node.name for node in graph.node
                    if node.name not in names and read.intersection(node.input)]


def calibration_feeds(model: nn.Module, input_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Model feeds (batch 1, as the stages build them) from synthetic procedural forgeries."""
    from tamperscan.preprocess.decode import decode_image
    from tamperscan.preprocess.inputs import INPUT_COLUMNS, model_inputs
    from tamperscan.train.photos import procedural_photos
    from tamperscan.train.synth import ForgerySynthesizer

    recipe = CALIBRATION_RECIPE
    height, width = recipe["photo_size"]
    photos = procedural_photos(recipe["photos"], seed=recipe["photo_seed"], height=height,
                               width=width)
    synth = ForgerySynthesizer(photos, seed=recipe["seed"])
    names, _ = io_names(model)
    for index in range(recipe["samples"]):
        image = decode_image(synth.sample(index).image_bytes)
        inputs = model_inputs(image.rgb, recipe["ela_quality"], input_size, input_size)
        # as the net stages feed the nets (stages.nets.net_feeds: rgb scaled to [0, 1])
        arrays = {name: getattr(inputs, INPUT_COLUMNS[name]) for name in names}
        if "rgb" in arrays:
            arrays["rgb"] = arrays["rgb"] / np.float32(255.0)
        yield {name: np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32)
               for name, a in arrays.items()}


def int8_cache_path(model: nn.Module, cache_dir: Path, input_size: int, fp32_path: Path,
                    opset: int = MIN_OPSET) -> Path:
    import onnxruntime

    key = digest(fp32_path.name, CALIBRATION_RECIPE, float_stem_convs(model),
                 onnxruntime.__version__, opset)
    return cache_dir / "onnx" / f"{model.config.arch}-{input_size}-int8-{key}.onnx"


def cached_int8_onnx(model: nn.Module, cache_dir: Path, input_size: int,
                     opset: int = MIN_OPSET) -> Path:
    """The model's int8 QDQ graph (fp32 I/O, dynamic batch), calibrated on first use, with
    ``FLOAT_STEM_CONVS`` convolutions of each stream and their inputs left in fp32
    (``float_nodes``)."""
    fp32_path = cached_onnx(model, cache_dir, input_size, "fp32", opset)
    path = int8_cache_path(model, cache_dir, input_size, fp32_path, opset)
    if path.exists():
        return path

    def build(tmp: Path) -> None:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.feeds = calibration_feeds(model, input_size)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.feeds, None)

        prepared = tmp.with_name(tmp.stem + ".pre.onnx")
        try:
            # Shape inference + folding first, as ONNX Runtime recommends before quantizing.
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=float_nodes(
                                prepared, float_stem_convs(model)))
        finally:
            prepared.unlink(missing_ok=True)

    return cached_file(path, build)
