"""Configuration: unknown keys are errors that name the key; nested sections merge; the
provenance key follows the result-changing settings only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tamperscan.config import PipelineConfig, load_pipeline_config
from tamperscan.provenance import settings_key
from tamperscan.serve_settings import ServeSettings


@pytest.mark.parametrize("yaml_text, key", [
    ("tamper_treshold: 0.7\n", "tamper_treshold"),            # misspelt top-level key
    ("refine:\n  cam_wieght: 0.5\n", "cam_wieght"),           # misspelt nested key
    ("runtime:\n  backnd: torch\n", "backnd"),
    ("copy_move:\n  area_min_inliers: 3\n", "area_min_inliers"),  # removed option
    ("refine_threshold: 0.4\n", "refine_threshold"),          # moved to refine.threshold
    ("mask_rule: otsu\n", "mask_rule"),                       # measured, not adopted: removed
])
def test_unknown_keys_are_errors_naming_the_key(tmp_path, yaml_text, key):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValidationError, match=key):
        load_pipeline_config(path)


def test_serve_settings_reject_unknown_pipeline_keys():
    with pytest.raises(ValidationError, match="cam_weigth"):
        ServeSettings.model_validate({"pipeline": {"refine": {"cam_weigth": 0.5}}})


def test_nested_overrides_keep_their_siblings(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("refine:\n  threshold: 0.4\n  size: 128\nruntime:\n  backend: torch\n")
    config = load_pipeline_config(path, runtime={"write_heatmaps": True},
                                  refine={"size": 64}, tamper_threshold=None)
    assert (config.refine.threshold, config.refine.size) == (0.4, 64)
    assert config.runtime.backend == "torch" and config.runtime.write_heatmaps
    assert config.tamper_threshold == PipelineConfig().tamper_threshold
    with pytest.raises(ValueError, match="mapping"):
        (tmp_path / "list.yaml").write_text("- 1\n")
        load_pipeline_config(tmp_path / "list.yaml")


def test_provenance_key_follows_results_not_runtime():
    base = PipelineConfig()
    assert settings_key(base.with_runtime(threads=3, backend="torch",
                                          write_heatmaps=True)) == settings_key(base)
    moved = base.model_copy(update={"refine": base.refine.model_copy(update={"threshold": 0.5})})
    assert settings_key(moved) != settings_key(base)
    assert settings_key(base.model_copy(update={"mask_threshold": 0.2})) != settings_key(base)
