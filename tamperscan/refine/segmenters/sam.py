"""SAM segmenters: automatic (point grid) and prompted at CAM peaks.

Kept apart because ``segment-anything`` is an optional dependency (``tamperscan[sam]``),
imported only when a SAM segmenter is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.feature import peak_local_max

from tamperscan.refine.segmenters.base import Masks, Segmenter
from tamperscan.refine.segmenters.weights import _load_strict, _require, load_state_dict_file


def _import_sam() -> Any:
    try:
        import segment_anything
    except ImportError as error:  # optional dependency
        raise ImportError("SAM segmenters need `pip install tamperscan[sam]`") from error
    return segment_anything


def load_sam(checkpoint: str | Path, model_type: str = "vit_b", device: str = "cpu") -> Any:
    """SAM from ``sam_model_registry`` with weights from a local file.

    The registry builder runs on the meta device, then the checkpoint is assigned: this skips
    the random init (~3 s for ViT-B on 2 CPU cores; ViT-H has ~7x the parameters). Falls back
    to a normal build if a tensor was left on meta (e.g. a future segment-anything adding
    non-persistent buffers).
    """
    sam_lib = _import_sam()
    if model_type not in sam_lib.sam_model_registry:
        known = list(sam_lib.sam_model_registry)
        raise ValueError(f"unknown SAM model_type {model_type!r}; choose from {known}")
    builder = sam_lib.sam_model_registry[model_type]
    state = load_state_dict_file(checkpoint)
    with torch.device("meta"):
        sam = builder(checkpoint=None)
    _load_strict(sam, state, assign=True)
    tensors = [*sam.parameters(), *sam.buffers()]
    if any(t.is_meta for t in tensors):
        sam = builder(checkpoint=None)
        _load_strict(sam, state)
    return sam.to(device).eval()


class _SamSegmenter(Segmenter):
    """Shared SAM set-up: a prebuilt ``model`` or ``checkpoint`` + ``model_type``."""

    default_max_side = 1024  # SAM's own input size; it resizes internally anyway
    registry_name = "sam"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model_type: str = "vit_b",
        device: str = "cpu",
        *,
        model: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if model is None:
            checkpoint = _require(checkpoint, "checkpoint", self.registry_name)
            model = load_sam(checkpoint, model_type, device)
        self.model = model.eval()


class SamAutomaticSegmenter(_SamSegmenter):
    """SAM's automatic mask generator (grid of point prompts over the whole image).

    ``points_per_side`` defaults to 16 (SAM uses 32) to keep CPU runs bearable; any other
    ``SamAutomaticMaskGenerator`` argument can be passed in ``generator_options``.
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model_type: str = "vit_b",
        device: str = "cpu",
        *,
        model: Any = None,
        points_per_side: int = 16,
        generator_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(checkpoint, model_type, device, model=model, **options)
        generator_cls = _import_sam().SamAutomaticMaskGenerator
        kwargs = {"points_per_side": points_per_side, **(generator_options or {})}
        self.generator = generator_cls(self.model, **kwargs)

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        records = self.generator.generate(rgb)
        records.sort(key=lambda r: -r["predicted_iou"])
        return [r["segmentation"] for r in records]


class SamPromptSegmenter(_SamSegmenter):
    """Fast path: SAM prompted with one foreground point at each of the top-k CAM peaks.

    Each point yields SAM's three nested masks (multimask_output=True: part, object, group),
    so the candidates span sizes around every hot spot. One image embedding, one batched
    decoder call. Needs a CAM; a CAM without any positive value yields no regions.
    """

    registry_name = "sam_prompt"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        model_type: str = "vit_b",
        device: str = "cpu",
        *,
        model: Any = None,
        num_peaks: int = 5,
        peak_min_distance_frac: float = 0.05,
        peak_threshold_rel: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(checkpoint, model_type, device, model=model, **options)
        self.predictor = _import_sam().SamPredictor(self.model)
        self.num_peaks = num_peaks
        self.peak_min_distance_frac = peak_min_distance_frac
        self.peak_threshold_rel = peak_threshold_rel

    def cam_peaks(self, cam: np.ndarray) -> np.ndarray:
        """(k, 2) peak coordinates as (x, y), strongest first; empty when the CAM is <= 0."""
        if not (cam > 0).any():
            return np.zeros((0, 2), dtype=np.float32)
        distance = max(1, round(self.peak_min_distance_frac * max(cam.shape)))
        rows_cols = peak_local_max(
            cam,
            min_distance=distance,
            threshold_rel=self.peak_threshold_rel,
            num_peaks=self.num_peaks,
            exclude_border=False,
        )
        if not len(rows_cols):  # a plateau has no strict local maximum
            rows_cols = np.array([np.unravel_index(np.argmax(cam), cam.shape)])
        return rows_cols[:, ::-1].astype(np.float32)

    @torch.inference_mode()
    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        if cam is None:
            raise ValueError("SamPromptSegmenter needs a CAM to place its point prompts")
        points = self.cam_peaks(cam)
        if not len(points):
            return []
        self.predictor.set_image(rgb)
        try:
            coords = self.predictor.transform.apply_coords(points, rgb.shape[:2])
            device = self.predictor.device
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=device)[:, None, :]
            labels_t = torch.ones(len(points), 1, dtype=torch.int, device=coords_t.device)
            masks, _, _ = self.predictor.predict_torch(coords_t, labels_t, multimask_output=True)
        finally:
            self.predictor.reset_image()
        return masks.flatten(0, 1).cpu().numpy()
