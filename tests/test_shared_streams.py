"""One encoder pass for both nets: exact when WCBnet sits on the localizer's frozen streams,
refused otherwise, and the model stage gives the same columns either way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tamperscan.stages.nets as net_stages
from tamperscan.batch import bytes_batch
from tamperscan.engines import build_engine
from tamperscan.nets import build_model, load_config
from tamperscan.nets.shared import SharedStreams, shares_streams
from tamperscan.stages import DecodeELA, Nets
from tests.corpus import encode, natural_image
from tests.helpers import random_weights_config, randomize_norm_stats


def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A localizer whose every layer leaves a trace, and a WCBnet on its streams."""
    localizer = randomize_norm_stats(build_model(load_config("two_stream")))
    torch.manual_seed(1)
    wcbnet = build_model(load_config("wcbnet")).eval()
    wcbnet.backbones[0].load_state_dict(
        {k: v for k, v in localizer.state_dict().items()
         if k.startswith(("rgb_stream.", "ela_stream."))})
    return localizer, wcbnet


def test_one_pass_gives_both_nets_outputs():
    localizer, wcbnet = _pair()
    assert shares_streams(localizer, wcbnet)
    rgb, ela = torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        joint = SharedStreams(localizer, wcbnet).eval()(rgb, ela)
        separate = (localizer(rgb, ela), *wcbnet(rgb, ela))
    assert [t.shape for t in joint] == [(2, 1, 128, 128), (2, 3), (2, 3, 32, 32)]
    for a, b in zip(joint, separate, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_streams_that_differ_are_not_shared():
    localizer, wcbnet = _pair()
    with torch.no_grad():  # one BatchNorm statistic of WCBnet's copy moved: not the same net
        wcbnet.backbones[0].ela_stream.backbone.levels[0][0][1].running_mean[0] += 1e-3
    assert not shares_streams(localizer, wcbnet)
    with pytest.raises(ValueError, match="run the nets separately"):
        SharedStreams(localizer, wcbnet)
    paper_like = build_model({**load_config("wcbnet"), "backbone": "resnet18",
                              "input_size": 256})
    assert not shares_streams(localizer, paper_like)
    resized = build_model({**load_config("wcbnet"), "input_size": 256})
    assert not shares_streams(localizer, resized)


def test_shared_graph_exports_with_its_io_contract(tmp_path):
    localizer, wcbnet = _pair()
    model = SharedStreams(localizer, wcbnet).eval()
    engine = build_engine(model, "onnxruntime", cache_dir=tmp_path, threads=1, device="cpu")
    assert engine.input_names == ("rgb", "ela")
    assert engine.output_names == ("map_logits", "logits", "cams")
    rng = np.random.default_rng(0)
    feeds = {name: rng.random((2, 3, 384, 384), dtype=np.float32) for name in ("rgb", "ela")}
    got = engine(feeds)
    with torch.no_grad():
        expected = model(*(torch.from_numpy(feeds[n]) for n in ("rgb", "ela")))
    for name, reference in zip(engine.output_names, expected, strict=True):
        assert np.abs(got[name] - reference.numpy()).max() <= 1e-4, name


def test_model_stage_columns_do_not_depend_on_sharing(tmp_path, monkeypatch):
    config = random_weights_config(tmp_path)
    images = bytes_batch([encode(natural_image(90, 130, 3), "JPEG"), b"not an image"])
    decoded = DecodeELA(config)(images)
    shared = Nets(config)
    assert shared.shared and list(shared.engines) == ["shared_streams"]
    monkeypatch.setattr(net_stages, "shares_streams", lambda *models: False)
    separate = Nets(config)
    assert not separate.shared and list(separate.engines) == ["two_stream", "wcbnet"]
    a, b = shared(dict(decoded)), separate(dict(decoded))
    assert list(a["status"]) == list(b["status"]) == ["ok", "error"]
    for column in ("ts_map", "score_two_stream", "score_wcbnet_heads", "score_wcbnet",
                   "cam_views", "cam"):
        np.testing.assert_allclose(a[column].astype(np.float32), b[column].astype(np.float32),
                                   atol=2e-3, err_msg=column)
    assert a["t_nets"][0] > 0 and a["t_nets"][1] == 0


def test_int8_stems_read_float_inputs_in_the_shared_graph(tmp_path):
    """Each stream's F1 also feeds the fused F1 Add in the one graph: that Add stays float
    too, so no fp32 stem convolution reads an input rounded to 8 bits (a shared QDQ pair)."""
    import onnx

    from tamperscan.engines.quantize import (
        FLOAT_STEM_CONVS,
        cached_int8_onnx,
        float_nodes,
        stem_convs,
    )

    model = SharedStreams(*_pair()).eval()
    path = cached_int8_onnx(model, tmp_path, 384)
    graph = onnx.load(str(path)).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    stems = set(stem_convs(path, FLOAT_STEM_CONVS[("rgb", "ela")]))
    assert len(stems) == 2 * FLOAT_STEM_CONVS[("rgb", "ela")]
    stem_inputs = [node.input[0] for node in graph.node if node.name in stems]
    assert "DequantizeLinear" not in {produced_by.get(name) for name in stem_inputs}
    # the other readers of those inputs are the extra float nodes (the fused F1 Adds)
    extra = set(float_nodes(path, FLOAT_STEM_CONVS[("rgb", "ela")])) - stems
    assert extra and {n.op_type for n in graph.node if n.name in extra} == {"Add"}
