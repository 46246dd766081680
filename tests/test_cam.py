"""The forward-pass CAM equals autograd Grad-CAM; CAM normalisation and fusion properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tamperscan.nets import build_model
from tamperscan.refine.cam import fuse_geometric, gradcam_autograd, normalize_cams


def _random_wcbnet(separate: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({"arch": "wcbnet", "backbone": "resnet18", "embed_dim": 16,
                         "attention_dim": 8, "separate_backbones": separate})
    for head in model.heads:
        head.attention.gamma.data.fill_(0.7)  # exercise the attention path (zero at init)
        head.classifier.weight.data.normal_()
    return model.double().eval()


def _center_classifiers(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Make each dense weight orthogonal to GAP(Fc) of x[0]: that CAM's pre-ReLU mean is then
    zero, so it has negative pixels and the test sees the ReLU act."""
    pooled = []
    hooks = [head.attention.register_forward_hook(
        lambda _m, _i, out: pooled.append(out.mean(dim=(2, 3))[0])) for head in model.heads]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    for head, g in zip(model.heads, pooled, strict=True):
        w = head.classifier.weight.data[0]
        w -= (w @ g) / (g @ g) * g


@pytest.mark.parametrize("separate", [False, True])
def test_forward_cam_equals_gradcam_up_to_spatial_size(separate: bool):
    model = _random_wcbnet(separate)
    for p in model.parameters():  # Grad-CAM must not need trainable weights
        p.requires_grad_(False)
    x = torch.rand(2, 3, 96, 96, dtype=torch.float64) * 2 - 1
    _center_classifiers(model, x)
    with torch.no_grad():
        _, cams = model(x)
    for head, block in enumerate(model.config.head_blocks):
        reference = gradcam_autograd(model, x, head)
        forward = cams[:, head]
        assert reference.shape == forward.shape == (2, 24, 24)
        assert forward.max() > 0 and (forward[0] == 0).any()  # not all zero, ReLU active
        side = 96 // (4 * 2 ** (block - 2))  # Fc side at block i (block 2 has stride 4)
        torch.testing.assert_close(reference * side * side, forward, rtol=1e-9, atol=1e-12)
        corr = np.corrcoef(reference.flatten().numpy(), forward.flatten().numpy())[0, 1]
        assert corr > 0.9999


def test_gradcam_of_one_head_differs_from_another():
    model = _random_wcbnet(separate=False)
    x = torch.rand(1, 3, 96, 96, dtype=torch.float64) * 2 - 1
    first, second = gradcam_autograd(model, x, 0), gradcam_autograd(model, x, 1)
    assert not torch.allclose(first, second)


def test_normalize_cams_maps_each_view_to_unit_range():
    rng = np.random.default_rng(0)
    cams = rng.gamma(2.0, 3.0, size=(2, 3, 16, 16)).astype(np.float32) + 4.0
    cams[1, 2] = 7.0  # a flat map
    out = normalize_cams(cams)
    assert out.shape == cams.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out[0].min(axis=(-2, -1)), 0.0, atol=1e-7)
    np.testing.assert_allclose(out[0].max(axis=(-2, -1)), 1.0, atol=1e-6)
    assert np.all(out[1, 2] == 0)
    # min-max keeps the order of pixels
    assert np.array_equal(np.argsort(out[0, 0], axis=None), np.argsort(cams[0, 0], axis=None))


def test_fuse_geometric_properties():
    rng = np.random.default_rng(1)
    cams = rng.uniform(0, 1, size=(4, 3, 8, 8)).astype(np.float32)
    cams[0, 1, 2, 3] = 0.0
    fused = fuse_geometric(cams)
    assert fused.shape == (4, 8, 8) and fused.dtype == np.float32
    assert fused.min() >= 0 and fused.max() <= 1
    assert np.all(fused <= cams.mean(axis=1) + 1e-6)  # AM-GM
    assert fused[0, 2, 3] == 0.0  # one view with no evidence vetoes the pixel
    np.testing.assert_allclose(fused[:, 5, 5], np.cbrt(np.prod(cams[:, :, 5, 5], axis=1)),
                               rtol=1e-5)
    same = np.full((3, 5, 5), 0.4, np.float32)
    np.testing.assert_allclose(fuse_geometric(same), 0.4, rtol=1e-6)
    assert fuse_geometric(cams[0]).shape == (8, 8)
    with pytest.raises(ValueError):
        fuse_geometric(cams[0, 0])
