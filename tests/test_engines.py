"""Inference engines: backends agree with each other, caches are reused, ``auto`` chooses a
backend that works here, and missing backends fail with a readable error.

The ONNX exports (seconds each) are shared by the whole module through one cache directory.
TensorRT and CUDA tests run only where those exist.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import onnx
import pytest
import torch

import tamperscan.engines as engines
from tamperscan.engines import BackendUnavailable, Engine, build_engine
from tamperscan.engines import cache as engine_cache
from tamperscan.engines.tensorrt_engine import tensorrt_available
from tamperscan.nets import build_model, load_config
from tests.helpers import randomize_norm_stats

NETS = ("two_stream", "wcbnet")
CUDA = torch.cuda.is_available()
needs_tensorrt = pytest.mark.skipif(not tensorrt_available(),
                                    reason="needs the tensorrt package and a CUDA GPU")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")


def _randomized(name: str) -> torch.nn.Module:
    """Default-config net whose every layer leaves a trace in the outputs."""
    torch.manual_seed(0)
    return randomize_norm_stats(build_model(load_config(name)))


def _inputs(engine: Engine, batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = engine.input_size
    return {n: rng.random((batch, 3, size, size), dtype=np.float32) for n in engine.input_names}


def _reference(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*(torch.from_numpy(x) for x in inputs.values()))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: _randomized(name) for name in NETS}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="module")
def ort_engines(models, cache_dir) -> dict[str, Engine]:
    return {name: build_engine(model, "onnxruntime", cache_dir=cache_dir, threads=1,
                               device="cpu")
            for name, model in models.items()}


@pytest.fixture(scope="module")
def torch_engines(models, cache_dir) -> dict[str, Engine]:
    return {name: build_engine(model, "torch", cache_dir=cache_dir, threads=1, device="cpu")
            for name, model in models.items()}


@pytest.mark.parametrize("name", NETS)
def test_torch_and_onnxruntime_agree(name, models, torch_engines, ort_engines):
    model, eager, ort = models[name], torch_engines[name], ort_engines[name]
    assert eager.output_names == ort.output_names
    for batch in (1, 3):
        inputs = _inputs(eager, batch)
        expected = _reference(model, inputs)
        got_torch, got_ort = eager(inputs), ort(inputs)
        assert list(got_ort) == list(ort.output_names)
        for reference, a, b in zip(expected, got_torch.values(), got_ort.values(), strict=True):
            assert a.dtype == b.dtype == np.float32
            assert a.shape == b.shape == reference.shape
            assert np.abs(a - reference).max() <= 1e-5  # channels_last changes nothing
            assert np.abs(a - b).max() <= 1e-4
        if batch == 3:  # images are not mixed across the batch, and the maps are not flat
            first = next(iter(got_ort.values()))
            assert not np.allclose(first[0], first[1])


def test_engine_io_contract(torch_engines, ort_engines):
    assert torch_engines["two_stream"].input_names == ("rgb", "ela")
    assert torch_engines["two_stream"].output_names == ("logits",)
    assert ort_engines["wcbnet"].input_names == ("rgb", "ela")  # the localizer's streams
    assert ort_engines["wcbnet"].output_names == ("logits", "cams")
    out = ort_engines["wcbnet"](_inputs(ort_engines["wcbnet"], 2))
    size = ort_engines["wcbnet"].input_size
    assert out["logits"].shape == (2, 3)
    assert out["cams"].shape == (2, 3, size // 4, size // 4)
    assert {e.device for e in (*torch_engines.values(), *ort_engines.values())} == {"cpu"}


def test_onnx_export_is_reused(models, ort_engines, cache_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(engine_cache, "export_onnx", lambda *a, **k: calls.append(a))
    first = ort_engines["wcbnet"]
    mtime = first.onnx_path.stat().st_mtime_ns
    again = build_engine(models["wcbnet"], "onnxruntime", cache_dir=cache_dir, threads=1,
                         device="cpu")
    assert calls == []
    assert again.onnx_path == first.onnx_path
    assert again.onnx_path.stat().st_mtime_ns == mtime
    inputs = _inputs(again, 1)
    np.testing.assert_array_equal(again(inputs)["cams"], first(inputs)["cams"])


def test_onnx_cache_key_follows_the_weights(models, cache_dir):
    model = models["wcbnet"]
    path = engine_cache.onnx_cache_path(model, cache_dir, 256)
    same = copy.deepcopy(model)
    assert engine_cache.onnx_cache_path(same, cache_dir, 256) == path
    with torch.no_grad():
        next(same.parameters()).view(-1)[0] += 1e-3
    assert engine_cache.onnx_cache_path(same, cache_dir, 256) != path
    assert engine_cache.onnx_cache_path(model, cache_dir, 224) != path
    assert engine_cache.onnx_cache_path(model, cache_dir, 256, precision="fp16") != path


def test_cached_file_builds_once_and_never_publishes_a_failed_build(tmp_path):
    built = []

    def build(tmp):
        built.append(tmp)
        tmp.write_text("plan")

    path = tmp_path / "tensorrt" / "net.engine"
    assert engine_cache.cached_file(path, build) == path
    assert engine_cache.cached_file(path, build) == path
    assert len(built) == 1 and path.read_text() == "plan"

    def broken(tmp):
        tmp.write_text("half a plan")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError, match="builder crashed"):
        engine_cache.cached_file(tmp_path / "tensorrt" / "other.engine", broken)
    assert sorted(p.name for p in path.parent.iterdir() if ".lock" not in p.name) == [path.name]


def test_fp16_graph_keeps_fp32_io_and_tracks_fp32(models, ort_engines, cache_dir):
    """The graph strongly typed TensorRT builds in fp16: fp16 weights, fp32 inputs/outputs."""
    model = models["wcbnet"]
    half = build_engine(model, "onnxruntime", precision="fp16", cache_dir=cache_dir,
                        threads=1, device="cpu")
    graph = onnx.load(str(half.onnx_path)).graph
    fp32 = onnx.TensorProto.FLOAT
    assert all(v.type.tensor_type.elem_type == fp32 for v in (*graph.input, *graph.output))
    floats = {i.data_type for i in graph.initializer} - {onnx.TensorProto.INT64}
    assert floats == {onnx.TensorProto.FLOAT16}
    inputs = _inputs(half, 2)
    expected, got = ort_engines["wcbnet"](inputs), half(inputs)
    for name in ("logits", "cams"):
        scale = np.abs(expected[name]).max()
        assert np.abs(got[name] - expected[name]).max() <= 0.02 * scale + 1e-3
        assert np.abs(got[name] - expected[name]).max() > 0  # it did run in reduced precision


def test_one_thread_cpu_onnxruntime_runs_rows_singly_and_warms_up(models, ort_engines):
    engine = ort_engines["two_stream"]
    assert engine.max_batch == 1  # fastest per image on one CPU thread
    inputs = _inputs(engine, 3)
    before = engine(inputs)["logits"]
    engine.warm_up()
    np.testing.assert_array_equal(engine(inputs)["logits"], before)  # warm-up keeps no state
    threaded = build_engine(models["two_stream"], "onnxruntime", threads=2, device="cpu",
                            cache_dir=engine.cache_dir)
    assert threaded.max_batch is None  # several threads: whole batches


def test_large_batches_are_split(models):
    whole = build_engine(models["wcbnet"], "torch", threads=1, device="cpu")
    split = build_engine(models["wcbnet"], "torch", threads=1, device="cpu", max_batch=2)
    inputs = _inputs(whole, 3)
    for name, value in whole(inputs).items():
        assert split(inputs)[name].shape == value.shape
        np.testing.assert_allclose(split(inputs)[name], value, atol=1e-5)


def test_compile_failure_falls_back_to_eager(models, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("guard failure")

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: broken)
    engine = build_engine(models["wcbnet"], "torch", threads=1, device="cpu", compile=True)
    inputs = _inputs(engine, 1)
    with pytest.warns(RuntimeWarning, match="falling back to eager"):
        out = engine(inputs)
    np.testing.assert_allclose(out["logits"], _reference(models["wcbnet"], inputs)[0],
                               atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine(inputs)  # eager from now on: no second warning


@pytest.mark.skipif(CUDA, reason="the CPU measurement path runs only without CUDA")
def test_auto_measures_once_and_remembers(models, ort_engines, cache_dir, monkeypatch):
    monkeypatch.setattr(engines, "_choices", {})
    model = models["wcbnet"]
    chosen = build_engine(model, "auto", cache_dir=cache_dir, threads=1)
    assert chosen.name in engines.CPU_CANDIDATES
    saved = json.loads((cache_dir / engines.CHOICES_FILE).read_text())
    (record,) = saved.values()
    assert record["backend"] == chosen.name
    assert set(record["seconds"]) == set(engines.CPU_CANDIDATES)
    assert record["seconds"][chosen.name] == min(record["seconds"].values())
    inputs = _inputs(chosen, 1)
    np.testing.assert_allclose(chosen(inputs)["cams"], ort_engines["wcbnet"](inputs)["cams"],
                               atol=1e-4)

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(engines, "measure_backends", no_measuring)
    monkeypatch.setattr(engines, "_choices", {})  # a new process: only the JSON remains
    assert build_engine(model, "auto", cache_dir=cache_dir, threads=1).name == chosen.name


@needs_cuda
def test_auto_on_cuda_uses_a_gpu_backend(models, cache_dir):
    engine = build_engine(models["wcbnet"], "auto", cache_dir=cache_dir)
    assert engine.name == ("tensorrt" if tensorrt_available() else "torch")
    assert engine.device.startswith("cuda")


def test_unknown_backend_and_options_are_refused(models):
    with pytest.raises(ValueError, match=r"unknown backend 'tflite'.*onnxruntime"):
        build_engine(models["wcbnet"], "tflite")
    with pytest.raises(ValueError, match="precision"):
        build_engine(models["wcbnet"], "torch", precision="int3")
    with pytest.raises(TypeError, match="no backend takes"):
        build_engine(models["wcbnet"], "auto", batch_size_typo=4)
    with pytest.raises(TypeError):
        build_engine(models["wcbnet"], "torch", opt_batch=4)  # a TensorRT-only option


def test_bad_inputs_are_refused(torch_engines, ort_engines):
    ort = ort_engines["two_stream"]
    good = _inputs(ort, 1)
    with pytest.raises(ValueError, match=r"missing \['ela'\]"):
        ort({"rgb": good["rgb"]})
    with pytest.raises(ValueError, match="unexpected"):
        ort({**good, "mask": good["rgb"]})
    with pytest.raises(ValueError, match="built for 384x384"):
        ort({n: x[:, :, :64, :64] for n, x in good.items()})
    with pytest.raises(ValueError, match="batch size"):
        ort({"rgb": good["rgb"], "ela": np.concatenate([good["ela"]] * 2)})
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        ort({n: x[0] for n, x in good.items()})
    small = {n: x[:, :, :64, :64] for n, x in good.items()}  # torch takes any size
    assert torch_engines["two_stream"](small)["logits"].shape == (1, 1, 64, 64)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is usable here")
def test_tensorrt_unavailable_is_a_clear_error(models, cache_dir):
    with pytest.raises(BackendUnavailable, match="tensorrt backend needs"):
        build_engine(models["wcbnet"], "tensorrt", cache_dir=cache_dir)


@needs_tensorrt
@pytest.mark.parametrize(("name", "precision", "tolerance"), [
    ("two_stream", "fp32", 1e-3), ("wcbnet", "fp32", 1e-3),
    ("two_stream", "fp16", 5e-2), ("wcbnet", "fp16", 5e-2),
])
def test_tensorrt_matches_torch(name, precision, tolerance, models, torch_engines, cache_dir,
                                monkeypatch):
    engine = build_engine(models[name], "tensorrt", precision=precision, cache_dir=cache_dir,
                          opt_batch=2, max_batch=2)
    for batch in (1, 3):  # 3 > max_batch: split into 2 + 1
        inputs = _inputs(engine, batch)
        expected, got = torch_engines[name](inputs), engine(inputs)
        for key, value in expected.items():
            assert got[key].shape == value.shape
            assert np.abs(got[key] - value).max() <= tolerance * max(1.0, np.abs(value).max())

    def no_building(*args, **kwargs):
        raise AssertionError("rebuilt the plan")

    monkeypatch.setattr(engines.TensorRTEngine, "_build_plan", no_building)
    again = build_engine(models[name], "tensorrt", precision=precision, cache_dir=cache_dir,
                         opt_batch=2, max_batch=2)
    assert again.plan_path == engine.plan_path


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_cuda_matches_cpu(precision, models, torch_engines):
    engine = build_engine(models["wcbnet"], "torch", precision=precision, device="cuda",
                          compile=False)
    inputs = _inputs(engine, 2)
    expected, got = torch_engines["wcbnet"](inputs), engine(inputs)
    tolerance = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 1e-1}[precision]
    for key, value in expected.items():
        assert np.abs(got[key] - value).max() <= tolerance * max(1.0, np.abs(value).max())


def _shipped(name: str) -> torch.nn.Module:
    from tamperscan.config import model_path
    from tamperscan.nets import load_weights

    model = build_model(load_config(name)).eval()
    load_weights(model, model_path(f"{name}.safetensors"))
    return model


def test_int8_localizer_tracks_fp32_on_real_inputs(cache_dir, monkeypatch):
    """The shipped localizer, quantized as `precision: auto` picks it on CPU: its maps on the
    bundled samples stay close to fp32 (the accuracy check on validation data is in the
    model card), and the calibrated graph is built once per weights."""
    from pathlib import Path

    from tamperscan.preprocess.decode import decode_image
    from tamperscan.preprocess.inputs import model_inputs

    model = _shipped("two_stream")
    fp32 = build_engine(model, "onnxruntime", cache_dir=cache_dir, threads=1)
    int8 = build_engine(model, "onnxruntime", precision="int8", cache_dir=cache_dir, threads=1)
    assert int8.precision == "int8" and "-int8-" in int8.onnx_path.name
    samples = sorted((Path(__file__).resolve().parents[1] / "samples" / "images").iterdir())
    for path in samples[:4]:
        inputs = model_inputs(decode_image(path.read_bytes()).rgb, 90, 384, 384)
        feeds = {"rgb": np.ascontiguousarray(inputs.rgb.transpose(2, 0, 1)[None]) / 255.0,
                 "ela": np.ascontiguousarray(inputs.ela.transpose(2, 0, 1)[None])}
        a, b = (1 / (1 + np.exp(-e(feeds)["logits"])) for e in (fp32, int8))
        assert np.abs(a - b).mean() < 0.03, path.name
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95, path.name

    import onnxruntime.quantization as quantization

    def no_quantizing(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(quantization, "quantize_static", no_quantizing)
    again = build_engine(model, "onnxruntime", precision="int8", cache_dir=cache_dir, threads=1)
    assert again.onnx_path == int8.onnx_path


@pytest.mark.skipif(CUDA, reason="the CPU measurement path runs only without CUDA")
def test_auto_precision_races_fp32_and_int8(models, cache_dir, monkeypatch):
    monkeypatch.setattr(engines, "_choices", {})
    model = models["two_stream"]

    def int8_fastest(candidates, **kwargs):
        assert set(candidates) == {"torch/fp32", "onnxruntime/fp32", "onnxruntime/int8"}
        return {name: 0.01 if name == "onnxruntime/int8" else 0.02 for name in candidates}

    monkeypatch.setattr(engines, "measure_backends", int8_fastest)
    chosen = build_engine(model, "auto", precision="auto", cache_dir=cache_dir, threads=1)
    assert (chosen.name, chosen.precision) == ("onnxruntime", "int8")
    assert build_engine(model, "torch", precision="auto").precision == "fp32"
    with pytest.raises(ValueError, match="int8 runs on the onnxruntime backend"):
        build_engine(model, "torch", precision="int8")


def test_int8_localizer_keeps_each_streams_stem_in_fp32(cache_dir):
    """The first FLOAT_STEM_CONVS convolutions from each input (rgb, ela) keep float weights;
    every other convolution reads dequantized int8 weights."""
    import onnx

    from tamperscan.engines.quantize import FLOAT_STEM_CONVS, cached_int8_onnx, stem_convs

    path = cached_int8_onnx(_shipped("two_stream"), cache_dir, 384)
    graph = onnx.load(str(path)).graph
    stems = stem_convs(path, FLOAT_STEM_CONVS[("rgb", "ela")])
    assert len(stems) == 2 * FLOAT_STEM_CONVS[("rgb", "ela")]
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    weight_source = {node.name: produced_by.get(node.input[1], "initializer")
                     for node in graph.node if node.op_type == "Conv"}
    assert {weight_source[name] for name in stems} == {"initializer"}
    others = set(weight_source) - set(stems)
    assert others and {weight_source[name] for name in others} == {"DequantizeLinear"}
    # the first convolution of each stream is one of them: 3 input channels, fed by an input
    initializers = {init.name: init for init in graph.initializer}
    firsts = [n for n in graph.node if n.name in stems and initializers[n.input[1]].dims[1] == 3]
    assert len(firsts) == 2
    assert stem_convs(path, 0) == []
