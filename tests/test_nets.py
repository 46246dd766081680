"""Shapes and wiring of the nets at paper and default sizes, builders, weight files."""

from __future__ import annotations

import pytest
import torch

from tamperscan.nets import (
    CoordinateAttention,
    MobileNetV1,
    PyramidPooling,
    TwoStreamLocalizer,
    WCBNet,
    build_model,
    load_config,
    load_weights,
    save_weights,
)
from tamperscan.nets.build import load_localizer_streams, read_weights_metadata
from tamperscan.nets.two_stream import IMAGENET_MEAN
from tamperscan.nets.wcbnet import CrossBlockAttention, ResNetBlocks


def test_mobilenet_levels_have_documented_strides_and_widths():
    net = MobileNetV1(width_multiplier=0.5).eval()
    with torch.no_grad():
        features = net(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in features] == [32, 64, 128, 256, 512] == net.out_channels
    strides = (2, 4, 8, 16, 32)
    assert [tuple(f.shape[-2:]) for f in features] == [(64 // s, 96 // s) for s in strides]
    assert MobileNetV1(1.0).out_channels == [64, 128, 256, 512, 1024]
    assert MobileNetV1(0.75).out_channels == [48, 96, 192, 384, 768]


def test_coordinate_attention_gates_rows_and_columns():
    attention = CoordinateAttention(64, reduction=32).eval()
    x = torch.rand(2, 64, 12, 20)
    with torch.no_grad():
        out = attention(x)
    assert out.shape == x.shape
    gate = out / x
    assert torch.all((gate > 0) & (gate < 1))
    # The gate factorises as a(row) * b(column): every 2x2 minor of the gate is zero.
    minor = gate[..., :-1, :-1] * gate[..., 1:, 1:] - gate[..., :-1, 1:] * gate[..., 1:, :-1]
    assert minor.abs().max() < 1e-6
    assert gate.std(dim=-1).mean() > 0 and gate.std(dim=-2).mean() > 0  # depends on position


@pytest.mark.parametrize("side", [12, 10])
def test_pyramid_pooling_shape_and_global_context(side: int):
    ppm = PyramidPooling(32, 8, 16, bins=(1, 2, 3, 6)).eval()
    x = torch.rand(1, 32, side, side)
    with torch.no_grad():
        out = ppm(x)
        x_changed = x.clone()
        x_changed[..., 0, 0] += 5.0
        changed = ppm(x_changed)
    assert out.shape == (1, 16, side, side)
    # A 3x3 conv alone sees one pixel away; the 1x1 bin carries a corner change to the far corner.
    assert not torch.allclose(out[..., -1, -1], changed[..., -1, -1])


@pytest.mark.parametrize(("name", "batch"), [("two_stream_paper", 1), ("two_stream", 2)])
def test_two_stream_output_is_one_logit_per_input_pixel(name: str, batch: int):
    cfg = load_config(name)
    model = build_model(cfg).eval()
    size = cfg["input_size"]
    with torch.no_grad():
        logits = model(torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size))
    assert isinstance(model, TwoStreamLocalizer)
    assert logits.shape == (batch, 1, size, size)
    assert torch.isfinite(logits).all()


def test_two_stream_normalises_rgb_inside_and_fuses_f3_only_when_configured():
    model = build_model(load_config("two_stream")).eval()
    seen = {}
    model.rgb_stream.register_forward_pre_hook(lambda _m, args: seen.update(rgb=args[0]))
    rgb = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    with torch.no_grad():
        model(rgb, torch.rand(1, 3, 64, 64))
    assert seen["rgb"].abs().max() < 1e-6
    assert hasattr(model, "skip_proj")
    assert not hasattr(build_model(load_config("two_stream_paper")), "skip_proj")


@pytest.mark.parametrize(("name", "batch"), [("wcbnet_paper", 1), ("wcbnet", 2)])
def test_wcbnet_outputs_three_logits_and_block2_cams(name: str, batch: int):
    cfg = load_config(name)
    model = build_model(cfg).eval()
    size = cfg["input_size"]
    inputs = [torch.rand(batch, 3, size, size) for _ in model.config.input_names]
    with torch.no_grad():
        logits, cams = model(*inputs)
    assert isinstance(model, WCBNet)
    assert logits.shape == (batch, 3)
    assert cams.shape == (batch, 3, size // 4, size // 4)
    assert (cams >= 0).all() and torch.isfinite(cams).all()
    assert len(model.backbones) == (3 if cfg["separate_backbones"] else 1)


def _small_wcbnet(**overrides) -> WCBNet:
    cfg = {"arch": "wcbnet", "backbone": "resnet18", "embed_dim": 8, "attention_dim": 4,
           "input_size": 64, **overrides}
    return build_model(cfg).eval()


def test_separate_backbones_make_heads_independent():
    torch.manual_seed(0)
    model = _small_wcbnet(separate_backbones=True)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before, _ = model(x)
        for p in model.backbones[1].parameters():
            p.add_(0.1 * torch.randn_like(p))
        after, _ = model(x)
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]])
    assert not torch.allclose(before[:, 1], after[:, 1])


