"""Realistic synthetic forgeries (and authentic negatives) streamed from authentic photos.

Each sample is built in the order a real forgery is made, so its compression traces are real:

1. **Fit**: a photo whose longer side exceeds a target drawn from `size_range` is either
   cropped (offsets on the 8-px grid, which keeps the photo's own JPEG history intact) or
   downsized (which wipes it). This happens BEFORE any compression so later traces survive.
2. **Host history**: optionally re-saved as JPEG at q1 (the "first compression").
3. **Manipulation** (none for authentic negatives):
   - `splice`: an object (a segment when the donor has a label map, else a smooth random blob)
     cut from ANOTHER photo that was re-saved at its own quality q_src, scaled/rotated
     (resampling), partially colour-matched in LAB, pasted with a feathered alpha.
   - `copy_move`: a region of the same photo pasted elsewhere (optionally rotated/scaled),
     feathered. By default the mask marks source AND target, the convention of the copy-move
     benchmarks (CoMoFoD, NoSo) and what an analyst wants to see (both duplicated regions);
     `copy_move_mask="target"` marks the pasted region only. `info["source_mask"]` always
     carries the copied-from region.
   - `removal`: `cv2.inpaint` (Telea or Navier-Stokes) over an object or blob, optionally with
     grain added back so the fill is not suspiciously smooth; mask = inpainted region.
4. **Post-processing, identical for every kind** (so labels cannot be read off the chain):
   optional mild downscale, optional 1-7 px crop (shifts the 8x8 grid: non-aligned double
   JPEG), final save as JPEG at q2 (single or double compression) or lossless PNG/TIFF.

Masks are carried through every crop/resize and returned at the final size. Samples are
deterministic in (seed, index) and nothing is written to disk.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tamperscan.train.photos import PhotoLike, load_rgb, load_segments

KINDS = ("splice", "copy_move", "removal", "authentic")
FORGED_AREA_RANGE = (0.005, 0.5)  # accepted mask fraction of a forged sample, checked per sample


@dataclass(frozen=True)
class Sample:
    """One training example: file bytes as they would be on disk, plus ground truth."""

    image_bytes: bytes
    format: str  # Pillow format name: "JPEG" | "PNG" | "TIFF"
    mask: np.ndarray  # (H, W) bool at the decoded image size, True = manipulated
    label: int  # 1 forged, 0 authentic
    kind: str  # one of KINDS
    info: dict[str, Any] = field(default_factory=dict)  # chain parameters, for audits


@dataclass(frozen=True)
class SynthConfig:
    """Mixture and parameter ranges. Qualities are Pillow/IJG quality factors."""

    kind_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "splice": 0.35,
            "copy_move": 0.20,
            "removal": 0.10,
            "authentic": 0.35,
        }
    )
    size_range: tuple[int, int] = (256, 768)  # longer side target; photos are never upscaled
    p_fit_by_resize: float = 0.5  # else crop on the 8-px grid
    p_host_recompress: float = 0.5  # q1 stage -> double JPEG when the final save is JPEG
    host_quality_range: tuple[int, int] = (60, 100)
    p_source_recompress: float = 0.8  # splice donor re-saved at q_src before the cut
    source_quality_range: tuple[int, int] = (50, 100)
    format_weights: Mapping[str, float] = field(
        default_factory=lambda: {"JPEG": 0.8, "PNG": 0.12, "TIFF": 0.08}
    )
    final_quality_range: tuple[int, int] = (60, 98)
    p_chroma_444: float = 0.3  # else 4:2:0 chroma subsampling (Pillow's default)
    p_grid_shift: float = 0.3  # 1-7 px crop before the final save
    p_global_resize: float = 0.15
    global_resize_range: tuple[float, float] = (0.75, 0.95)
    splice_area_range: tuple[float, float] = (0.01, 0.30)  # of the host area
    copy_move_area_range: tuple[float, float] = (0.01, 0.15)
    p_copy_move_rescale: float = 0.5
    copy_move_scale_range: tuple[float, float] = (0.8, 1.25)
    removal_area_range: tuple[float, float] = (0.01, 0.08)
    p_use_segment: float = 0.8  # object from a label map when one exists, else a random blob
    p_prefer_interior: float = 0.8  # pick among segments not touching the border, if any
    splice_scale_range: tuple[float, float] = (0.3, 2.5)  # resampling bounds for segments
    p_rotate: float = 0.4
    max_rotation_deg: float = 25.0
    feather_sigma_range: tuple[float, float] = (0.3, 2.5)
    p_color_match: float = 0.7
    color_match_strength_range: tuple[float, float] = (0.2, 0.8)  # partial: 1 = full transfer
    p_inpaint_grain: float = 0.5
    #: "both": a copy-move's mask is source | target (CoMoFoD/NoSo convention); "target": the
    #: pasted region only (the weights shipped before 2026-11-22 were trained that way).
    copy_move_mask: str = "both"
    #: Probability of one global photometric change after the forgery, to forged and authentic
    #: images alike: the post-processing families of CoMoFoD (brightness, contrast, blur, noise,
    #: colour reduction; its JPEG family is the final save). 0 (the default) draws nothing, so
    #: the streams the shipped weights were trained on are reproduced exactly.
    p_photometric: float = 0.0
    brightness_range: tuple[float, float] = (10.0, 40.0)  # grey levels, either sign
    contrast_range: tuple[float, float] = (0.7, 1.3)  # gain around the image mean
    blur_sigma_range: tuple[float, float] = (0.5, 1.5)
    noise_sigma_range: tuple[float, float] = (1.0, 6.0)  # grey levels, per pixel and channel
    colour_levels_range: tuple[int, int] = (16, 64)  # levels per channel after reduction
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if set(self.kind_weights) - set(KINDS):
            raise ValueError(f"unknown kinds {set(self.kind_weights) - set(KINDS)}")
        if set(self.format_weights) - {"JPEG", "PNG", "TIFF"}:
            raise ValueError(f"unknown formats {set(self.format_weights)}")
        if self.size_range[0] > self.size_range[1] or self.size_range[0] < 32:
            raise ValueError(f"bad size_range {self.size_range}")
        if self.copy_move_mask not in ("both", "target"):
            raise ValueError(
                f"copy_move_mask must be 'both' or 'target', not {self.copy_move_mask!r}")


def _choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _quality(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def jpeg_bytes(rgb: np.ndarray, quality: int, subsampling: int = 2) -> bytes:
    """Encode with Pillow (libjpeg-turbo), the codec the pipeline uses. subsampling 0=4:4:4,
    2=4:2:0."""
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
    return buffer.getvalue()


def jpeg_recompress(rgb: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """Save as JPEG and decode: leaves the quantisation traces of `quality` on the pixels."""
    with Image.open(BytesIO(jpeg_bytes(rgb, quality, subsampling))) as image:
        return np.array(image.convert("RGB"))  # a writable copy: callers paste into it


def encode_image(rgb: np.ndarray, fmt: str, quality: int = 90, subsampling: int = 2) -> bytes:
    """Final save. PNG uses compress_level=1 and TIFF is uncompressed: speed matters when
    streaming, and the decoded pixels are identical whatever the lossless effort."""
    if fmt == "JPEG":
        return jpeg_bytes(rgb, quality, subsampling)
    buffer = BytesIO()
    if fmt == "PNG":
        Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    elif fmt == "TIFF":
        Image.fromarray(rgb).save(buffer, "TIFF")
    else:
        raise ValueError(f"unsupported format {fmt!r}")
    return buffer.getvalue()


def random_blob(rng: np.random.Generator, area: float) -> np.ndarray:
    """A smooth random shape of roughly `area` pixels, tight-cropped bool mask.

    Random star polygon (sorted angles, jittered radii, random elongation) filled with
    cv2.fillPoly, then Gaussian-blurred and re-thresholded to round the corners.
    """
    radius = np.sqrt(area / np.pi)
    aspect = np.exp(rng.uniform(-0.6, 0.6))
    n_points = int(rng.integers(5, 13))
    # Evenly spread angles with jitter: a star-shaped polygon that never degenerates.
    angles = (np.arange(n_points) + rng.uniform(-0.35, 0.35, n_points)) * (2 * np.pi / n_points)
    radii = radius * rng.uniform(0.7, 1.3, n_points)
    rotation = rng.uniform(0, np.pi)
    x = radii * np.cos(angles) * aspect
    y = radii * np.sin(angles) / aspect
    x, y = x * np.cos(rotation) - y * np.sin(rotation), x * np.sin(rotation) + y * np.cos(rotation)
    pad = int(np.ceil(0.2 * radius)) + 2
    x0, y0 = x.min() - pad, y.min() - pad
    width, height = int(np.ceil(x.max() - x0)) + pad, int(np.ceil(y.max() - y0)) + pad
    canvas = np.zeros((height, width), np.float32)
    points = np.stack([x - x0, y - y0], axis=1)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1.0)
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.15 * radius, 0.5))
    blob = canvas > 0.5
    if not blob.any():  # sub-pixel request: one pixel is the smallest blob
        blob[height // 2, width // 2] = True
    return _tight(blob)


def _tight(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1), half-open."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _segment_areas(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, areas) of non-zero labels present in the map."""
    counts = np.bincount(segments.ravel())
    labels = np.nonzero(counts)[0]
    labels = labels[labels > 0]
    return labels, counts[labels]


