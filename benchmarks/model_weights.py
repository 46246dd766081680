"""The weights a benchmark runs: the shipped ones (models/*.safetensors) when present, else
seeded random weights of the same nets (`tamperscan.fixtures`). Speed does not depend on the
values; scores do."""

from __future__ import annotations

from pathlib import Path

from tamperscan.config import PipelineConfig, model_path
from tamperscan.fixtures import random_weights_config
from tamperscan.stages import NETS


def with_weights(config: PipelineConfig, folder: Path) -> tuple[PipelineConfig, str]:
    """(``config``, or ``config`` with random weights written to ``folder``; a label saying
    which). The nets are the graph's (``tamperscan.stages.NETS``)."""
    attrs = [net.weights_attr for net in NETS]
    if all(model_path(getattr(config, attr)).exists() for attr in attrs):
        return config, "shipped weights (models/*.safetensors)"
    random = random_weights_config(folder)
    return (config.model_copy(update={attr: getattr(random, attr) for attr in attrs}),
            "seeded random weights (models/*.safetensors missing)")
