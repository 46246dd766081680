"""Local weight files for the segmenters that need them (SAM, DeepLab, PSPNet).

Nothing here downloads weights: those segmenters take a local file path (safetensors or a
torch state dict) and raise ``ValueError`` naming the option when it is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (weights only; never executes code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):  # common training-checkpoint layouts
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def _require(value: Any, option: str, segmenter: str) -> Any:
    if value is None:
        raise ValueError(
            f"segmenter {segmenter!r} needs option {option!r} (a local weights file); "
            "tamperscan never downloads weights"
        )
    return value


def _load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], **kwargs: Any) -> None:
    try:
        model.load_state_dict(state, strict=True, **kwargs)
    except RuntimeError as error:
        raise ValueError(f"weights do not match {type(model).__name__}: {error}") from error
