"""WCBnet (Wang & Abhayaratne, MMSP 2023) with multi-view heads and in-graph CAMs.

A ResNet over signed ELA yields five blocks: F1 = stem (conv1, bn1, relu, maxpool; stride 4),
F2..F5 = layer1..layer4 (strides 4, 8, 16, 32). A cross-block attention head for target block i
(i = 2, 3, 4 by default) builds Fc from all five blocks, then GAP -> dense -> one logit:

1. Resize + project: every block is brought to block i's spatial shape and to D channels by a
   1x1 conv + BN + ReLU. Larger blocks are average-pooled *before* the projection, smaller ones
   upsampled bilinearly *after* it (cheapest order; pooling and 1x1 convs commute).
2. Attention across blocks: each projected block B_j (j = 1..5) is one token with descriptor
   d_j = GAP(B_j). q_j = W_q d_j, k_j = W_k d_j (attention_dim wide),
   a_jl = softmax_l(q_j . k_l / sqrt(attention_dim)), and block j becomes
   Y_j = B_j + gamma * sum_l a_jl B_l  (gamma learnable, zero at init as in SAGAN/DANet, so
   training starts from plain concatenation and learns how much to mix).
3. Fc = concat(Y_1..Y_5): 5*D channels at block i's resolution.

CAM without gradients: logit = w . GAP(Fc) + b, so d logit / d Fc_k = w_k / (h*w) everywhere and
Grad-CAM on Fc is ReLU(sum_k w_k Fc_k) / (h*w). The forward pass returns ReLU(sum_k w_k Fc_k)
per head, bilinearly resized to block-2 resolution (input / 4), not normalised.

``separate_backbones: true`` gives every head its own ResNet (the paper trains one WCBnet per
i); the default shares one backbone so a single forward pass yields all views.

``backbone: two_stream`` (not in the paper) is the localizer's encoder: RGB and absolute-ELA
MobileNetV1 streams, blocks fused by ADD, inputs (rgb, ela) instead of signed ELA. The
localizer's trained streams load into it (`tamperscan.nets.build.load_localizer_streams`), so
the cross-block heads start from features that already tell forged from authentic pixels
(MODEL_CARD.md, the thirteenth session's probe). Its F1 has stride 2, so the heads' CAMs are
still brought to F2's stride 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from tamperscan.nets.mobilenet_v1 import conv_bn_relu
from tamperscan.nets.two_stream import TwoStreamEncoder

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "two_stream")
NUM_BLOCKS = 5
CAM_BLOCK = 2


@dataclass(frozen=True)
class WCBNetConfig:
    arch: str = "wcbnet"
    input_size: int = 256
    backbone: str = "resnet18"
    #: Target block (1-based, F1..F5) of each head; one logit and one CAM per head.
    head_blocks: Sequence[int] = field(default=(2, 3, 4))
    #: D: channels of every projected block; Fc has 5 * D channels.
    embed_dim: int = 64
    #: Width of the query/key vectors of the attention across blocks.
    attention_dim: int = 32
    separate_backbones: bool = False
    #: The ``two_stream`` backbone's width and Coordinate Attention reduction (the
    #: localizer's, so its streams load); unused by the ResNets.
    width_multiplier: float = 0.5
    ca_reduction: int = 32

    def __post_init__(self) -> None:
        if self.arch != "wcbnet":
            raise ValueError(f"not a wcbnet config: arch={self.arch!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        blocks = tuple(int(b) for b in self.head_blocks)
        if not blocks or any(not 1 <= b <= NUM_BLOCKS for b in blocks):
            raise ValueError(f"head_blocks must be in 1..{NUM_BLOCKS}, got {blocks}")
        object.__setattr__(self, "head_blocks", blocks)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The forward pass's inputs: signed ELA for the paper's ResNets, RGB in [0, 1] and
        absolute ELA for the localizer's streams."""
        return ("rgb", "ela") if self.backbone == "two_stream" else ("signed_ela",)

    @classmethod
    def from_any(cls, cfg: WCBNetConfig | Mapping[str, Any] | None) -> WCBNetConfig:
        if cfg is None:
            return cls()
        return cfg if isinstance(cfg, cls) else cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "head_blocks": list(self.head_blocks)}


