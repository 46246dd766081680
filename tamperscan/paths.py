"""Where the shipped model files live: repo-root ``models/`` unless TAMPERSCAN_MODELS_DIR
names another folder (deployments that mount their own weights and calibration)."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
MODELS_DIR = Path(os.environ.get("TAMPERSCAN_MODELS_DIR", _REPO_MODELS))


def model_path(name: str) -> Path:
    """Resolve a bare file name against MODELS_DIR; absolute or relative paths are kept."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    return MODELS_DIR / name
