"""Shared test helpers (plain functions; fixtures live in the test modules that use them)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from PIL import Image

from tamperscan.fixtures import natural_image, random_weights_config

__all__ = ["random_weights_config"]


def randomize_norm_stats(model: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and attention gates, so every layer leaves a trace in the
    outputs (fresh BN layers are identities in eval mode and could hide export errors)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
        if hasattr(module, "gamma"):
            module.gamma.data.fill_(0.5)
    return model.eval()


def good_images(count: int, seed: int = 100) -> dict[str, bytes]:
    """Small photo-like JPEGs and PNGs."""
    out = {}
    for i in range(count):
        rgb = natural_image(48 + 8 * (i % 5), 64 + 8 * (i % 3), seed + i)
        buffer = io.BytesIO()
        fmt = "PNG" if i % 4 == 0 else "JPEG"
        Image.fromarray(rgb).save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
        out[f"good/img_{i:03d}.{fmt.lower()}"] = buffer.getvalue()
    return out


def read_results(out: str, filesystem: pafs.FileSystem | None = None):
    """The scan output as a pandas DataFrame (what users do with it)."""
    import pandas as pd

    if filesystem is None:
        return pd.read_parquet(Path(out) / "results")
    root = out.removeprefix("s3://").rstrip("/") + "/results"
    return pq.read_table(root, filesystem=filesystem).to_pandas()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))
