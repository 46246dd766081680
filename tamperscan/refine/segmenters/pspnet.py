"""PSPNet (Zhao et al., CVPR 2017) for the semantic-region segmenter.

torchvision ships DeepLab but no PSPNet, so the network is assembled here: a dilated ResNet
(output stride 8, ``replace_stride_with_dilation``), the project's pyramid pooling module
(bins 1, 2, 3, 6, followed by a 3x3 conv + BN + ReLU) and a dropout + 1x1 classifier.
``forward`` returns ``{"out": logits, "aux": ...}`` like torchvision's segmentation models, so
one segmenter code path serves both. Weights are never downloaded: the backbone is built with
``weights=None`` and a state dict is loaded by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50, resnet101

from tamperscan.nets.mobilenet_v1 import conv_bn_relu
from tamperscan.nets.pyramid_pooling import PyramidPooling

BACKBONES = {"resnet50": resnet50, "resnet101": resnet101}
BACKBONE_CHANNELS = 2048  # layer4 width of both bottleneck ResNets
AUX_CHANNELS = 1024  # layer3 width
HEAD_CHANNELS = 512


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling; logits at the input resolution."""

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        bins: Sequence[int] = (1, 2, 3, 6),
        aux_loss: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown PSPNet backbone {backbone!r}; choose from {list(BACKBONES)}")
        resnet = BACKBONES[backbone](weights=None, replace_stride_with_dilation=[False, True, True])
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.ppm = PyramidPooling(
            BACKBONE_CHANNELS, BACKBONE_CHANNELS // len(bins), HEAD_CHANNELS, bins
        )
        self.classifier = nn.Sequential(
            nn.Dropout2d(dropout), nn.Conv2d(HEAD_CHANNELS, num_classes, 1)
        )
        self.aux_classifier = (
            nn.Sequential(
                conv_bn_relu(AUX_CHANNELS, 256, 3),
                nn.Dropout2d(dropout),
                nn.Conv2d(256, num_classes, 1),
            )
            if aux_loss
            else None
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        c3 = self.layer3(self.layer2(self.layer1(self.stem(x))))
        logits = self.classifier(self.ppm(self.layer4(c3)))
        out = {"out": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(c3)
            out["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
        return out


def build_pspnet(
    num_classes: int = 21, backbone: str = "resnet50", aux_loss: bool = False
) -> PSPNet:
    """Randomly initialised PSPNet in eval mode (load a state dict to make it useful)."""
    return PSPNet(num_classes=num_classes, backbone=backbone, aux_loss=aux_loss).eval()
