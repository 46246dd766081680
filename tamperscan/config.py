"""Pipeline configuration: one pydantic model shared by the bulk scan, the endpoint and the CLI.

Two kinds of settings, kept apart: ``PipelineConfig`` proper holds what changes the results
(weights, thresholds, the evidence stages' options) and is keyed into each row's provenance
(`tamperscan.provenance`); ``PipelineConfig.runtime`` holds how the same results are computed
(backend, precision, threads, caches, optional outputs) and is not. Every model forbids
unknown keys: a misspelt YAML key is an error that names it, never a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tamperscan.copy_move import CopyMoveOptions
from tamperscan.operating_point import OperatingPoint, shipped
from tamperscan.paths import MODELS_DIR, model_path

__all__ = ["MODELS_DIR", "PipelineConfig", "RefineOptions", "RuntimeOptions", "S3Options",
           "load_pipeline_config", "model_path"]


class Strict(BaseModel):
    """Base of every settings model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class S3Options(Strict):
    """Object-storage connection settings; unset fields fall back to the usual AWS environment."""

    endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8333")
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None


class RefineOptions(Strict):
    """CAM + segmentation refinement (the CAM paper's segment-and-choose + Bayesian fusion)."""

    #: Rows whose image score reaches this go through segment-and-fuse (the cascade).
    threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    #: Weight of the refined CAM heatmap in the final map (1 - it: the localizer map). Chosen
    #: on the synthetic validation split for the shipped weights (scripts/calibrate.py): 0,
    #: which also skips refinement -- their CAM localizes (pixel AUC 0.78) but less well than
    #: the localizer (0.85), and every weight > 0 lowered the final map's F1 and AUC there.
    #: See MODEL_CARD.md.
    cam_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Side of the square working resolution of segment-and-fuse (the segmenter's cost).
    size: int = Field(default=256, ge=32)
    segmenter: str = "felzenszwalb"
    segmenter_options: dict = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        """With ``cam_weight`` 0 the refined map cannot change the output: no refinement."""
        return self.cam_weight > 0


class RuntimeOptions(Strict):
    """How the results are computed, not what they are: never part of the provenance key."""

    #: Inference backend for both nets (tamperscan.engines): auto | torch | onnxruntime | tensorrt.
    backend: Literal["auto", "torch", "onnxruntime", "tensorrt"] = "auto"
    #: "auto": on CPU the fastest measured of fp32 and int8 (ONNX Runtime static quantization;
    #: accuracy checked in models/MODEL_CARD.md and benchmarks/int8_fidelity.py), fp32 elsewhere.
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    threads: int = Field(default=0, ge=0, description="0 = let the backend decide")
    #: Exported ONNX graphs, TensorRT plans, auto choices; None: $TAMPERSCAN_CACHE_DIR or
    #: ~/.cache/tamperscan.
    engine_cache_dir: str | None = None
    #: Write each row's heatmap (greyscale PNG of the final map's values) beside the results.
    write_heatmaps: bool = False


class PipelineConfig(Strict):
    """Everything that changes what a scan computes (recorded with the results), plus the
    ``runtime`` options that do not."""

    two_stream_config: str = "two_stream"
    two_stream_weights: str = "two_stream.safetensors"
    wcbnet_config: str = "wcbnet"
    wcbnet_weights: str = "wcbnet.safetensors"
    ela_quality: int = Field(default=90, ge=1, le=100)
    max_image_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 80_000_000
    #: Image score at or above which an image is reported as tampered: by default the shipped
    #: operating point (models/operating_point.yaml, `tamperscan calibrate`); 0.5 without it.
    tamper_threshold: float = Field(
        default_factory=lambda: shipped().get("tamper_threshold", 0.5), ge=0.0, le=1.0,
        validate_default=True)
    #: Where ``tamper_threshold`` came from (false-alarm rate on authentic images); None for a
    #: threshold set by hand.
    operating_point: OperatingPoint | None = Field(
        default_factory=lambda: shipped().get("operating_point"), validate_default=True)
    #: Pixel threshold on the final heatmap for the binary mask. Calibrated for the shipped
    #: weights at the shipped operating point on the synthetic validation split
    #: (scripts/calibrate.py), never on evaluation data. (Per-image rules -- relative to the
    #: peak, Otsu -- were measured and not adopted: MODEL_CARD.md.)
    mask_threshold: float = Field(default=0.75, ge=0.0, le=1.0)
    #: Keypoint copy-move detector (tamperscan/copy_move.py): its confidence can raise the
    #: image score and its regions join the final map.
    copy_move: CopyMoveOptions = Field(default_factory=CopyMoveOptions)
    refine: RefineOptions = Field(default_factory=RefineOptions)
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @model_validator(mode="after")
    def _hand_set_threshold_has_no_record(self) -> PipelineConfig:
        """A threshold set by hand does not carry the shipped calibration's record."""
        if "tamper_threshold" in self.model_fields_set and \
                "operating_point" not in self.model_fields_set:
            self.operating_point = None
        return self

    def with_runtime(self, **changes) -> PipelineConfig:
        """A copy with some runtime options changed (validated)."""
        runtime = RuntimeOptions.model_validate({**self.runtime.model_dump(), **changes})
        return self.model_copy(update={"runtime": runtime})

    def results_settings(self) -> dict:
        """The settings that change results: what provenance keys (runtime options and the
        operating point's record excluded; its threshold is in)."""
        return self.model_dump(mode="json", exclude={"runtime", "operating_point"})


def merge_settings(base: dict, changes: dict) -> dict:
    """``changes`` over ``base``, recursing into nested sections (``refine``, ``runtime``...)
    so that an override of one nested key keeps its siblings."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


def load_pipeline_config(path: Path | None, **overrides) -> PipelineConfig:
    """A PipelineConfig from a YAML file of its fields (None: the defaults), with the
    ``overrides`` that are not None on top (nested dicts merge): what every ``--config``
    option reads. Unknown keys raise pydantic's ValidationError naming them."""
    data = (yaml.safe_load(path.read_text()) or {}) if path else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of PipelineConfig fields")
    data = merge_settings(data, {k: v for k, v in overrides.items() if v is not None})
    return PipelineConfig.model_validate(data)