def _border_labels(segments: np.ndarray) -> np.ndarray:
    edges = (segments[0], segments[-1], segments[:, 0], segments[:, -1])
    return np.unique(np.concatenate(edges))


def _match_color(
    patch: np.ndarray, reference: np.ndarray, patch_mask: np.ndarray, strength: float
) -> np.ndarray:
    """Move the masked patch's per-channel LAB mean/std towards the reference's (Reinhard
    transfer) by `strength` in [0, 1]; a forger's 'match colour' adjustment."""
    lab = cv2.cvtColor(patch.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    src_pixels = lab[patch_mask]
    mean_s, std_s = src_pixels.mean(0), src_pixels.std(0) + 1e-3
    mean_r, std_r = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0) + 1e-3
    gain = np.clip(std_r / std_s, 0.5, 2.0)
    matched = (lab - mean_s) * gain + mean_r
    lab = lab + strength * (matched - lab)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _fit_transform(
    patch_shape: tuple[int, int], scale: float, angle_deg: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine (2x3) rotating/scaling a patch about its centre so that its transformed
    bounding box starts at (0, 0); returns it with that box's (height, width)."""
    h, w = patch_shape
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, scale)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
    low = corners.min(0)
    matrix[:, 2] -= low
    size = np.ceil(corners.max(0) - low).astype(int)
    return matrix, (int(size[1]), int(size[0]))


