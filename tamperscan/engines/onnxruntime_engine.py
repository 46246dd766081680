"""ONNX Runtime backend: the exported graph (cached per weights) in an InferenceSession.

On CPU its fused kernels beat eager PyTorch at the small batches a streaming pipeline sees;
the CUDA execution provider is used when this onnxruntime build has it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tamperscan.engines.base import BackendUnavailable, Engine
from tamperscan.engines.cache import cached_onnx
from tamperscan.engines.quantize import cached_int8_onnx
from tamperscan.export import MIN_OPSET

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def cuda_provider_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return CUDA_PROVIDER in ort.get_available_providers() and torch.cuda.is_available()


class OnnxRuntimeEngine(Engine):
    """Options: ``device`` ("cpu" | "cuda"; default cuda when the CUDA provider is usable),
    ``opset``, ``spin`` (let idle intra-op threads busy-wait; off by default because in a
    pipeline the spinning steals cores from the decode and refine workers beside it).
    fp16 runs an fp16-weight graph with fp32 I/O; int8 a statically quantized graph on the CPU
    provider (tamperscan.engines.quantize); bf16 is refused (few ONNX Runtime kernels)."""

    name = "onnxruntime"
    fixed_size = True

    def __init__(self, model: nn.Module, *, device: str | None = None, opset: int = MIN_OPSET,
                 spin: bool = False, **common) -> None:
        super().__init__(model, **common)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the onnxruntime backend needs `pip install onnxruntime` "
                                     "(or onnxruntime-gpu)") from exc
        if self.precision == "bf16":
            raise ValueError("the onnxruntime backend runs fp32 or fp16 graphs, not bf16")
        use_cuda = cuda_provider_available() if device is None else device.startswith("cuda")
        if use_cuda and not cuda_provider_available():
            raise BackendUnavailable("device='cuda' needs onnxruntime-gpu and a CUDA GPU")
        if self.precision == "int8":
            if device is not None and device.startswith("cuda"):
                raise ValueError("int8 graphs run on the CPU provider; use fp16 on CUDA")
            use_cuda = False
            self.onnx_path = cached_int8_onnx(model, self.cache_dir, self.input_size, opset)
        else:
            self.onnx_path = cached_onnx(model, self.cache_dir, self.input_size,
                                         self.precision, opset)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads or 0  # 0: one per physical core
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if use_cuda else [CPU_PROVIDER]
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == CUDA_PROVIDER else "cpu"
        if self.device == "cpu" and self.threads == 1 and self.max_batch is None:
            # One thread on CPU: a row at a time is the fastest per image (≈ 3 % over batch 8,
            # benchmarks/stages.py; the activations of one 384² image stay in cache) and keeps
            # one input shape, so the warm-up covers it.
            self.max_batch = 1

    def _forward(self, inputs: list[np.ndarray]) -> Sequence[np.ndarray]:
        feeds = dict(zip(self.input_names, inputs, strict=True))
        return self.session.run(list(self.output_names), feeds)
