"""Pyramid pooling module (Zhao et al., PSPNet 2017), as used by the two-stream localizer.

Each bin size b pools the map to b x b (adaptive average pooling), reduces channels with a
1x1 conv + BN + ReLU, and is upsampled bilinearly back to the input size. The input and all
branches are concatenated and mixed by a 3x3 conv + BN + ReLU: the output sees the local
feature and its 1x1 (global), 2x2, 3x3 and 6x6 context.

Note: the 1x1 branch has one value per channel, so training needs batch size >= 2 (as in
PSPNet); eval works at any batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tamperscan.nets.mobilenet_v1 import conv_bn_relu


class PyramidPooling(nn.Module):
    def __init__(self, in_channels: int, branch_channels: int, out_channels: int,
                 bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), conv_bn_relu(in_channels, branch_channels))
            for b in self.bins
        )
        self.mix = conv_bn_relu(in_channels + len(self.bins) * branch_channels, out_channels, 3)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = [x]
        for branch in self.branches:
            pyramid.append(F.interpolate(branch(x), size=size, mode="bilinear",
                                         align_corners=False))
        return self.mix(torch.cat(pyramid, dim=1))
