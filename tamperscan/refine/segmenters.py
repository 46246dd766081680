"""Region proposals M_i for the segment-and-choose refinement.

Mirrors pytorch-grad-cam's ``BaseCAM``: :class:`Segmenter` holds all shared machinery (input
checks, working-resolution downscale, dropping tiny regions, ranking, dedupe, a region cap,
upscaling back to the input size) and every segmenter is a small subclass overriding one hook,
``_regions(rgb, cam) -> masks`` at the working resolution.

Nothing here downloads weights: segmenters that need them take a local file path (safetensors
or a torch state dict) and raise ``ValueError`` naming the option when it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import felzenszwalb, slic

from tamperscan.refine.fusion import region_similarity
from tamperscan.refine.pspnet import build_pspnet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEDUPE_GRID_SIDE = 128  # IoU for dedupe is measured on a grid at most this big (speed)

Masks = np.ndarray | Sequence[np.ndarray]


class Segmenter:
    """Base class: ``segment(rgb, cam)`` -> (N, H, W) bool masks at the input size.

    Pipeline: validate -> downscale so the longest side is <= ``max_side`` -> ``_regions`` ->
    drop regions smaller than ``min_area_frac`` of the image -> rank -> greedy dedupe (IoU >=
    ``dedupe_iou`` with an already kept region) -> keep at most ``max_regions`` -> upscale
    (nearest) to the input size. Ranking: with a CAM, by the fusion score S (so the cap never
    drops the region fusion would choose at the working resolution); without one, by area,
    largest first. N may be 0: no fallback full-image mask is invented; fusion handles N == 0.

    Masks come back at the size of ``rgb``: pass the image at the grid you want masks on
    (N x H x W bools; a 4K input with 64 regions is ~0.5 GB).
    """

    default_max_side: int | None = 384

    def __init__(
        self,
        *,
        max_side: int | None = None,
        min_area_frac: float = 0.0005,
        max_regions: int = 64,
        dedupe_iou: float = 0.9,
    ) -> None:
        if max_regions < 1:
            raise ValueError("max_regions must be >= 1")
        if not 0.0 <= min_area_frac < 1.0:
            raise ValueError("min_area_frac must be in [0, 1)")
        self.max_side = self.default_max_side if max_side is None else max_side
        self.min_area_frac = min_area_frac
        self.max_regions = max_regions
        self.dedupe_iou = dedupe_iou

    def segment(self, rgb: np.ndarray, cam: np.ndarray | None = None) -> np.ndarray:
        rgb = _check_rgb(rgb)
        height, width = rgb.shape[:2]
        work_rgb = _downscale(rgb, self.max_side)
        work_shape = work_rgb.shape[:2]
        work_cam = None if cam is None else _cam_to_grid(cam, work_shape)
        masks = _stack_masks(self._regions(work_rgb, work_cam), work_shape)
        masks = self._select(masks, work_cam)
        return _upscale_masks(masks, (height, width))

    __call__ = segment

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        """Hook: candidate masks for ``rgb`` (h, w, 3 uint8) at the working resolution."""
        raise NotImplementedError

    def _select(self, masks: np.ndarray, cam: np.ndarray | None) -> np.ndarray:
        areas = masks.sum(axis=(1, 2))
        min_area = max(1, int(np.ceil(self.min_area_frac * masks[0].size))) if len(masks) else 1
        masks = masks[areas >= min_area]
        if not len(masks):
            return masks
        if cam is not None:
            ranked = masks[np.argsort(-region_similarity(masks, cam), kind="stable")]
        else:
            ranked = masks[np.argsort(-masks.sum(axis=(1, 2)), kind="stable")]
        return ranked[_greedy_dedupe(ranked, self.dedupe_iou, self.max_regions)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side}, max_regions={self.max_regions})"


# ----------------------------------------------------------------------------- machinery


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if min(rgb.shape[:2]) < 2:
        raise ValueError(f"rgb too small to segment: {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _downscale(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _cam_to_grid(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2 or not np.isfinite(cam).all():
        raise ValueError(f"cam must be a finite (H, W) map, got shape {cam.shape}")
    if cam.shape == shape:
        return cam
    shrinking = cam.shape[0] > shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(cam, (shape[1], shape[0]), interpolation=interpolation)


def _stack_masks(regions: Masks, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(regions, np.ndarray) and regions.ndim == 3:
        stacked = regions
    else:
        regions = list(regions)
        stacked = np.stack(regions) if regions else np.zeros((0, *shape), dtype=bool)
    if stacked.shape[1:] != shape:
        raise ValueError(f"segmenter returned masks of shape {stacked.shape[1:]}, expected {shape}")
    return stacked.astype(bool, copy=False)


def _greedy_dedupe(ranked: np.ndarray, min_iou: float, limit: int) -> np.ndarray:
    """Indices into ``ranked`` kept in order, skipping near-duplicates of earlier picks."""
    step = max(1, int(np.ceil(max(ranked.shape[1:]) / DEDUPE_GRID_SIDE)))
    coarse = ranked[:, ::step, ::step].reshape(len(ranked), -1).astype(np.float32)
    areas = coarse.sum(axis=1)
    kept: list[int] = []
    for i in range(len(ranked)):
        if kept:
            inter = coarse[kept] @ coarse[i]
            iou = inter / np.maximum(areas[kept] + areas[i] - inter, 1.0)
            if (iou >= min_iou).any():
                continue
        kept.append(i)
        if len(kept) == limit:
            break
    return np.asarray(kept, dtype=np.intp)


def _upscale_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:] == shape:
        return np.ascontiguousarray(masks)
    out = np.empty((len(masks), *shape), dtype=bool)
    for i, mask in enumerate(masks):
        resized = cv2.resize(mask.view(np.uint8), (shape[1], shape[0]), cv2.INTER_NEAREST)
        out[i] = resized.astype(bool)
    return out


def _partition_masks(labels: np.ndarray) -> list[np.ndarray]:
    return [labels == value for value in np.unique(labels)]


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


# ----------------------------------------------------------------------------- superpixels


class FelzenszwalbSegmenter(Segmenter):
    """Training-free CPU default: Felzenszwalb graph segmentation at several scales.

    One scale gives a partition of superpixels; larger ``scales`` merge adjacent pixels into
    object-sized regions, so the candidates hold both small pieces and whole objects (a spliced
    object is rarely one fine superpixel). Regions = every segment of every scale.
    """

    def __init__(
        self,
        scales: Sequence[float] = (100.0, 400.0, 1600.0),
        sigma: float = 0.8,
        min_size_frac: float = 0.0005,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.scales, self.sigma, self.min_size_frac = tuple(scales), sigma, min_size_frac

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        min_size = max(1, int(self.min_size_frac * rgb.shape[0] * rgb.shape[1]))
        regions: list[np.ndarray] = []
        for scale in self.scales:
            labels = felzenszwalb(rgb, scale=scale, sigma=self.sigma, min_size=min_size)
            regions.extend(_partition_masks(labels))
        return regions


class SlicSegmenter(Segmenter):
    """SLIC superpixels at several counts (fine pieces plus coarser, object-sized regions)."""

    def __init__(
        self,
        n_segments: Sequence[int] = (300, 80, 20),
        compactness: float = 10.0,
        sigma: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.n_segments, self.compactness, self.sigma = tuple(n_segments), compactness, sigma

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        regions: list[np.ndarray] = []
        for count in self.n_segments:
            labels = slic(
                rgb,
                n_segments=count,
                compactness=self.compactness,
                sigma=self.sigma,
                start_label=0,
                channel_axis=-1,
            )
            regions.extend(_partition_masks(labels))
        return regions


# ----------------------------------------------------------------------------- SAM


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


# ----------------------------------------------------------------------------- semantic nets


class _SemanticSegmenter(Segmenter):
    """Regions from a semantic net: one mask per predicted class present, plus that class's
    connected components when it is split (two people, one of them pasted in).

    Every class, background included, is a candidate (``ignore_classes`` to drop some): a
    spliced object from outside the label set is often labelled background.
    """

    default_max_side = 520  # torchvision's DeepLab evaluation size

    def __init__(
        self,
        net: torch.nn.Module,
        device: str = "cpu",
        *,
        split_components: bool = True,
        ignore_classes: Iterable[int] = (),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.split_components = split_components
        self.ignore_classes = frozenset(ignore_classes)

    @torch.inference_mode()
    def predict_classes(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w) class map: argmax of the net's ``out`` logits on the ImageNet-normalised image."""
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        logits = self.net((x - mean) / std)["out"]
        return logits.argmax(dim=1)[0].cpu().numpy()

    def _regions(self, rgb: np.ndarray, cam: np.ndarray | None) -> Masks:
        classes = self.predict_classes(rgb)
        regions: list[np.ndarray] = []
        for value in np.unique(classes):
            if int(value) in self.ignore_classes:
                continue
            class_mask = classes == value
            regions.append(class_mask)
            if self.split_components:
                components, count = ndimage.label(class_mask, structure=np.ones((3, 3)))
                if count > 1:
                    regions.extend(components == k for k in range(1, count + 1))
        return regions


