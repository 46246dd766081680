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

This module composes the chain (fit, host history, final save); the stages live beside it:
`regions` (objects and blobs), `forgeries` (splice, copy-move, removal) with `paste`,
`postprocess` (step 4 before the save), `compression` (every encode), `synth_config`
(the knobs).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from tamperscan.train.compression import (
    draw_quality,
    draw_subsampling,
    encode_image,
    jpeg_bytes,
    jpeg_recompress,
)
from tamperscan.train.draws import choose
from tamperscan.train.forgeries import copy_move, removal, splice
from tamperscan.train.photos import PhotoLike, load_rgb, load_segments
from tamperscan.train.postprocess import post_process
from tamperscan.train.synth_config import KINDS, SynthConfig

__all__ = [
    "FORGED_AREA_RANGE",
    "KINDS",
    "ForgerySynthesizer",
    "Sample",
    "SynthConfig",
    "encode_image",
    "jpeg_bytes",
    "jpeg_recompress",
]

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
        kind = choose(rng, cfg.kind_weights)
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

    def _donor(
        self, rng: np.random.Generator, host_index: int
    ) -> tuple[np.ndarray, np.ndarray | None, str]:
        """(rgb, segments, name) of a random photo other than the host: the splice source."""
        donor_index = int(rng.integers(len(self.photos) - 1))
        donor_index += donor_index >= host_index  # any photo but the host
        return *self._photo(donor_index), self.photos[donor_index].name

    # -- one attempt ----------------------------------------------------------------------
    def _build(self, rng: np.random.Generator, kind: str) -> Sample | None:
        cfg = self.config
        host_index = int(rng.integers(len(self.photos)))
        host_rgb, host_segments = self._photo(host_index)
        host, segments, fit = self._fit(rng, host_rgb, host_segments)
        info: dict[str, Any] = {"host": self.photos[host_index].name, "fit": fit, "q1": None}
        if rng.random() < cfg.p_host_recompress:
            info["q1"] = draw_quality(rng, cfg.host_quality_range)
            host = jpeg_recompress(host, info["q1"], draw_subsampling(rng, cfg.p_chroma_444))

        source_mask = None
        if kind == "authentic":
            mask = np.zeros(host.shape[:2], bool)
        elif kind == "splice":
            donor, donor_segments, donor_name = self._donor(rng, host_index)
            mask = splice(rng, host, donor, donor_segments, donor_name, cfg, info)
        elif kind == "copy_move":
            mask, source_mask = copy_move(rng, host, segments, cfg, info)
        else:
            mask = removal(rng, host, segments, cfg, info)
        if mask is None:
            return None
        if kind != "authentic" and not self._plausible(mask):
            return None

        image, masks = post_process(rng, host, [mask, source_mask], cfg, info)
        fmt = choose(rng, cfg.format_weights)
        info["format"] = fmt
        quality, subsampling = 0, 2
        if fmt == "JPEG":
            quality = draw_quality(rng, cfg.final_quality_range)
            subsampling = draw_subsampling(rng, cfg.p_chroma_444)
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

    @staticmethod
    def _plausible(mask: np.ndarray) -> bool:
        fraction = mask.mean()
        return FORGED_AREA_RANGE[0] <= fraction <= FORGED_AREA_RANGE[1]
