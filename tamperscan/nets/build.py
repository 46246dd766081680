"""Builders from config, and weight files.

A config is a YAML mapping ``arch: two_stream | wcbnet`` plus that net's parameters (see
TwoStreamConfig / WCBNetConfig for keys and defaults). Weights are safetensors files; they carry
the arch and config they were trained with, so a mismatch fails with a readable message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from tamperscan.config import MODELS_DIR
from tamperscan.nets.two_stream import TwoStreamConfig, TwoStreamLocalizer
from tamperscan.nets.wcbnet import WCBNet, WCBNetConfig

ARCHS: dict[str, tuple[type, type[nn.Module]]] = {
    "two_stream": (TwoStreamConfig, TwoStreamLocalizer),
    "wcbnet": (WCBNetConfig, WCBNet),
}
#: Keys that may differ between training and use without changing the weights' layout.
_LAYOUT_FREE_KEYS = {"input_size", "dropout"}


def parse_config(cfg: Mapping[str, Any]) -> TwoStreamConfig | WCBNetConfig:
    arch = cfg.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"config needs arch in {sorted(ARCHS)}, got {arch!r}")
    config_cls, _ = ARCHS[arch]
    try:
        return config_cls(**dict(cfg))
    except TypeError as exc:  # unknown key: name it instead of a bare signature error
        raise ValueError(f"bad {arch} config: {exc}") from exc


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """``models/<name>.yaml`` for a bare name, else the file at that path. Returns the full
    config (defaults filled in), validated."""
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} or path.exists()):
        path = MODELS_DIR / f"{name_or_path}.yaml"
    with path.open() as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping, got {type(raw).__name__}")
    return parse_config(raw).to_dict()


def build_model(cfg: Mapping[str, Any] | TwoStreamConfig | WCBNetConfig) -> nn.Module:
    """Randomly initialised net for ``cfg`` (load weights separately)."""
    config = cfg if isinstance(cfg, TwoStreamConfig | WCBNetConfig) else parse_config(cfg)
    _, model_cls = ARCHS[config.arch]
    return model_cls(config)


def save_weights(model: nn.Module, path: str | Path, fp16: bool = False,
                 metadata: Mapping[str, str] | None = None) -> None:
    """safetensors with the model's config in the metadata; ``fp16`` halves the file (floats
    are stored as float16 and cast back on load)."""
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if fp16 and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor
    meta = {"storage_dtype": "float16" if fp16 else "float32", **(metadata or {})}
    config = getattr(model, "config", None)
    if config is not None:
        meta.update(arch=config.arch, config=json.dumps(config.to_dict(), sort_keys=True))
    save_file(state, str(path), metadata=meta)


def read_weights_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, str]:
    """Load a safetensors file into ``model`` (float tensors cast to the model's dtype).
    Returns the file's metadata. Raises ValueError if the file was saved from a net whose
    layout differs from ``model``'s config."""
    meta = read_weights_metadata(path)
    config = getattr(model, "config", None)
    if config is not None and "config" in meta:
        # defaults filled in: a key added since the file was saved reads as its default
        saved = {k: v for k, v in parse_config(json.loads(meta["config"])).to_dict().items()
                 if k not in _LAYOUT_FREE_KEYS}
        ours = {k: v for k, v in config.to_dict().items() if k not in _LAYOUT_FREE_KEYS}
        if saved != ours:
            diff = {k: (saved.get(k), ours.get(k)) for k in saved.keys() | ours.keys()
                    if saved.get(k) != ours.get(k)}
            raise ValueError(f"{path}: weights were saved for another config "
                             f"(key: (file, model)) {diff}")
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(str(path), device="cpu").items():
        reference = target.get(key)
        if reference is not None and tensor.is_floating_point():
            tensor = tensor.to(reference.dtype)
        state[key] = tensor
    model.load_state_dict(state, strict=strict)
    return meta


def load_localizer_streams(model: nn.Module, localizer_weights: str | Path) -> int:
    """Copy a trained localizer's RGB and ELA streams into every ``two_stream`` backbone of a
    WCBnet (same parameter names under ``backbones.<i>.``); the heads keep their weights.
    Returns the number of tensors copied. Raises ValueError when the file is not a localizer
    whose streams fit."""
    arch = read_weights_metadata(localizer_weights).get("arch", "two_stream")
    if arch != "two_stream":  # averaged weights carry no metadata: their shapes are checked
        raise ValueError(f"{localizer_weights}: not two_stream weights (arch={arch!r})")
    streams = {key: tensor for key, tensor in load_file(str(localizer_weights)).items()
               if key.startswith(("rgb_stream.", "ela_stream."))}
    target = model.state_dict()
    state = {}
    for index in range(len(getattr(model, "backbones", []))):
        for key, tensor in streams.items():
            name = f"backbones.{index}.{key}"
            if name not in target or target[name].shape != tensor.shape:
                raise ValueError(f"{localizer_weights}: {key} does not fit this model's "
                                 "backbone (a two_stream WCBnet of the localizer's width)")
            state[name] = tensor.to(target[name].dtype)
    if not state:
        raise ValueError("the model has no backbone to load the localizer's streams into")
    model.load_state_dict(state, strict=False)
    return len(state)
