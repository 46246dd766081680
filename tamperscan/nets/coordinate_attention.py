"""Coordinate Attention (Hou, Zhou, Feng, CVPR 2021).

Channel attention that keeps *where*: the map is pooled along W and along H separately, so the
two attention vectors are indexed by row and by column, and their product re-weights every
pixel. Follows the reference implementation: shared 1x1 conv with reduction (at least 8
channels), BatchNorm, h-swish, split, one 1x1 conv + sigmoid per direction, multiply.
"""

from __future__ import annotations

import torch
from torch import nn


class CoordinateAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.squeeze = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
        )
        self.attend_h = nn.Conv2d(hidden, channels, 1)
        self.attend_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pooled_h = x.mean(dim=3, keepdim=True)                    # B C H 1
        pooled_w = x.mean(dim=2, keepdim=True).transpose(2, 3)    # B C W 1
        joint = self.squeeze(torch.cat([pooled_h, pooled_w], dim=2))
        joint_h, joint_w = torch.split(joint, [height, width], dim=2)
        gate_h = torch.sigmoid(self.attend_h(joint_h))            # B C H 1
        gate_w = torch.sigmoid(self.attend_w(joint_w.transpose(2, 3)))  # B C 1 W
        return x * gate_h * gate_w