def test_shared_backbone_runs_once_per_forward():
    model = _small_wcbnet()
    calls = []
    model.backbones[0].register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))
    assert len(model.backbones) == 1 and len(calls) == 1


@pytest.mark.parametrize("target", [2, 3, 4])
def test_cross_block_attention_output_is_5d_at_target_block(target: int):
    backbone = ResNetBlocks("resnet18").eval()
    attention = CrossBlockAttention(backbone.out_channels, target, embed_dim=8,
                                    attention_dim=4).eval()
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 96, 96))
        fc = attention(features)
    assert fc.shape == (1, 5 * 8, *features[target - 1].shape[-2:])


def test_configs_validate():
    for name in ("two_stream", "two_stream_paper", "wcbnet", "wcbnet_paper"):
        cfg = load_config(name)
        assert cfg["arch"] in ("two_stream", "wcbnet") and cfg["input_size"] % 32 == 0
    with pytest.raises(ValueError, match="widht"):
        build_model({"arch": "two_stream", "widht_multiplier": 1.0})
    with pytest.raises(ValueError, match="arch"):
        build_model({"arch": "unet"})
    with pytest.raises(ValueError, match="backbone"):
        build_model({"arch": "wcbnet", "backbone": "vgg16"})


def test_weights_roundtrip_fp32_exact_fp16_close(tmp_path):
    torch.manual_seed(0)
    model = _small_wcbnet()
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(torch.randn_like(tensor))
    reference = model.state_dict()
    for fp16 in (False, True):
        path = tmp_path / f"w{int(fp16)}.safetensors"
        save_weights(model, path, fp16=fp16, metadata={"trained_on": "synthetic"})
        fresh = _small_wcbnet()
        meta = load_weights(fresh, path)
        assert meta["trained_on"] == "synthetic" and meta["arch"] == "wcbnet"
        for key, value in fresh.state_dict().items():
            assert value.dtype == reference[key].dtype
            if fp16 and value.is_floating_point():
                torch.testing.assert_close(value, reference[key], rtol=1e-3, atol=1e-3)
            else:
                assert torch.equal(value, reference[key])
    assert (tmp_path / "w1.safetensors").stat().st_size < 0.6 * (
        tmp_path / "w0.safetensors").stat().st_size
    with pytest.raises(ValueError, match="embed_dim"):
        load_weights(_small_wcbnet(embed_dim=16), tmp_path / "w0.safetensors")
    load_weights(_small_wcbnet(input_size=128), tmp_path / "w0.safetensors")  # layout-free key


def test_wcbnet_on_the_localizers_streams_sees_the_localizers_features(tmp_path):
    """backbone: two_stream reads (rgb, ela); the localizer's streams load into it, so its
    blocks are the localizer's fused blocks exactly; other weight files are refused."""
    torch.manual_seed(0)
    localizer = build_model({**load_config("two_stream"), "input_size": 64}).eval()
    save_weights(localizer, tmp_path / "localizer.safetensors")
    cfg = {"arch": "wcbnet", "backbone": "two_stream", "input_size": 64, "embed_dim": 8,
           "attention_dim": 4}
    model = build_model(cfg).eval()
    assert model.config.input_names == ("rgb", "ela")
    assert load_localizer_streams(model, tmp_path / "localizer.safetensors") == len(
        [k for k in localizer.state_dict() if k.startswith(("rgb_stream.", "ela_stream."))])
    rgb, ela = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(model.backbones[0](rgb, ela), localizer.fused(rgb, ela),
                                strict=True):
            assert torch.equal(ours, theirs)
        logits, cams = model(rgb, ela)
    assert logits.shape == (2, 3) and cams.shape == (2, 3, 16, 16)
    resnet = _small_wcbnet()
    save_weights(resnet, tmp_path / "resnet.safetensors")
    with pytest.raises(ValueError, match="not two_stream"):
        load_localizer_streams(model, tmp_path / "resnet.safetensors")
    narrow = build_model({**load_config("two_stream"), "width_multiplier": 0.25})
    save_weights(narrow, tmp_path / "narrow.safetensors")
    with pytest.raises(ValueError, match="does not fit"):
        load_localizer_streams(model, tmp_path / "narrow.safetensors")


def test_weights_saved_before_a_config_key_existed_still_load(tmp_path):
    """A key added to the config later (the two_stream backbone's width) reads as its
    default when the file's config lacks it."""
    import json

    from safetensors.torch import load_file, save_file

    model = _small_wcbnet()
    save_weights(model, tmp_path / "w.safetensors")
    meta = dict(read_weights_metadata(tmp_path / "w.safetensors"))
    old = {k: v for k, v in json.loads(meta["config"]).items()
           if k not in ("width_multiplier", "ca_reduction")}
    save_file(load_file(str(tmp_path / "w.safetensors")), str(tmp_path / "old.safetensors"),
              metadata={**meta, "config": json.dumps(old)})
    load_weights(_small_wcbnet(), tmp_path / "old.safetensors")
