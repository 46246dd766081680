"""MobileNetV1 (Howard et al. 2017) as a five-level feature extractor.

The 13 depthwise-separable blocks are split into five feature levels the way Keras
segmentation encoders do it (image-segmentation-keras ``get_mobilenet_encoder``, the PSPNet
code base the two-stream paper builds on). Channels are for width 1.0:

====  ======================================  ======  ========
level layers                                  stride  channels
====  ======================================  ======  ========
F1    conv3x3(3->32, s2), dw-sep(32->64)      2       64
F2    dw-sep(64->128, s2), dw-sep(128->128)   4       128
F3    dw-sep(128->256, s2), dw-sep(256->256)  8       256
F4    dw-sep(256->512, s2), 5x dw-sep(512)    16      512
F5    dw-sep(512->1024, s2), dw-sep(1024)     32      1024
====  ======================================  ======  ========

Every conv is followed by BatchNorm and ReLU (the paper's ReLU, not Keras' ReLU6). Channel
counts are ``width_multiplier * c`` rounded to a multiple of 8 (never below 8).
"""

from __future__ import annotations

import torch
from torch import nn

#: (out_channels at width 1.0, stride) of the 13 depthwise-separable blocks, grouped by level.
_LEVELS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((64, 1),),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
    ((1024, 2), (1024, 1)),
)
_STEM_CHANNELS = 32


def scaled_channels(channels: int, width_multiplier: float, divisor: int = 8) -> int:
    """Round ``channels * width_multiplier`` to a multiple of ``divisor`` (MobileNet rule:
    never drop more than 10% below the exact value)."""
    exact = channels * width_multiplier
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return rounded


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def depthwise_separable(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3x3 depthwise conv (spatial filtering per channel) then 1x1 pointwise conv (mixing)."""
    return nn.Sequential(
        conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch),
        conv_bn_relu(in_ch, out_ch, 1),
    )


class MobileNetV1(nn.Module):
    """Backbone only (no classifier). ``levels[0]`` maps the image to F1, ``levels[k]`` maps
    F_k to F_{k+1}."""

    def __init__(self, width_multiplier: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        channels = scaled_channels(_STEM_CHANNELS, width_multiplier)
        levels: list[nn.Sequential] = []
        self.out_channels: list[int] = []
        for index, blocks in enumerate(_LEVELS):
            layers: list[nn.Module] = []
            if index == 0:
                layers.append(conv_bn_relu(in_channels, channels, 3, 2))
            for base_out, stride in blocks:
                out = scaled_channels(base_out, width_multiplier)
                layers.append(depthwise_separable(channels, out, stride))
                channels = out
            levels.append(nn.Sequential(*layers))
            self.out_channels.append(channels)
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns [F1, F2, F3, F4, F5] at strides 2, 4, 8, 16, 32."""
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features
