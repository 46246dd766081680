"""Figures for one image, as in the papers: ELA, each CAM view, the fused CAM, the chosen
region, the refined heatmap, the localizer map and the final mask, overlaid on the image.

The values are the scan's own (`graph.build_stages` with ``inspect``): the final heatmap and
mask are exactly those the scan and the endpoint give the image; only the drawing is here.
"""

from __future__ import annotations

import json
from pathlib import Path

from tamperscan.batch import bytes_batch
from tamperscan.config import PipelineConfig
from tamperscan.graph import analyse, build_stages
from tamperscan.render import (
    encode_png,
    heat_overlay,
    heatmap_png,
    mask_png,
    outline_overlay,
    preview,
)

MAX_SIDE = 768
HEAD_BLOCKS = (2, 3, 4)


def explain(data: bytes, out_dir: Path, config: PipelineConfig | None = None) -> dict:
    """Write the overlay PNGs for one image into ``out_dir`` (plus the final heatmap's values
    and the mask, as the scan stores them); returns scores and file names."""
    config = config or PipelineConfig()
    batch = analyse(build_stages(config, inspect=True), bytes_batch([data], ["image"]))
    row = {k: v[0] for k, v in batch.items()}
    if row["status"] != "ok":
        raise ValueError(row["error"])
    w, h = int(row["width"]), int(row["height"])
    view = preview(row["original"], w, h, MAX_SIDE)
    figures = {
        "ela.png": heat_overlay(view, row["ela_level"], 0.7),
        **{f"cam_block{b}.png": heat_overlay(view, row["cam_views"][i])
           for i, b in enumerate(HEAD_BLOCKS)},
        "cam_fused.png": heat_overlay(view, row["cam"]),
        "region.png": outline_overlay(view, row["refine_region"], (255, 255, 0)),
        "cam_refined.png": heat_overlay(view, row["refined_map"]),
        "two_stream.png": heat_overlay(view, row["ts_map"]),
        "copy_move.png": outline_overlay(view, row["cm_map"] >= 0.5, (0, 255, 255)),
        "jpeg.png": heat_overlay(view, row["jpeg_map"]),
        "final_heatmap.png": heat_overlay(view, row["heatmap"]),
        "final_mask.png": outline_overlay(view, row["mask"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, image in figures.items():
        (out_dir / name).write_bytes(encode_png(image))
    (out_dir / "heatmap_values.png").write_bytes(heatmap_png(row["heatmap"]))
    (out_dir / "mask.png").write_bytes(mask_png(row["mask"]))
    summary = {"score": float(row["score"]), "tampered": bool(row["tampered"]),
               "refined": bool(row["refined"]),
               "score_two_stream": float(row["score_two_stream"]),
               "score_wcbnet": float(row["score_wcbnet"]),
               "score_wcbnet_heads": row["score_wcbnet_heads"].tolist(),
               "score_copy_move": float(row["score_copy_move"]),
               "score_jpeg": float(row["score_jpeg"]),
               "jpeg": {"quality": int(row["jpeg_quality"]), "double": bool(row["jpeg_double"]),
                        "table": str(row["jpeg_table"])},
               "mask_fraction": float(row["mask_fraction"]),
               "files": sorted([*figures, "heatmap_values.png", "mask.png"])}
    (out_dir / "explain.json").write_text(json.dumps(summary, indent=2))
    return summary
