"""PyTorch backend: eager (optionally torch.compile), channels_last, inference_mode, autocast.

Works for any input size and needs no export, so it is the reference the other backends are
tested against and the fallback wherever they are unavailable.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tamperscan.engines.base import Engine

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchEngine(Engine):
    """Options: ``device`` (default cuda when available), ``channels_last`` (default True:
    NHWC is what cuDNN tensor cores and oneDNN convolutions run natively), ``compile`` (default
    on for CUDA, off for CPU where compile time outweighs the gain on small batches),
    ``compile_mode`` (passed to torch.compile). The model is copied, never modified.
    ``threads`` sets torch's intra-op threads, which is process-wide."""

    name = "torch"

    def __init__(self, model: nn.Module, *, device: str | torch.device | None = None,
                 channels_last: bool = True, compile: bool | None = None,
                 compile_mode: str | None = None, **common) -> None:
        super().__init__(model, **common)
        if self.precision == "int8":
            raise ValueError("int8 runs on the onnxruntime backend (CPU), not torch")
        if self.threads:
            torch.set_num_threads(self.threads)
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = str(target)
        self._target = target
        self._format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = copy.deepcopy(model).eval().to(target, memory_format=self._format)
        self._autocast = AUTOCAST_DTYPES.get(self.precision)
        if compile is None:
            compile = target.type == "cuda"
        self._compiled = torch.compile(self.model, mode=compile_mode) if compile else None

    def _forward(self, inputs: list[np.ndarray]) -> Sequence[np.ndarray]:
        tensors = [torch.from_numpy(a).to(self._target).contiguous(memory_format=self._format)
                   for a in inputs]
        autocast = (torch.autocast(self._target.type, dtype=self._autocast) if self._autocast
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            outputs = self._run(tensors)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return [o.float().cpu().numpy() for o in outputs]

    def _run(self, tensors: list[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self._compiled is not None:
            try:
                return self._compiled(*tensors)
            except Exception as exc:  # graph breaks, guard or backend failures: stay usable
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); "
                              "falling back to eager", RuntimeWarning, stacklevel=3)
                self._compiled = None
        return self.model(*tensors)