def _paste(
    host: np.ndarray,
    patch: np.ndarray,
    patch_mask: np.ndarray,
    matrix: np.ndarray,
    origin: tuple[int, int],
    box: tuple[int, int],
    sigma: float,
    interpolation: int,
    color_strength: float = 0.0,
) -> np.ndarray:
    """Warp `patch` (with its region mask) by `matrix` into `host` at `origin` (y, x) with a
    feathered alpha; host is modified in place. Returns the manipulated-pixel mask (alpha >
    0.5, i.e. the warped region's own boundary)."""
    hh, hw = host.shape[:2]
    pad = int(np.ceil(3 * sigma)) + 2
    y0, x0 = max(origin[0] - pad, 0), max(origin[1] - pad, 0)
    y1, x1 = min(origin[0] + box[0] + pad, hh), min(origin[1] + box[1] + pad, hw)
    local = matrix.copy()
    local[:, 2] += (origin[1] - x0, origin[0] - y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(patch, local, size, flags=interpolation, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.warpAffine(patch_mask.astype(np.float32), local, size, flags=cv2.INTER_LINEAR)
    if sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
    inside = alpha > 0.5
    region = host[y0:y1, x0:x1]
    if color_strength > 0 and inside.any():
        warped = _match_color(warped, region, inside, color_strength)
    a = alpha[..., None]
    blended = a * warped.astype(np.float32) + (1.0 - a) * region.astype(np.float32)
    region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    mask = np.zeros((hh, hw), bool)
    mask[y0:y1, x0:x1] = inside
    return mask


PHOTOMETRIC = ("brightness", "contrast", "blur", "noise", "colour_reduction")


def photometric(rng: np.random.Generator, image: np.ndarray,
                cfg: SynthConfig) -> tuple[np.ndarray, str]:
    """One CoMoFoD-style global change of the whole image (geometry untouched, so masks stay)."""
    kind = PHOTOMETRIC[int(rng.integers(len(PHOTOMETRIC)))]
    pixels = image.astype(np.float32)
    if kind == "brightness":
        pixels += _uniform(rng, cfg.brightness_range) * rng.choice([-1.0, 1.0])
    elif kind == "contrast":
        mean = pixels.mean(axis=(0, 1), keepdims=True)
        pixels = mean + (pixels - mean) * _uniform(rng, cfg.contrast_range)
    elif kind == "blur":
        pixels = cv2.GaussianBlur(pixels, (0, 0), _uniform(rng, cfg.blur_sigma_range))
    elif kind == "noise":
        sigma = _uniform(rng, cfg.noise_sigma_range)
        pixels += rng.standard_normal(pixels.shape).astype(np.float32) * sigma
    else:
        step = 256.0 / int(rng.integers(cfg.colour_levels_range[0], cfg.colour_levels_range[1] + 1))
        pixels = (np.floor(pixels / step) + 0.5) * step
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8), kind


class ForgerySynthesizer:
    """Stream of `Sample`s from authentic photos; `sample(i)` depends only on (seed, i).

    photos: `Photo`s (files) or `InMemoryPhoto`s (arrays); at least two for splicing.
    size_range: overrides `config.size_range` when given.
    cache_size: decoded photos kept in memory (decoding dominates the cost on real data).
    """

    def __init__(
        self,
        photos: Sequence[PhotoLike],
        seed: int = 0,
        size_range: tuple[int, int] | None = None,
        config: SynthConfig | None = None,
        cache_size: int = 64,
    ) -> None:
        if len(photos) < 2:
            raise ValueError("need at least two photos (splicing takes a donor)")
        self.photos = list(photos)
        self.seed = int(seed)
        config = config or SynthConfig()
        self.config = replace(config, size_range=tuple(size_range)) if size_range else config
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._cache_size = cache_size

    def stream(self, start: int = 0) -> Iterator[Sample]:
        """Infinite iterator over sample(start), sample(start + 1), ..."""
        for index in itertools.count(start):
            yield self.sample(index)

    def sample(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, int(index)])
        cfg = self.config
        kind = _choose(rng, cfg.kind_weights)
        for _ in range(cfg.max_attempts):
            built = self._build(rng, kind)
            if built is not None:
                return built
        raise RuntimeError(f"could not synthesise a {kind} sample for index {index}")

    # -- photos ---------------------------------------------------------------------------
    def _photo(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded (rgb, segments) of photo i, read-only, LRU-cached."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        rgb, segments = load_rgb(self.photos[i]), load_segments(self.photos[i])
        if segments is not None and segments.shape != rgb.shape[:2]:
            segments = None  # a label map that does not fit its photo is not trusted
        # Read-only views: a cached photo must never be painted on (the caller's arrays keep
        # their own flags).
        rgb = rgb.view()
        rgb.setflags(write=False)
        if segments is not None:
            segments = segments.view()
            segments.setflags(write=False)
        self._cache[i] = (rgb, segments)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return rgb, segments

    def _fit(
        self, rng: np.random.Generator, rgb: np.ndarray, segments: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, str]:
        """Bring the longer side within a target from size_range (crop or downscale)."""
        target = int(rng.integers(self.config.size_range[0], self.config.size_range[1] + 1))
        h, w = rgb.shape[:2]
        if max(h, w) <= target:
            return rgb.copy(), segments, "none"
        if rng.random() < self.config.p_fit_by_resize:
            scale = target / max(h, w)
            size = (max(round(w * scale), 1), max(round(h * scale), 1))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            if segments is not None:
                segments = cv2.resize(segments, size, interpolation=cv2.INTER_NEAREST)
            return rgb, segments, "resize"
        ch, cw = min(h, target), min(w, target)
        y = 8 * int(rng.integers(0, (h - ch) // 8 + 1))
        x = 8 * int(rng.integers(0, (w - cw) // 8 + 1))
        rgb = rgb[y : y + ch, x : x + cw].copy()
        if segments is not None:
            segments = segments[y : y + ch, x : x + cw]
        return rgb, segments, "crop"

    # -- one attempt ----------------------------------------------------------------------
    def _build(self, rng: np.random.Generator, kind: str) -> Sample | None:
        cfg = self.config
        host_index = int(rng.integers(len(self.photos)))
        host_rgb, host_segments = self._photo(host_index)
        host, segments, fit = self._fit(rng, host_rgb, host_segments)
        info: dict[str, Any] = {"host": self.photos[host_index].name, "fit": fit, "q1": None}
        if rng.random() < cfg.p_host_recompress:
            info["q1"] = _quality(rng, cfg.host_quality_range)
            host = jpeg_recompress(host, info["q1"], self._subsampling(rng))

        source_mask = None
        if kind == "authentic":
            mask = np.zeros(host.shape[:2], bool)
        elif kind == "splice":
            mask = self._splice(rng, host, host_index, info)
        elif kind == "copy_move":
            mask, source_mask = self._copy_move(rng, host, segments, info)
        else:
            mask = self._removal(rng, host, segments, info)
        if mask is None:
            return None
        if kind != "authentic" and not self._plausible(mask):
            return None

        image, masks = self._post_process(rng, host, [mask, source_mask], info)
        fmt = _choose(rng, cfg.format_weights)
        info["format"] = fmt
        quality, subsampling = 0, 2
        if fmt == "JPEG":
            quality, subsampling = _quality(rng, cfg.final_quality_range), self._subsampling(rng)
            info.update(q2=quality, subsampling="4:4:4" if subsampling == 0 else "4:2:0")
        mask = masks[0]
        if masks[1] is not None:
            info["source_mask"] = masks[1]
            if cfg.copy_move_mask == "both":
                mask = mask | masks[1]
        return Sample(
            image_bytes=encode_image(image, fmt, quality, subsampling),
            format=fmt,
            mask=mask,
            label=0 if kind == "authentic" else 1,
            kind=kind,
            info=info,
        )

    def _subsampling(self, rng: np.random.Generator) -> int:
        return 0 if rng.random() < self.config.p_chroma_444 else 2

    @staticmethod
    def _plausible(mask: np.ndarray) -> bool:
        fraction = mask.mean()
        return FORGED_AREA_RANGE[0] <= fraction <= FORGED_AREA_RANGE[1]

    # -- regions --------------------------------------------------------------------------
    def _pick_segment(
        self,
        rng: np.random.Generator,
        segments: np.ndarray | None,
        area_bounds: tuple[float, float],
    ) -> np.ndarray | None:
        """A label whose pixel count lies in `area_bounds`, as a bool map; None if no map,
        no fitting label, or the dice say blob. Labels that touch the image border are mostly
        background (sky, ground, cut-off objects), so interior ones are usually preferred."""
        if segments is None or rng.random() >= self.config.p_use_segment:
            return None
        labels, areas = _segment_areas(segments)
        ok = (areas >= area_bounds[0]) & (areas <= area_bounds[1])
        if not ok.any():
            return None
        interior = ok & ~np.isin(labels, _border_labels(segments))
        if interior.any() and rng.random() < self.config.p_prefer_interior:
            ok = interior
        label = rng.choice(labels[ok])
        return segments == label

    def _region(
        self,
        rng: np.random.Generator,
        shape: tuple[int, int],
        segments: np.ndarray | None,
        area_range: tuple[float, float],
    ) -> tuple[np.ndarray | None, str]:
        """Full-size bool mask of an object (segment) or a blob at a random place, and which."""
        h, w = shape
        area = h * w
        region = self._pick_segment(rng, segments, (area_range[0] * area, area_range[1] * area))
        if region is not None:
            return region, "segment"
        blob = random_blob(rng, _log_uniform(rng, *area_range) * area)
        bh, bw = blob.shape
        if bh >= h or bw >= w:
            return None, "blob"
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        region = np.zeros(shape, bool)
        region[y : y + bh, x : x + bw] = blob
        return region, "blob"

    def _feather(self, rng: np.random.Generator) -> float:
        return _uniform(rng, self.config.feather_sigma_range)

    def _angle(self, rng: np.random.Generator) -> float:
        if rng.random() < self.config.p_rotate:
            return _uniform(rng, (-self.config.max_rotation_deg, self.config.max_rotation_deg))
        return 0.0

    @staticmethod
    def _interpolation(rng: np.random.Generator) -> int:
        return int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4]))

    # -- manipulations --------------------------------------------------------------------
    def _splice(
        self, rng: np.random.Generator, host: np.ndarray, host_index: int, info: dict[str, Any]
    ) -> np.ndarray | None:
        cfg = self.config
        hh, hw = host.shape[:2]
        host_area = hh * hw
        donor_index = int(rng.integers(len(self.photos) - 1))
        donor_index += donor_index >= host_index  # any photo but the host
        donor, donor_segments = self._photo(donor_index)
        dh, dw = donor.shape[:2]
        low, high = cfg.splice_area_range
        s_low, s_high = cfg.splice_scale_range
        # A segment is usable if some scale in splice_scale_range brings it into the area range.
        region = self._pick_segment(
            rng, donor_segments, (low * host_area / s_high**2, high * host_area / s_low**2)
        )
        if region is not None:
            region_area = float(region.sum())
            lo = max(low, region_area * s_low**2 / host_area)
            hi = min(high, region_area * s_high**2 / host_area)
            scale = np.sqrt(_log_uniform(rng, lo, hi) * host_area / region_area)
            info["object"] = "segment"
        else:
            scale = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
            blob = random_blob(rng, _log_uniform(rng, low, high) * host_area / scale**2)
            bh, bw = blob.shape
            if bh >= dh or bw >= dw:
                return None
            y, x = int(rng.integers(0, dh - bh)), int(rng.integers(0, dw - bw))
            region = np.zeros((dh, dw), bool)
            region[y : y + bh, x : x + bw] = blob
            info["object"] = "blob"
        donor_name = self.photos[donor_index].name
        info.update(donor=donor_name, q_src=None, scale=round(float(scale), 3))

        y0, x0, y1, x1 = _bbox(region)
        margin = 8  # context beyond the object for feathering and resampling support
        y0, x0 = max(y0 - margin, 0), max(x0 - margin, 0)
        y1, x1 = min(y1 + margin, dh), min(x1 + margin, dw)
        patch = np.ascontiguousarray(donor[y0:y1, x0:x1])
        if rng.random() < cfg.p_source_recompress:
            info["q_src"] = _quality(rng, cfg.source_quality_range)
            patch = jpeg_recompress(patch, info["q_src"], self._subsampling(rng))
        angle = self._angle(rng)
        matrix, box = _fit_transform(patch.shape[:2], float(scale), angle)
        if box[0] >= hh or box[1] >= hw:
            return None
        origin = (int(rng.integers(0, hh - box[0])), int(rng.integers(0, hw - box[1])))
        strength = 0.0
        if rng.random() < cfg.p_color_match:
            strength = _uniform(rng, cfg.color_match_strength_range)
        info.update(angle=round(angle, 2), color_match=round(strength, 3))
        return _paste(
            host,
            patch,
            region[y0:y1, x0:x1],
            matrix,
            origin,
            box,
            self._feather(rng),
            self._interpolation(rng),
            strength,
        )

    def _copy_move(
        self,
        rng: np.random.Generator,
        host: np.ndarray,
        segments: np.ndarray | None,
        info: dict[str, Any],
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        hh, hw = host.shape[:2]
        region, origin_kind = self._region(
            rng, (hh, hw), segments, self.config.copy_move_area_range
        )
        if region is None:
            return None, None
        y0, x0, y1, x1 = _bbox(region)
        margin = 4
        y0, x0 = max(y0 - margin, 0), max(x0 - margin, 0)
        y1, x1 = min(y1 + margin, hh), min(x1 + margin, hw)
        patch = host[y0:y1, x0:x1].copy()  # copied before pasting: source stays pristine
        scale = 1.0
        if rng.random() < self.config.p_copy_move_rescale:
            scale = _log_uniform(rng, *self.config.copy_move_scale_range)
        angle = self._angle(rng)
        matrix, box = _fit_transform(patch.shape[:2], scale, angle)
        if box[0] >= hh or box[1] >= hw:
            return None, None
        # Prefer a target that does not cover the source (best of a few random tries).
        best, best_overlap = None, np.inf
        for _ in range(8):
            oy, ox = int(rng.integers(0, hh - box[0])), int(rng.integers(0, hw - box[1]))
            overlap = max(0, min(oy + box[0], y1) - max(oy, y0)) * max(
                0, min(ox + box[1], x1) - max(ox, x0)
            )
            if overlap < best_overlap:
                best, best_overlap = (oy, ox), overlap
            if overlap == 0:
                break
        info.update(scale=round(scale, 3), angle=round(angle, 2), object=origin_kind)
        mask = _paste(
            host,
            patch,
            region[y0:y1, x0:x1],
            matrix,
            best,
            box,
            self._feather(rng),
            self._interpolation(rng),
        )
        return mask, region & ~mask

    def _removal(
        self,
        rng: np.random.Generator,
        host: np.ndarray,
        segments: np.ndarray | None,
        info: dict[str, Any],
    ) -> np.ndarray | None:
        hh, hw = host.shape[:2]
        region, origin_kind = self._region(rng, (hh, hw), segments, self.config.removal_area_range)
        if region is None:
            return None
        # Forgers select an object with a margin; dilate a few pixels.
        grow = int(rng.integers(1, 6))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        region = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
        radius = int(rng.integers(3, 8))
        method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
        y0, x0, y1, x1 = _bbox(region)
        pad = 2 * radius + 8  # inpainting only reads a band around the hole
        y0, x0 = max(y0 - pad, 0), max(x0 - pad, 0)
        y1, x1 = min(y1 + pad, hh), min(x1 + pad, hw)
        window = np.ascontiguousarray(host[y0:y1, x0:x1])
        hole = region[y0:y1, x0:x1]
        filled = cv2.inpaint(window, hole.astype(np.uint8), radius, method)
        grain = 0.0
        if rng.random() < self.config.p_inpaint_grain:
            # Noise level of the surroundings (MAD of a Laplacian), added back inside the hole.
            laplacian = cv2.Laplacian(window.astype(np.float32).mean(2), cv2.CV_32F)
            grain = float(np.median(np.abs(laplacian[~hole])) / 0.6745 / np.sqrt(20))
            noise = rng.standard_normal(filled.shape).astype(np.float32) * grain
            noisy = np.clip(filled.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
            filled = np.where(hole[..., None], noisy, filled)
        host[y0:y1, x0:x1][hole] = filled[hole]
        info.update(
            inpaint="telea" if method == cv2.INPAINT_TELEA else "ns",
            radius=radius,
            grain=round(grain, 2),
            object=origin_kind,
        )
        return region

    # -- post-processing ------------------------------------------------------------------
    def _post_process(
        self,
        rng: np.random.Generator,
        image: np.ndarray,
        masks: list[np.ndarray | None],
        info: dict[str, Any],
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Global operations applied to every kind alike; masks follow the pixels."""
        cfg = self.config
        info["resize"] = None
        if rng.random() < cfg.p_global_resize:
            scale = _uniform(rng, cfg.global_resize_range)
            h, w = image.shape[:2]
            size = (max(round(w * scale), 8), max(round(h * scale), 8))
            flag = int(rng.choice([cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC]))
            image = cv2.resize(image, size, interpolation=flag)
            masks = [
                None
                if m is None
                else cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5
                for m in masks
            ]
            info["resize"] = round(scale, 3)
        info["photometric"] = None
        if cfg.p_photometric > 0 and rng.random() < cfg.p_photometric:
            image, info["photometric"] = photometric(rng, image, cfg)
        info["grid_shift"] = (0, 0)
        if rng.random() < cfg.p_grid_shift:
            dy, dx = 0, 0
            while dy == 0 and dx == 0:
                dy, dx = int(rng.integers(0, 8)), int(rng.integers(0, 8))
            image = image[dy:, dx:]
            masks = [None if m is None else m[dy:, dx:] for m in masks]
            info["grid_shift"] = (dy, dx)
        image = np.ascontiguousarray(image)
        masks = [None if m is None else np.ascontiguousarray(m) for m in masks]
        return image, masks
