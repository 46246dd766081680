"""ONNX export of both nets (dynamic batch, fixed square input size).

Graph I/O names are a contract for the onnxruntime / TensorRT engines:
two_stream: inputs ``rgb`` (B3HW in [0,1]) and ``ela``, output ``logits`` (B1HW);
wcbnet: input ``signed_ela``, outputs ``logits`` (B x heads) and ``cams`` (B x heads x H/4 x W/4).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from tamperscan.nets.two_stream import TwoStreamLocalizer
from tamperscan.nets.wcbnet import WCBNet

IO_NAMES: dict[type[nn.Module], tuple[tuple[str, ...], tuple[str, ...]]] = {
    TwoStreamLocalizer: (("rgb", "ela"), ("logits",)),
    WCBNet: (("signed_ela",), ("logits", "cams")),
}
MIN_OPSET = 18


def io_names(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    for model_cls, names in IO_NAMES.items():
        if isinstance(model, model_cls):
            return names
    raise TypeError(f"no ONNX export for {type(model).__name__}")


def export_onnx(model: nn.Module, path: str | Path, input_size: int | None = None,
                opset: int = MIN_OPSET, dynamic_batch: bool = True) -> Path:
    """Export ``model`` (put in eval mode) to ``path`` as one self-contained .onnx file.
    ``input_size`` defaults to the model config's. Returns the path."""
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    inputs, outputs = io_names(model)
    size = int(input_size or model.config.input_size)
    model = model.eval()
    # Batch 2 for tracing: with batch 1 the exporter may specialise the batch dimension.
    example = tuple(torch.rand(2, 3, size, size) for _ in inputs)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = {name: {0: batch} for name in inputs}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that it renames the batch axis to the name it already has.
        warnings.filterwarnings("ignore", message=".*axis name.*")
        program = torch.onnx.export(
            model, example, dynamo=True, opset_version=opset, input_names=list(inputs),
            output_names=list(outputs), dynamic_shapes=dynamic_shapes, external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path
