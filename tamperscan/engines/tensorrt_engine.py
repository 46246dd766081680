"""TensorRT backend (TensorRT >= 10): ONNX -> serialized plan (cached on disk) -> execution.

Uses the name-based tensor API (``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with torch CUDA tensors as device buffers, one
optimization profile over the batch dimension, and strongly typed networks: reduced precision
comes from an fp16/bf16 ONNX graph, not from the deprecated ``BuilderFlag.FP16``. ``tensorrt``
is imported only when this backend is built, so the package works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from tamperscan.engines.base import BackendUnavailable, Engine
from tamperscan.engines.cache import cached_file, cached_onnx, digest, file_digest
from tamperscan.export import MIN_OPSET

_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
                 "INT32": torch.int32, "INT64": torch.int64, "INT8": torch.int8,
                 "UINT8": torch.uint8, "BOOL": torch.bool}
_logger = None


def import_tensorrt() -> ModuleType:
    """The tensorrt module, or BackendUnavailable saying what to install."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:
        raise BackendUnavailable(
            "the tensorrt backend needs TensorRT >= 10 (pip install 'tamperscan[tensorrt]') on "
            f"a machine with an NVIDIA GPU; importing tensorrt failed: {exc}") from exc
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"the tensorrt backend needs TensorRT >= 10, "
                                 f"found {trt.__version__}")
    return trt


def tensorrt_available() -> bool:
    """True when TensorRT imports and a CUDA device is visible."""
    try:
        import_tensorrt()
    except BackendUnavailable:
        return False
    return torch.cuda.is_available()


def _trt_logger(trt: ModuleType):
    global _logger
    if _logger is None:
        _logger = trt.Logger(trt.Logger.WARNING)
    return _logger


class TensorRTEngine(Engine):
    """Options: ``device`` ("cuda" or "cuda:N"), ``min_batch`` / ``opt_batch`` / ``max_batch``
    (the optimization profile; larger batches are split by the base class), ``workspace_gib``,
    ``tf32`` (allow TF32 tactics for fp32; off so that fp32 means fp32), ``opset``.
    The plan is cached under ``cache_dir/tensorrt`` keyed by TensorRT version, GPU name,
    compute capability, ONNX hash, profile and precision."""

    name = "tensorrt"
    fixed_size = True

    def __init__(self, model: nn.Module, *, device: str | None = None, min_batch: int = 1,
                 opt_batch: int = 8, max_batch: int = 32, workspace_gib: float = 4.0,
                 tf32: bool = False, opset: int = MIN_OPSET, **common) -> None:
        super().__init__(model, max_batch=max_batch, **common)
        if self.precision == "int8":
            raise ValueError("int8 runs on the onnxruntime backend (CPU); TensorRT takes "
                             "fp32, fp16 or bf16 here")
        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("the tensorrt backend needs a CUDA GPU "
                                     "(torch.cuda.is_available() is False)")
        if not 1 <= min_batch <= opt_batch <= max_batch:
            raise ValueError(f"need 1 <= min_batch <= opt_batch <= max_batch, got "
                             f"{min_batch}, {opt_batch}, {max_batch}")
        target = torch.device(device or "cuda")
        if target.type != "cuda":
            raise ValueError(f"the tensorrt backend runs on CUDA devices, not {target}")
        index = target.index if target.index is not None else torch.cuda.current_device()
        self._target = torch.device("cuda", index)
        self.device = str(self._target)
        self.profile = (min_batch, opt_batch, max_batch)

        onnx_path = cached_onnx(model, self.cache_dir, self.input_size, self.precision, opset)
        props = torch.cuda.get_device_properties(index)
        key = digest(trt.__version__, props.name, f"{props.major}.{props.minor}",
                     file_digest(onnx_path), self.profile, self.input_size, self.precision, tf32)
        plan_path = (self.cache_dir / "tensorrt"
                     / f"{self.arch}-{self.input_size}-{self.precision}-{key}.engine")

        def build(tmp: Path) -> None:
            plan = self._build_plan(trt, onnx_path, workspace_gib, tf32)
            with tmp.open("wb") as handle:
                handle.write(plan)

        self.plan_path = cached_file(plan_path, build)
        with torch.cuda.device(index):
            self._runtime = trt.Runtime(_trt_logger(trt))
            self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if self._engine is None:
                raise RuntimeError(f"TensorRT could not load {self.plan_path} (delete it to "
                                   "rebuild)")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(device=self._target)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if set(names) != {*self.input_names, *self.output_names}:
            raise RuntimeError(f"{self.plan_path} has I/O tensors {names}, expected "
                               f"{[*self.input_names, *self.output_names]}")
        self._dtypes = {name: _TORCH_DTYPES[self._engine.get_tensor_dtype(name).name]
                        for name in names}

    def _build_plan(self, trt: ModuleType, onnx_path: Path, workspace_gib: float,
                    tf32: bool):
        logger = _trt_logger(trt)
        builder = trt.Builder(logger)
        network = builder.create_network(
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
        if not tf32:
            config.clear_flag(trt.BuilderFlag.TF32)
        profile = builder.create_optimization_profile()
        size = self.input_size
        low, opt, high = ((batch, 3, size, size) for batch in self.profile)
        for name in self.input_names:
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} "
                               "(see the TensorRT log above)")
        return plan

    def _forward(self, inputs: list[np.ndarray]) -> Sequence[np.ndarray]:
        context = self._context
        with torch.cuda.device(self._target), torch.cuda.stream(self._stream):
            buffers: dict[str, torch.Tensor] = {}
            for name, array in zip(self.input_names, inputs, strict=True):
                tensor = torch.from_numpy(array).to(self._target, self._dtypes[name])
                if not context.set_input_shape(name, tuple(tensor.shape)):
                    raise ValueError(f"TensorRT rejected {name} of shape {tuple(tensor.shape)} "
                                     f"(profile batch {self.profile[0]}..{self.profile[2]})")
                buffers[name] = tensor.contiguous()
            for name in self.output_names:
                shape = tuple(context.get_tensor_shape(name))
                buffers[name] = torch.empty(shape, dtype=self._dtypes[name],
                                            device=self._target)
            for name, tensor in buffers.items():
                context.set_tensor_address(name, tensor.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see the TensorRT log)")
            # .cpu() into pageable memory waits for this stream: no explicit synchronize.
            return [buffers[name].float().cpu().numpy() for name in self.output_names]
