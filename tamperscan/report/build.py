"""`build_report`: results folder in, static report folder out."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tamperscan.config import PipelineConfig, S3Options
from tamperscan.io import resolve
from tamperscan.report.data import (
    dedupe,
    flag_codes,
    order_rows,
    read_results,
    summarise,
    top_flagged,
    write_data,
)
from tamperscan.report.html import ASSETS_DIR, write_page
from tamperscan.report.images import IMG_DIR, Sources, make_images

MARKER = ".tamperscan-report"
DATA_DIR = "data"


@dataclass(frozen=True)
class ReportInfo:
    index: Path
    rows: int
    pages: int
    images: int
    seconds: float


def prepare_out(out: Path) -> None:
    """Make ``out`` empty of earlier report files (stale pages or images would be shown), but
    refuse to clear a folder this command did not create: --out may be a typo for a real one."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} is not empty and holds no earlier report; "
                              f"choose an empty or new folder")
    for name in (DATA_DIR, IMG_DIR, ASSETS_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `tamperscan report`; the folder is rebuilt on re-run\n")


def read_run_summary(results_dir: str, s3: S3Options | None) -> dict[str, Any]:
    """``summary.json`` of the last scan run, or {} when absent or unreadable."""
    try:
        fs, root = resolve(results_dir, s3)
        with fs.open_input_stream(f"{root.rstrip('/')}/summary.json") as f:
            data = json.loads(f.read(1 << 20))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _masks(results_dir: str, s3: S3Options | None, top: pd.DataFrame) -> dict[str, bytes]:
    """mask_png of the chosen rows only (the heavy column), matched on (uri, run_id)."""
    if top.empty:
        return {}
    found = read_results(results_dir, s3, ("uri", "run_id", "mask_png"), top["uri"].tolist())
    wanted = set(zip(top["uri"], top["run_id"].fillna(""), strict=True))
    return {uri: png for uri, run, png in zip(found["uri"], found["run_id"].fillna(""),
                                               found["mask_png"], strict=True)
            if (uri, run) in wanted and png}


def build_report(results_dir: str, out: Path, config: PipelineConfig | None = None,
                 s3: S3Options | None = None, top_k: int = 500, rows_per_page: int = 50,
                 chunk_rows: int = 1000, workers: int | None = None) -> ReportInfo:
    """Write the report for the scan output ``results_dir`` (local or s3://) into ``out``."""
    start = time.perf_counter()
    config = config or PipelineConfig()
    if chunk_rows < 1 or rows_per_page < 1:
        raise ValueError("chunk_rows and rows_per_page must be positive")
    df = order_rows(dedupe(read_results(results_dir, s3)))
    prepare_out(out)
    ranks = top_flagged(df, top_k)
    top = df.iloc[ranks]
    sources = Sources.for_config(results_dir, s3, config)
    images = make_images(top, ranks, _masks(results_dir, s3, top), sources, out,
                         workers or min(4, os.cpu_count() or 1))
    run = read_run_summary(results_dir, s3)
    # The scan's own verdict threshold when its summary says it; else the config's.
    threshold = float(run.get("tamper_threshold", config.tamper_threshold))
    meta = {"threshold": threshold, "topK": top_k, "rowsPerPage": rows_per_page}
    pages = write_data(df, flag_codes(df, threshold), images, out / DATA_DIR, chunk_rows, meta)
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    index = write_page(out, summarise(df, threshold), run, results_dir, top_k, generated)
    return ReportInfo(index, len(df), pages, len(images), time.perf_counter() - start)
