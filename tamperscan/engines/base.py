"""The engine interface: named float32 NCHW arrays in, named float32 arrays out.

Stages talk to an ``Engine`` and never to a framework, so switching PyTorch for ONNX Runtime
or TensorRT is a config change. As in pytorch-grad-cam's ``BaseCAM``, the base class holds the
shared machinery (I/O names from the export contract, input checks, splitting batches larger
than a backend accepts) and each backend overrides one hook, ``_forward``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from torch import nn

from tamperscan.engines.cache import default_cache_dir
from tamperscan.export import io_names

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class BackendUnavailable(RuntimeError):
    """The backend's package or hardware is missing here (e.g. TensorRT without a GPU)."""


class Engine(ABC):
    """One net behind a backend. ``engine({"rgb": ..., "ela": ...}) -> {"logits": ...}``.

    Inputs are B x 3 x H x W arrays (converted to C-contiguous float32); outputs are float32
    numpy arrays whatever precision the backend computes in. Names follow
    ``tamperscan.export.io_names`` (two_stream: rgb, ela -> logits; wcbnet: its config's
    inputs -> logits, cams).
    """

    #: Registry name, e.g. "onnxruntime".
    name: ClassVar[str]
    #: True when the backend runs a graph compiled for one input size (ONNX, TensorRT).
    fixed_size: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, precision: str = "fp32",
                 cache_dir: str | Path | None = None, threads: int | None = None,
                 input_size: int | None = None, max_batch: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.input_names, self.output_names = io_names(model)
        self.arch: str = model.config.arch
        self.input_size = int(input_size or model.config.input_size)
        self.precision = precision
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.max_batch = max_batch
        self.device = "cpu"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(arch={self.arch!r}, precision={self.precision!r}, "
                f"device={self.device!r}, input_size={self.input_size})")

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self._checked(inputs)
        batch = len(arrays[0])
        step = self.max_batch or batch
        chunks = [self._forward([a[i:i + step] for a in arrays]) for i in range(0, batch, step)]
        outputs = {}
        for index, name in enumerate(self.output_names):
            parts = [np.asarray(chunk[index], dtype=np.float32) for chunk in chunks]
            outputs[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return outputs

    def warm_up(self, runs: int = 2) -> None:
        """Run zero inputs through the net ``runs`` times, at the batch shape the engine will
        run. The first calls of a session cost up to twice a steady one (arena growth, page
        faults on the weights, kernel selection); a pipeline actor or a replica pays that at
        start-up, beside loading the weights, not on its first real images."""
        rows = min(self.max_batch or 1, 8)
        size = self.input_size
        zeros = {name: np.zeros((rows, 3, size, size), np.float32) for name in self.input_names}
        for _ in range(runs):
            self(zeros)

    @abstractmethod
    def _forward(self, inputs: list[np.ndarray]) -> Sequence[np.ndarray]:
        """Run one batch of at most ``max_batch`` rows: float32 arrays in ``input_names``
        order -> arrays in ``output_names`` order."""

    def _checked(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        unexpected = sorted(set(inputs) - set(self.input_names))
        if missing or unexpected:
            raise ValueError(f"{self.arch} engine takes inputs {list(self.input_names)}; "
                             f"missing {missing}, unexpected {unexpected}")
        arrays = [np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names]
        size = self.input_size
        for name, array in zip(self.input_names, arrays, strict=True):
            if array.ndim != 4 or array.shape[1] != 3:
                raise ValueError(f"input {name!r} must be B x 3 x H x W, got {array.shape}")
            if self.fixed_size and array.shape[2:] != (size, size):
                raise ValueError(f"this {self.name} engine was built for {size}x{size} inputs, "
                                 f"got {name!r} of shape {array.shape}")
        batches = {name: len(array) for name, array in zip(self.input_names, arrays, strict=True)}
        if len(set(batches.values())) != 1 or 0 in batches.values():
            raise ValueError(f"inputs need one non-empty batch size, got {batches}")
        return arrays
