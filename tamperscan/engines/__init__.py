"""Inference engines: one interface (``Engine``), backends torch / onnxruntime / tensorrt.

``build_engine(model, "auto")`` picks:

1. TensorRT when it imports and CUDA is available (if the build fails, a warning and 2.);
2. on another CUDA machine, the torch backend (fp16/bf16 autocast, torch.compile);
3. on CPU, the fastest of torch and onnxruntime *measured on this machine*: best of 5
   interleaved batch-1 runs of each, once per (net config, input size, precision, threads,
   CPU, library versions), remembered in memory and in ``<cache_dir>/backend_choices.json``
   (delete an entry to measure again). A static table would not transfer: which backend wins
   depends on the CPU's vector units (oneDNN vs MLAS kernels, VNNI or not) and the thread
   count. With ``precision="auto"`` the candidates are torch fp32, onnxruntime fp32 and
   onnxruntime int8 (statically quantized, ``engines.quantize``); on the 2-core development
   box onnxruntime int8 wins for both default nets (benchmarks/stages.py). Elsewhere "auto"
   precision means fp32.
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tamperscan.engines.base import PRECISIONS, BackendUnavailable, Engine
from tamperscan.engines.cache import default_cache_dir, digest, file_lock, read_json, update_json
from tamperscan.engines.onnxruntime_engine import OnnxRuntimeEngine
from tamperscan.engines.tensorrt_engine import TensorRTEngine, tensorrt_available
from tamperscan.engines.torch_engine import TorchEngine
from tamperscan.sysinfo import cpu_model

BACKENDS: dict[str, type[Engine]] = {
    "torch": TorchEngine,
    "onnxruntime": OnnxRuntimeEngine,
    "tensorrt": TensorRTEngine,
}
CHOICES_FILE = "backend_choices.json"
CPU_CANDIDATES = ("torch", "onnxruntime")
#: precision="auto" on CPU: every (backend, precision) pair raced against the others.
AUTO_PRECISION_CANDIDATES = (("torch", "fp32"), ("onnxruntime", "fp32"),
                             ("onnxruntime", "int8"))
_choices: dict[str, str] = {}

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailable",
    "Engine",
    "OnnxRuntimeEngine",
    "TensorRTEngine",
    "TorchEngine",
    "build_engine",
    "measure_backends",
]


def build_engine(model: nn.Module, backend: str = "auto", precision: str = "fp32",
                 cache_dir: str | Path | None = None, threads: int | None = None,
                 **options: Any) -> Engine:
    """An engine running ``model`` (a TwoStreamLocalizer or WCBNet with its weights loaded).

    ``backend``: "auto" | "torch" | "onnxruntime" | "tensorrt". ``precision``: "auto" |
    "fp32" | "fp16" | "bf16" | "int8" ("auto": the fastest measured of fp32 and int8 when
    ``backend`` is "auto" on a CPU, else fp32; int8 is onnxruntime on CPU only).
    ``cache_dir`` holds exported ONNX, TensorRT plans and auto choices (default:
    $TAMPERSCAN_CACHE_DIR or ~/.cache/tamperscan). ``threads``: intra-op threads
    (None: the library's default). ``options`` go to the backend class (see each class); under
    "auto", options the chosen backend does not take are dropped.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    on_gpu = torch.cuda.is_available() and not str(options.get("device") or "").startswith("cpu")
    if precision == "auto" and (backend != "auto" or on_gpu):
        precision = "fp32"
    common = {"precision": precision, "cache_dir": cache_dir, "threads": threads}
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from "
                             f"{['auto', *BACKENDS]}")
        return BACKENDS[backend](model, **common, **options)
    _check_options(options)
    if precision == "int8":  # one backend runs int8
        return _build("onnxruntime", model, common, {**options, "device": "cpu"})
    if on_gpu and tensorrt_available():
        try:
            return _build("tensorrt", model, common, options)
        except Exception as exc:  # e.g. an op the ONNX parser does not support
            warnings.warn(f"auto: TensorRT engine failed ({type(exc).__name__}: {exc}); "
                          "using the torch backend", RuntimeWarning, stacklevel=2)
    if on_gpu:
        return _build("torch", model, common, options)
    return _fastest_cpu_engine(model, common, options)


