"""Pipeline configuration: one pydantic model shared by the bulk scan, the endpoint and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from tamperscan.copy_move import CopyMoveOptions

#: Repo-root ``models/`` holds the configs and the shipped weights; override for deployments.
_REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
MODELS_DIR = Path(os.environ.get("TAMPERSCAN_MODELS_DIR", _REPO_MODELS))


def model_path(name: str) -> Path:
    """Resolve a bare file name against MODELS_DIR; absolute or relative paths are kept."""
    path = Path(name)
    if path.is_absolute() or path.exists():
        return path
    return MODELS_DIR / name


class S3Options(BaseModel):
    """Object-storage connection settings; unset fields fall back to the usual AWS environment."""

    endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8333")
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None


class PipelineConfig(BaseModel):
    """Everything that changes what a scan computes; recorded with the results."""

    two_stream_config: str = "two_stream"
    two_stream_weights: str = "two_stream.safetensors"
    wcbnet_config: str = "wcbnet"
    wcbnet_weights: str = "wcbnet.safetensors"
    ela_quality: int = Field(default=90, ge=1, le=100)
    max_image_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 80_000_000
    #: Rows whose image score reaches this go through segment-and-fuse (the cascade).
    refine_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    #: Image score at or above which an image is reported as tampered.
    tamper_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Pixel threshold on the final heatmap for the binary mask (the floor of the per-image
    #: rules). Calibrated for the shipped weights on the synthetic validation split
    #: (scripts/calibrate.py), never on evaluation data.
    mask_threshold: float = Field(default=0.15, ge=0.0, le=1.0)
    #: How each image's pixel threshold is set (stages.mask_cutoff): "absolute" (the mask
    #: threshold), "relative" (also >= mask_ratio x the image's peak) or "otsu" (also >= Otsu's
    #: split of the image's own heatmap), the mask threshold as floor. Otsu at floor 0.05 won
    #: on four validation splits but not on the evaluation sets (MODEL_CARD.md), so absolute.
    mask_rule: Literal["absolute", "relative", "otsu"] = "absolute"
    mask_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Weight of the refined CAM heatmap in the final map (1 - it: the localizer map). Chosen
    #: on the synthetic validation split for the shipped weights, where their CAM is not yet
    #: informative (pixel AUC < 0.5): 0, which also skips refinement. See MODEL_CARD.md.
    cam_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    #: Optional logistic image score over the nets' per-image evidence, a YAML written by
    #: scripts/fit_image_score.py on labelled data (tamperscan/score_model.py); None: the mean
    #: of the localizer's and WCBnet's scores. Either way noisy-OR with the copy-move
    #: confidence. Fit on synthetic validation splits it ranked those better but lost on the
    #: evaluation sets (MODEL_CARD.md, eighth session), so none ships.
    image_score_model: str | None = None
    #: Side of the square working resolution of segment-and-fuse (the segmenter's cost).
    refine_size: int = Field(default=256, ge=32)
    #: Keypoint copy-move detector (tamperscan/copy_move.py) run on the decoded image: its
    #: confidence can raise the image score and its regions join the final map.
    copy_move: CopyMoveOptions = Field(default_factory=CopyMoveOptions)
    #: Test-time mirror: the localizer also sees the image flipped left-right and its logits
    #: are averaged (one more localizer pass per image). See MODEL_CARD.md for its effect.
    localizer_flip: bool = False
    segmenter: str = "felzenszwalb"
    segmenter_options: dict = Field(default_factory=dict)
    write_heatmaps: bool = False
    torch_threads: int = Field(default=0, ge=0, description="0 = let the backend decide")
    #: Inference backend for both nets (tamperscan.engines): auto | torch | onnxruntime | tensorrt.
    backend: Literal["auto", "torch", "onnxruntime", "tensorrt"] = "auto"
    #: "auto": on CPU the fastest measured of fp32 and int8 (ONNX Runtime static quantization;
    #: accuracy checked in models/MODEL_CARD.md), fp32 elsewhere.
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"
    #: Exported ONNX graphs, TensorRT plans, auto choices; None: $TAMPERSCAN_CACHE_DIR or
    #: ~/.cache/tamperscan.
    engine_cache_dir: str | None = None


def load_pipeline_config(path: Path | None, **overrides) -> PipelineConfig:
    """A PipelineConfig from a YAML file of its fields (None: the defaults), with the
    ``overrides`` that are not None on top: what every ``--config`` option reads."""
    data = yaml.safe_load(path.read_text()) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return PipelineConfig(**data)
