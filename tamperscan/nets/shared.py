"""Both nets in one graph when WCBnet sits on the localizer's frozen streams.

A WCBnet trained with ``--freeze-backbone`` on the localizer's streams (the shipped one) keeps
their weights and BatchNorm statistics bit for bit, so its encoder computes exactly what the
localizer's does. ``SharedStreams`` runs that encoder once and feeds its fused blocks to the
localizer's decoder and to WCBnet's heads: the same outputs as the two nets, one encoder pass
fewer per image (benchmarks/shared_backbone.py). Any other pair (the paper's ResNet WCBnet
over signed ELA, streams trained further) runs as two nets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tamperscan.nets.two_stream import TwoStreamLocalizer
from tamperscan.nets.wcbnet import WCBNet

STREAM_PREFIXES = ("rgb_stream.", "ela_stream.")


@dataclass(frozen=True)
class SharedStreamsConfig:
    """The two nets' configs; what the engines key their caches and input checks on."""

    localizer: dict[str, Any]
    wcbnet: dict[str, Any]
    arch: str = "shared_streams"

    @property
    def input_size(self) -> int:
        return int(self.localizer["input_size"])

    @property
    def input_names(self) -> tuple[str, ...]:
        return ("rgb", "ela")

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "localizer": self.localizer, "wcbnet": self.wcbnet}


def shares_streams(localizer: nn.Module, wcbnet: nn.Module) -> bool:
    """True when WCBnet's one backbone is the localizer's streams with equal tensors (weights
    and BatchNorm statistics), at the same input size: then one encoder pass serves both."""
    if not (isinstance(localizer, TwoStreamLocalizer) and isinstance(wcbnet, WCBNet)):
        return False
    config = wcbnet.config
    if (config.backbone != "two_stream" or len(wcbnet.backbones) != 1
            or config.input_size != localizer.config.input_size):
        return False
    ours = wcbnet.backbones[0].state_dict()
    theirs = {k: v for k, v in localizer.state_dict().items() if k.startswith(STREAM_PREFIXES)}
    return ours.keys() == theirs.keys() and all(
        ours[k].shape == v.shape and torch.equal(ours[k], v) for k, v in theirs.items())


class SharedStreams(nn.Module):
    """forward(rgb in [0,1], ela) -> (localizer logits B x 1 x H x W, WCBnet logits B x heads,
    CAMs B x heads x H/4 x W/4): the two nets' outputs from one pass of the shared encoder."""

    def __init__(self, localizer: TwoStreamLocalizer, wcbnet: WCBNet) -> None:
        super().__init__()
        if not shares_streams(localizer, wcbnet):
            raise ValueError("WCBnet's backbone is not the localizer's streams (other "
                             "weights, backbone or input size): run the nets separately")
        self.localizer = localizer
        self.heads = wcbnet  # its backbone copy is never called, so it is not exported
        self.config = SharedStreamsConfig(localizer.config.to_dict(), wcbnet.config.to_dict())

    def forward(self, rgb: torch.Tensor, ela: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        blocks = self.localizer.fused(rgb, ela)
        logits, cams = self.heads.classify(blocks)
        return self.localizer.decode(blocks, rgb.shape[-2:]), logits, cams
