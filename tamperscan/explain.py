"""Figures for one image, as in the papers: ELA, each CAM view, the fused CAM, the chosen
region, the refined heatmap, the localizer map and the final mask, overlaid on the image."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tamperscan.config import PipelineConfig
from tamperscan.preprocess.decode import decode_image
from tamperscan.preprocess.ela import ela_absolute
from tamperscan.refine.segmenters import build_segmenter
from tamperscan.stages import (
    DecodeELA,
    Detect,
    Localize,
    analyse,
    bytes_batch,
    final_decision,
    final_map,
    image_score,
    refine_at,
)

MAX_SIDE = 768
HEAD_BLOCKS = (2, 3, 4)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    interpolation = cv2.INTER_NEAREST if image.dtype == bool else cv2.INTER_LINEAR
    return cv2.resize(image.astype(np.float32) if image.dtype != np.uint8 else image,
                      (width, height), interpolation=interpolation)


def heat_overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Jet-coloured map blended over the image (BGR for OpenCV writing)."""
    h, w = rgb.shape[:2]
    colour = cv2.applyColorMap((np.clip(_fit(heat, w, h), 0, 1) * 255).astype(np.uint8),
                               cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 1 - alpha, colour, alpha, 0)


def outline_overlay(rgb: np.ndarray, mask: np.ndarray,
                    colour: tuple[int, int, int] = (0, 0, 255)) -> np.ndarray:
    h, w = rgb.shape[:2]
    full = _fit(mask.astype(np.uint8), w, h)
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.drawContours(out, contours, -1, colour, max(2, w // 300))
    return out


def explain(data: bytes, out_dir: Path, config: PipelineConfig | None = None) -> dict:
    """Write the overlay PNGs for one image into ``out_dir``; returns scores and file names."""
    config = config or PipelineConfig()
    batch = analyse([DecodeELA(config), Localize(config), Detect(config)],
                    bytes_batch([data], ["image"]))
    if batch["status"][0] != "ok":
        raise ValueError(batch["error"][0])
    rgb = decode_image(data).rgb
    scale = min(1.0, MAX_SIDE / max(rgb.shape[:2]))
    view = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    s = batch["rgb"].shape[1]
    cam = cv2.resize(batch["cam"][0].astype(np.float32), (s, s))
    segmenter = build_segmenter(config.segmenter, **config.segmenter_options)
    refined, region = refine_at(segmenter, batch["rgb"][0], batch["cam"][0], config.refine_size)
    score = float(image_score(batch, config)[0])
    cascade = score >= config.refine_threshold and config.cam_weight > 0
    heat = final_map(batch["ts_map"][0], refined, cascade, config.cam_weight,
                     batch["cm_map"][0])
    figures = {
        "ela.png": heat_overlay(view, ela_absolute(rgb, config.ela_quality).mean(axis=2), 0.7),
        **{f"cam_block{b}.png": heat_overlay(view, batch["cam_views"][0][i])
           for i, b in enumerate(HEAD_BLOCKS)},
        "cam_fused.png": heat_overlay(view, cam),
        "region.png": outline_overlay(view, region, (255, 255, 0)),
        "cam_refined.png": heat_overlay(view, refined),
        "two_stream.png": heat_overlay(view, batch["ts_map"][0]),
        "copy_move.png": outline_overlay(view, batch["cm_map"][0] >= 0.5, (0, 255, 255)),
        "final_heatmap.png": heat_overlay(view, heat),
        "final_mask.png": outline_overlay(
            view, final_decision(heat, score, config, batch["cm_map"][0].astype(np.float32))),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, image in figures.items():
        cv2.imwrite(str(out_dir / name), image)
    summary = {"score": score, "tampered": score >= config.tamper_threshold,
               "score_two_stream": float(batch["score_two_stream"][0]),
               "score_wcbnet": float(batch["score_wcbnet"][0]),
               "score_wcbnet_heads": batch["score_wcbnet_heads"][0].tolist(),
               "score_copy_move": float(batch["score_copy_move"][0]),
               "files": sorted(figures)}
    (out_dir / "explain.json").write_text(json.dumps(summary, indent=2))
    return summary
