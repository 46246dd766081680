"""Multi-view CAMs: normalisation, geometric-mean fusion, and the autograd Grad-CAM reference.

WCBNet computes its CAMs in the forward pass (see tamperscan.nets.wcbnet); ``gradcam_autograd``
is the textbook Grad-CAM on the same Fc tensor, kept to prove the two agree.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tamperscan.nets.wcbnet import resize_cam


def normalize_cams(cams: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Min-max each map (last two axes) to [0, 1]; a flat map becomes all zeros."""
    cams = np.asarray(cams, dtype=np.float32)
    low = cams.min(axis=(-2, -1), keepdims=True)
    span = cams.max(axis=(-2, -1), keepdims=True) - low
    return np.where(span > eps, (cams - low) / np.maximum(span, eps), 0.0).astype(np.float32)


def fuse_geometric(cams: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Geometric mean over the view axis of normalised maps: (3,h,w) -> (h,w), (B,3,h,w) ->
    (B,h,w). A view below ``eps`` vetoes the pixel (exact zero): a region is kept only where
    every receptive field agrees, which is the point of the geometric (not arithmetic) mean."""
    cams = np.clip(np.asarray(cams, dtype=np.float64), 0.0, 1.0)
    if cams.ndim not in (3, 4):
        raise ValueError(f"expected (views,h,w) or (B,views,h,w), got shape {cams.shape}")
    fused = np.exp(np.log(np.maximum(cams, eps)).mean(axis=-3))
    fused[(cams < eps).any(axis=-3)] = 0.0
    return np.clip(fused, 0.0, 1.0).astype(np.float32)


def gradcam_autograd(model: nn.Module, x: torch.Tensor, head: int) -> torch.Tensor:
    """Classic Grad-CAM of WCBNet head ``head`` (0-based) on its Fc: alpha_k = spatial mean of
    d logit / d Fc_k, CAM = ReLU(sum_k alpha_k Fc_k), resized like the forward CAMs.
    Returns B x h x w (block-2 resolution)."""
    captured: dict[str, torch.Tensor] = {}

    def keep_fc(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        # Replace Fc by a leaf that requires grad: works for frozen weights and under eval.
        fc = output.detach().requires_grad_(True)
        captured["fc"] = fc
        return fc

    handle = model.heads[head].attention.register_forward_hook(keep_fc)
    try:
        with torch.enable_grad():
            logits, cams = model(x)
            fc = captured["fc"]
            (grad,) = torch.autograd.grad(logits[:, head].sum(), fc)
    finally:
        handle.remove()
    alpha = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((alpha * fc).sum(dim=1, keepdim=True)).detach()
    return resize_cam(cam, cams.shape[-2:])[:, 0]
