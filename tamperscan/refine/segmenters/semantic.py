"""Semantic-net segmenters (DeepLabV3, PSPNet): one region per predicted class and its pieces."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from tamperscan.refine.segmenters.base import Masks, Segmenter
from tamperscan.refine.segmenters.pspnet import build_pspnet
from tamperscan.refine.segmenters.weights import _load_strict, _require, load_state_dict_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _SemanticSegmenter(Segmenter):
    """Regions from a semantic net: one mask per predicted class present, plus that class's
    connected components when it is split (two people, one of them pasted in).

    Every class, background included, is a candidate (``ignore_classes`` to drop some): a
    spliced object from outside the label set is often labelled background.
    """

    default_max_side = 520  # torchvision's DeepLab evaluation size

    def __init__(
        self,
        net: torch.nn.Module,
        device: str = "cpu",
        *,
        split_components: bool = True,
        ignore_classes: Iterable[int] = (),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.split_components = split_components
        self.ignore_classes = frozenset(ignore_classes)

    @torch.inference_mode()
    def predict_classes(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w) class map: argmax of the net's ``out`` logits on the ImageNet-normalised image."""
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        logits = self.net((x - mean) / std)["out"]
        return logits.argmax(dim=1)[0].cpu().numpy()

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        classes = self.predict_classes(rgb)
        regions: list[np.ndarray] = []
        for value in np.unique(classes):
            if int(value) in self.ignore_classes:
                continue
            class_mask = classes == value
            regions.append(class_mask)
            if self.split_components:
                components, count = ndimage.label(class_mask, structure=np.ones((3, 3)))
                if count > 1:
                    regions.extend(components == k for k in range(1, count + 1))
        return regions


def _has_aux(state: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith("aux_classifier.") for key in state)


class DeepLabSegmenter(_SemanticSegmenter):
    """torchvision DeepLabV3-ResNet50 (e.g. its COCO-with-VOC-labels weights, 21 classes)."""

    def __init__(
        self,
        weights: str | Path | None = None,
        num_classes: int = 21,
        device: str = "cpu",
        **options: Any,
    ) -> None:
        from torchvision.models.segmentation import deeplabv3_resnet50

        state = load_state_dict_file(_require(weights, "weights", "deeplab"))
        net = deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=_has_aux(state)
        )
        _load_strict(net, state)
        super().__init__(net, device, **options)


class PSPNetSegmenter(_SemanticSegmenter):
    """PSPNet (dilated ResNet + pyramid pooling, :mod:`tamperscan.refine.segmenters.pspnet`)."""

    default_max_side = 473  # PSPNet's usual crop size

    def __init__(
        self,
        weights: str | Path | None = None,
        num_classes: int = 21,
        backbone: str = "resnet50",
        device: str = "cpu",
        **options: Any,
    ) -> None:
        state = load_state_dict_file(_require(weights, "weights", "pspnet"))
        net = build_pspnet(num_classes=num_classes, backbone=backbone, aux_loss=_has_aux(state))
        _load_strict(net, state)
        super().__init__(net, device, **options)