class ResNetBlocks(nn.Module):
    """torchvision ResNet (random init, no classifier) returning [F1..F5]."""

    def __init__(self, name: str) -> None:
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_channels = [net.conv1.out_channels] + [
            _block_out_channels(layer[-1]) for layer in self.layers
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


def _block_out_channels(block: nn.Module) -> int:
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    return last_bn.num_features


def resize_map(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize B x C x h x w to ``size``: average pooling when shrinking (exact integer factors
    use avg_pool2d, which exports cleanly), bilinear when growing, identity when equal."""
    height, width = x.shape[-2:]
    target_h, target_w = int(size[0]), int(size[1])
    if (height, width) == (target_h, target_w):
        return x
    if height >= target_h and width >= target_w:
        if height % target_h == 0 and width % target_w == 0:
            kernel = (height // target_h, width // target_w)
            return F.avg_pool2d(x, kernel, kernel)
        return F.adaptive_avg_pool2d(x, (target_h, target_w))
    return F.interpolate(x, size=(target_h, target_w), mode="bilinear", align_corners=False)


class CrossBlockAttention(nn.Module):
    """All five blocks -> Fc (5*D channels) at the resolution of ``target_block``."""

    def __init__(self, in_channels: Sequence[int], target_block: int, embed_dim: int,
                 attention_dim: int) -> None:
        super().__init__()
        self.target_index = target_block - 1
        self.projections = nn.ModuleList(conv_bn_relu(c, embed_dim) for c in in_channels)
        self.query = nn.Linear(embed_dim, attention_dim, bias=False)
        self.key = nn.Linear(embed_dim, attention_dim, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(attention_dim)
        self.out_channels = len(in_channels) * embed_dim

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[self.target_index].shape[-2:]
        blocks = []
        for feature, project in zip(features, self.projections, strict=True):
            if feature.shape[-2] > size[0]:
                blocks.append(project(resize_map(feature, size)))
            else:
                blocks.append(resize_map(project(feature), size))
        stacked = torch.stack(blocks, dim=1)                      # B N D h w
        descriptors = stacked.mean(dim=(3, 4))                    # B N D
        scores = self.query(descriptors) @ self.key(descriptors).transpose(1, 2)
        weights = torch.softmax(scores * self.scale, dim=-1)      # B N N, rows sum to 1
        mixed = (weights @ stacked.flatten(2)).view_as(stacked)
        fused = stacked + self.gamma * mixed
        return fused.flatten(1, 2)                                # B N*D h w


class CrossBlockHead(nn.Module):
    """Fc -> GAP -> dense -> logit, plus the gradient-free CAM ReLU(sum_k w_k Fc_k)."""

    def __init__(self, in_channels: Sequence[int], target_block: int, embed_dim: int,
                 attention_dim: int) -> None:
        super().__init__()
        self.target_block = target_block
        self.attention = CrossBlockAttention(in_channels, target_block, embed_dim,
                                             attention_dim)
        self.classifier = nn.Linear(self.attention.out_channels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        fc = self.attention(features)
        logit = self.classifier(fc.mean(dim=(2, 3)))[:, 0]
        weight = self.classifier.weight.view(1, -1, 1, 1)
        cam = F.relu(F.conv2d(fc, weight))                        # B 1 h w
        return logit, cam


def backbone_blocks(config: WCBNetConfig) -> nn.Module:
    if config.backbone == "two_stream":
        return TwoStreamEncoder(config.width_multiplier, config.ca_reduction)
    return ResNetBlocks(config.backbone)


class WCBNet(nn.Module):
    """forward(*inputs named by ``config.input_names``) -> (logits B x heads,
    cams B x heads x H/4 x W/4)."""

    def __init__(self, cfg: WCBNetConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.config = WCBNetConfig.from_any(cfg)
        c = self.config
        count = len(c.head_blocks) if c.separate_backbones else 1
        self.backbones = nn.ModuleList(backbone_blocks(c) for _ in range(count))
        channels = self.backbones[0].out_channels
        self.heads = nn.ModuleList(
            CrossBlockHead(channels, block, c.embed_dim, c.attention_dim)
            for block in c.head_blocks
        )
        self.backbone_frozen = False

    def freeze_backbone(self) -> None:
        """Train the heads only: the backbones keep their weights and BatchNorm statistics
        (eval mode even in ``train()``), and no gradient flows into them."""
        self.backbone_frozen = True
        self.backbones.requires_grad_(False)
        self.backbones.eval()

    def train(self, mode: bool = True) -> WCBNet:
        super().train(mode)
        if self.backbone_frozen:
            self.backbones.eval()
        return self

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            blocks = [backbone(*inputs) for backbone in self.backbones]
        if len(blocks) == 1:  # one shared backbone
            return self.classify(blocks[0])
        return self._views(blocks)

    def classify(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every head on one backbone's blocks [F1..F5]: (logits, CAMs at stride 4). With the
        localizer's streams, its blocks (``TwoStreamEncoder.fused``) can be passed in."""
        return self._views([features] * len(self.heads))

    def _views(self, blocks: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Head i on ``blocks[i]``; each CAM brought to its blocks' F2 size (stride 4)."""
        logits, cams = [], []
        for head, features in zip(self.heads, blocks, strict=True):
            logit, cam = head(features)
            logits.append(logit)
            cams.append(resize_cam(cam, features[CAM_BLOCK - 1].shape[-2:]))
        return torch.stack(logits, dim=1), torch.cat(cams, dim=1)


def resize_cam(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bring a B x 1 x h x w CAM to the CAM resolution (bilinear; identity if already there)."""
    target = (int(size[0]), int(size[1]))
    if tuple(cam.shape[-2:]) == target:
        return cam
    return F.interpolate(cam, size=target, mode="bilinear", align_corners=False)
