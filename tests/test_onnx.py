"""ONNX export of both default nets matches PyTorch under onnxruntime at batch 1 and 2."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tamperscan.export import export_onnx
from tamperscan.nets import build_model, load_config
from tests.helpers import randomize_norm_stats

#: The paper's backbone family over signed ELA, small enough to export quickly.
RESNET_WCBNET = {"arch": "wcbnet", "backbone": "resnet18", "input_size": 128, "embed_dim": 16,
                 "attention_dim": 8}


@pytest.mark.parametrize(("name", "inputs", "outputs"), [
    ("two_stream", ["rgb", "ela"], ["logits"]),
    ("wcbnet", ["rgb", "ela"], ["logits", "cams"]),
    ("resnet_wcbnet", ["signed_ela"], ["logits", "cams"]),
])
def test_onnx_matches_torch(tmp_path, name: str, inputs: list[str], outputs: list[str]):
    cfg = RESNET_WCBNET if name == "resnet_wcbnet" else load_config(name)
    size = cfg["input_size"]
    model = randomize_norm_stats(build_model(cfg))
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == inputs
    assert [o.name for o in graph.output] == outputs
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 2):
        feeds = {n: torch.rand(batch, 3, size, size, generator=generator) for n in inputs}
        with torch.no_grad():
            expected = model(*feeds.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(outputs, {n: x.numpy() for n, x in feeds.items()})
        for reference, result in zip(expected, got, strict=True):
            assert result.shape == tuple(reference.shape)
            assert np.abs(result - reference.numpy()).max() <= 1e-4
        if batch == 2:  # rows are computed per image, not mixed across the batch
            assert not np.allclose(got[0][0], got[0][1])


def test_export_rejects_old_opsets(tmp_path):
    model = build_model(load_config("wcbnet"))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)
