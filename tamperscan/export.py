"""ONNX export of both nets (dynamic batch, fixed square input size).

Graph I/O names are a contract for the onnxruntime / TensorRT engines:
two_stream: inputs ``rgb`` (B3HW in [0,1]) and ``ela``, output ``logits`` (B1HW);
wcbnet: input ``signed_ela`` (ResNet backbones) or ``rgb`` and ``ela`` (the localizer's streams),
outputs ``logits`` (B x heads) and ``cams`` (B x heads x H/4 x W/4);
shared_streams (both on one encoder pass): inputs ``rgb`` and ``ela``, outputs ``map_logits``
(the localizer's), ``logits`` and ``cams`` (WCBnet's).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from tamperscan.nets.shared import SharedStreams
from tamperscan.nets.two_stream import TwoStreamLocalizer
from tamperscan.nets.wcbnet import WCBNet

#: Output names per net; the inputs are the net config's ``input_names``.
OUTPUT_NAMES: dict[type[nn.Module], tuple[str, ...]] = {
    TwoStreamLocalizer: ("logits",),
    WCBNet: ("logits", "cams"),
    SharedStreams: ("map_logits", "logits", "cams"),
}
MIN_OPSET = 18


def io_names(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    for model_cls, outputs in OUTPUT_NAMES.items():
        if isinstance(model, model_cls):
            return model.config.input_names, outputs
    raise TypeError(f"no ONNX export for {type(model).__name__}")


class _Positional(nn.Module):
    """The net behind ``forward(*inputs)``, computing in ``dtype`` with float32 graph I/O:
    one export path for every net (WCBnet's inputs depend on its backbone) and precision.
    Strongly typed TensorRT takes precision from the graph (BuilderFlag.FP16 is deprecated
    since TensorRT 10.12), and float32 I/O keeps the engine contract the same for all."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
        self.dtype = dtype

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.inner(*(x.to(self.dtype) for x in inputs))
        if isinstance(outputs, tuple):
            return tuple(o.float() for o in outputs)
        return outputs.float()


def export_onnx(model: nn.Module, path: str | Path, input_size: int | None = None,
                opset: int = MIN_OPSET, dynamic_batch: bool = True,
                dtype: torch.dtype = torch.float32) -> Path:
    """Export ``model`` (put in eval mode) to ``path`` as one self-contained .onnx file,
    its weights and compute in ``dtype`` (float16 / bfloat16 for reduced precision), its
    inputs and outputs float32. ``input_size`` defaults to the model config's. Returns the
    path."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    inputs, outputs = io_names(model)
    size = int(input_size or model.config.input_size)
    wrapper = _Positional(model.eval(), dtype).eval()
    # Batch 2 for tracing: with batch 1 the exporter may specialise the batch dimension.
    example = tuple(torch.rand(2, 3, size, size) for _ in inputs)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = {"inputs": tuple({0: batch} for _ in inputs)}  # forward(*inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that it renames the batch axis to the name it already has.
        warnings.filterwarnings("ignore", message=".*axis name.*")
        program = torch.onnx.export(
            wrapper, example, dynamo=True, opset_version=opset, input_names=list(inputs),
            output_names=list(outputs), dynamic_shapes=dynamic_shapes, external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path
