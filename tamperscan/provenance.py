"""What produced a row: the weights' content hashes and a key of the result-changing settings.

Every output row records ``model_versions``, so two runs can be told apart (and a resumed
scan that changed a threshold is visible) without trusting file names.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from tamperscan.config import PipelineConfig, model_path


@cache
def weights_version(path: str) -> str:
    """Short content hash: results record exactly which weights produced them."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def settings_key(config: PipelineConfig) -> str:
    """Short hash of the settings that change results (runtime options excluded)."""
    text = json.dumps(config.results_settings(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def weights_versions(config: PipelineConfig) -> str:
    """``two_stream@<hash>;wcbnet@<hash>``: the nets' configs and weights."""
    return ";".join(f"{name}@{weights_version(str(model_path(weights)))}"
                    for name, weights in ((config.two_stream_config, config.two_stream_weights),
                                          (config.wcbnet_config, config.wcbnet_weights)))


def model_versions(config: PipelineConfig) -> str:
    """``two_stream@<hash>;wcbnet@<hash>;settings@<hash>``."""
    return f"{weights_versions(config)};settings@{settings_key(config)}"