def _has_aux(state: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith("aux_classifier.") for key in state)


class DeepLabSegmenter(_SemanticSegmenter):
    """torchvision DeepLabV3-ResNet50 (e.g. its COCO-with-VOC-labels weights, 21 classes)."""

    def __init__(
        self,
        weights: str | Path | None = None,
        num_classes: int = 21,
        device: str = "cpu",
        **options: Any,
    ) -> None:
        from torchvision.models.segmentation import deeplabv3_resnet50

        state = load_state_dict_file(_require(weights, "weights", "deeplab"))
        net = deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=_has_aux(state)
        )
        _load_strict(net, state)
        super().__init__(net, device, **options)


class PSPNetSegmenter(_SemanticSegmenter):
    """PSPNet (dilated ResNet + pyramid pooling, :mod:`tamperscan.refine.pspnet`)."""

    default_max_side = 473  # PSPNet's usual crop size

    def __init__(
        self,
        weights: str | Path | None = None,
        num_classes: int = 21,
        backbone: str = "resnet50",
        device: str = "cpu",
        **options: Any,
    ) -> None:
        state = load_state_dict_file(_require(weights, "weights", "pspnet"))
        net = build_pspnet(num_classes=num_classes, backbone=backbone, aux_loss=_has_aux(state))
        _load_strict(net, state)
        super().__init__(net, device, **options)


# ----------------------------------------------------------------------------- registry

SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "felzenszwalb": FelzenszwalbSegmenter,
    "slic": SlicSegmenter,
    "sam": SamAutomaticSegmenter,
    "sam_prompt": SamPromptSegmenter,
    "deeplab": DeepLabSegmenter,
    "pspnet": PSPNetSegmenter,
}
DEFAULT_SEGMENTER = "felzenszwalb"


def build_segmenter(name: str = DEFAULT_SEGMENTER, **options: Any) -> Segmenter:
    """Segmenter by registry name; ``options`` go to its constructor."""
    try:
        factory = SEGMENTERS[name]
    except KeyError:
        raise ValueError(f"unknown segmenter {name!r}; choose from {sorted(SEGMENTERS)}") from None
    return factory(**options)
