"""Two-stream tamper localizer (Meng et al., "Image Tampering Localization based on Pyramid
Multi-Scale Pooling Module").

ELA stream and RGB stream: MobileNetV1 each, Coordinate Attention after F3, F4 and F5 (inside
the stream, so F4 is computed from the attended F3). F5 of both streams is fused by ADD, pyramid
pooling adds context, a 1x1 conv gives one tamper logit per pixel, bilinear upsampling restores
the input size. Optional (``skip_f3``, not in the paper): the fused F3 (also ADD) joins the
decoder at stride 8 before the classifier, for sharper boundaries than stride 32 allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tamperscan.nets.coordinate_attention import CoordinateAttention
from tamperscan.nets.mobilenet_v1 import MobileNetV1, conv_bn_relu
from tamperscan.nets.pyramid_pooling import PyramidPooling

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ATTENDED_LEVELS = (3, 4, 5)


@dataclass(frozen=True)
class TwoStreamConfig:
    arch: str = "two_stream"
    #: Square side the pipeline resizes to; the net itself takes any size (multiples of 32
    #: keep every level aligned).
    input_size: int = 384
    width_multiplier: float = 0.5
    ca_reduction: int = 32
    ppm_bins: Sequence[int] = field(default=(1, 2, 3, 6))
    #: Channels of each pyramid branch after its 1x1 conv (PSPNet: in_channels / len(bins)).
    ppm_channels: int = 128
    #: Output channels of the PPM 3x3 conv and of the decoder conv.
    decoder_channels: int = 128
    skip_f3: bool = True
    skip_channels: int = 48
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.arch != "two_stream":
            raise ValueError(f"not a two_stream config: arch={self.arch!r}")
        object.__setattr__(self, "ppm_bins", tuple(int(b) for b in self.ppm_bins))

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("rgb", "ela")

    @classmethod
    def from_any(cls, cfg: TwoStreamConfig | Mapping[str, Any] | None) -> TwoStreamConfig:
        if cfg is None:
            return cls()
        return cfg if isinstance(cfg, cls) else cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ppm_bins": list(self.ppm_bins)}


class AttentiveMobileNet(nn.Module):
    """One stream: MobileNetV1 with Coordinate Attention applied after F3, F4, F5."""

    def __init__(self, width_multiplier: float, ca_reduction: int) -> None:
        super().__init__()
        self.backbone = MobileNetV1(width_multiplier)
        self.attention = nn.ModuleDict({
            f"f{level}": CoordinateAttention(self.backbone.out_channels[level - 1], ca_reduction)
            for level in ATTENDED_LEVELS
        })
        self.out_channels = self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for index, level in enumerate(self.backbone.levels, start=1):
            x = level(x)
            if index in ATTENDED_LEVELS:
                x = self.attention[f"f{index}"](x)
            features.append(x)
        return features


class TwoStreamEncoder(nn.Module):
    """The localizer's two MobileNetV1 streams (RGB normalised to ImageNet statistics inside,
    ELA as is). WCBnet's ``two_stream`` backbone is this module too, so the localizer's
    trained streams load into it under the same parameter names."""

    def __init__(self, width_multiplier: float, ca_reduction: int) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.ela_stream = AttentiveMobileNet(width_multiplier, ca_reduction)
        self.rgb_stream = AttentiveMobileNet(width_multiplier, ca_reduction)
        self.out_channels = self.ela_stream.out_channels

    def fused(self, rgb: torch.Tensor, ela: torch.Tensor) -> list[torch.Tensor]:
        """[F1..F5] of both streams fused by ADD, as the localizer fuses F3 and F5."""
        rgb_features = self.rgb_stream((rgb - self.rgb_mean) / self.rgb_std)
        return [r + e for r, e in zip(rgb_features, self.ela_stream(ela), strict=True)]

    forward = fused


class TwoStreamLocalizer(TwoStreamEncoder):
    """forward(rgb in [0,1], ela) -> tamper logits B x 1 x H x W (sigmoid gives probability)."""

    def __init__(self, cfg: TwoStreamConfig | Mapping[str, Any] | None = None) -> None:
        c = TwoStreamConfig.from_any(cfg)
        super().__init__(c.width_multiplier, c.ca_reduction)
        self.config = c
        channels = self.out_channels
        self.ppm = PyramidPooling(channels[4], c.ppm_channels, c.decoder_channels, c.ppm_bins)
        if c.skip_f3:
            self.skip_proj = conv_bn_relu(channels[2], c.skip_channels)
            self.skip_fuse = conv_bn_relu(c.decoder_channels + c.skip_channels,
                                          c.decoder_channels, 3)
        self.dropout = nn.Dropout2d(c.dropout)
        self.classifier = nn.Conv2d(c.decoder_channels, 1, 1)

    def forward(self, rgb: torch.Tensor, ela: torch.Tensor) -> torch.Tensor:
        return self.decode(self.fused(rgb, ela), rgb.shape[-2:])

    def decode(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Fused blocks -> logits at ``size``: what follows the encoder."""
        x = self.ppm(features[4])
        if self.config.skip_f3:
            skip = self.skip_proj(features[2])
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.skip_fuse(torch.cat([x, skip], dim=1))
        logits = self.classifier(self.dropout(x))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