def _option_names(cls: type[Engine]) -> set[str]:
    """Keyword options a backend class takes (its own and the base class's)."""
    names = set()
    for init in (cls.__init__, Engine.__init__):
        names |= {p.name for p in inspect.signature(init).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return names


def _check_options(options: dict[str, Any]) -> None:
    unknown = set(options).difference(*(_option_names(cls) for cls in BACKENDS.values()))
    if unknown:
        raise TypeError(f"no backend takes option(s) {sorted(unknown)}")


def _build(name: str, model: nn.Module, common: dict[str, Any],
           options: dict[str, Any]) -> Engine:
    """Backend ``name``, or "backend/precision" (a precision="auto" candidate)."""
    name, _, precision = name.partition("/")
    if precision:
        common = {**common, "precision": precision}
    cls = BACKENDS[name]
    accepted = _option_names(cls)
    return cls(model, **common, **{k: v for k, v in options.items() if k in accepted})


def _choice_key(model: nn.Module, common: dict[str, Any], options: dict[str, Any]) -> str:
    """What the speed ranking depends on: architecture and size, not the weights' values."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    size = options.get("input_size") or model.config.input_size
    return digest(model.config.to_dict(), size, common["precision"], common["threads"],
                  os.cpu_count(), cpu_model(), torch.__version__, ort_version)


def measure_backends(engines: dict[str, Engine], runs: int = 5,
                     batch: int = 1) -> dict[str, float]:
    """Best-of-``runs`` seconds per call of each engine on the same random batch, after one
    warm-up. Runs are interleaved so a load change hits every backend alike, and the minimum
    is kept because other processes can only add time: on a shared box a median of a few runs
    once ranked a 2x faster backend last."""
    first = next(iter(engines.values()))
    size = first.input_size
    rng = np.random.default_rng(0)
    inputs = {name: rng.random((batch, 3, size, size), dtype=np.float32)
              for name in first.input_names}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        engine(inputs)
    for _ in range(runs):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine(inputs)
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def _fastest_cpu_engine(model: nn.Module, common: dict[str, Any],
                        options: dict[str, Any]) -> Engine:
    key = _choice_key(model, common, options)
    path = common["cache_dir"] / CHOICES_FILE
    if key not in _choices and (saved := read_json(path).get(key)):
        _choices[key] = saved["backend"]
    if key in _choices:
        return _build(_choices[key], model, common, options)
    with file_lock(path.with_name("auto-measure.lock")):  # one process measures, others wait
        if saved := read_json(path).get(key):
            _choices[key] = saved["backend"]
            return _build(_choices[key], model, common, options)
        engines: dict[str, Engine] = {}
        candidates = (CPU_CANDIDATES if common["precision"] != "auto" else
                      [f"{b}/{p}" for b, p in AUTO_PRECISION_CANDIDATES])
        for name in candidates:
            try:
                engines[name] = _build(name, model, common, {**options, "device": "cpu"})
            except Exception as exc:
                warnings.warn(f"auto: {name} backend unavailable ({type(exc).__name__}: "
                              f"{exc})", RuntimeWarning, stacklevel=3)
        if not engines:
            raise BackendUnavailable("auto: no CPU backend could be built")
        seconds = measure_backends(engines)
        choice = min(seconds, key=seconds.__getitem__)
        update_json(path, key, {"backend": choice, "arch": model.config.arch,
                                "seconds": seconds, "threads": common["threads"],
                                "cpu": cpu_model(), "measured_at": time.time()})
        _choices[key] = choice
        return engines[choice]
