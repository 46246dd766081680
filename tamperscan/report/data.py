"""Load a scan's rows and lay them out for the browser.

The browser gets two things: a compact index of every row (score and packed flags, enough to
filter 100 000 rows in milliseconds) and fixed-size page files with the row details, loaded on
demand. Both are ``.js`` files that call into the page's script, because Chromium blocks
``fetch()`` of ``file://`` URLs while ``<script src>`` works everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from tamperscan.config import S3Options
from tamperscan.io import RESULTS_DIR, resolve
from tamperscan.results import OUTPUT_SCHEMA

#: Everything the report shows, without the heavy per-row bytes (mask_png is read for the
#: top-K rows only).
COLUMNS = ("uri", "status", "error", "width", "height", "score", "tampered", "score_two_stream",
           "score_wcbnet", "score_wcbnet_heads", "score_copy_move", "score_jpeg", "jpeg_quality",
           "jpeg_double", "jpeg_table", "refined", "mask_fraction", "heatmap_path", "run_id")
#: Field order of one row in a page file (arrays, not objects: a third of the bytes).
PAGE_FIELDS = ("uri", "status", "error", "score", "ts", "wc", "heads", "mask", "w", "h",
               "refined", "img", "cm", "jp", "jf")
SCORE_SCALE = 10_000  # index scores are integers: 4 decimals, compact JSON
# Packed per-row flags (one hex digit per row in the index).
ERROR, FLAGGED = 1, 2
AGREE_NA, AGREE_BOTH, AGREE_DISAGREE, AGREE_NEITHER = 0, 1, 2, 3
HIST_BINS = 20


def page_name(number: int) -> str:
    """Page files are numbered from 1; report.js builds the same name."""
    return f"page-{number:04d}.js"


def read_results(results_dir: str, s3: S3Options | None = None,
                 columns: tuple[str, ...] = COLUMNS, uris: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``RESULTS_DIR/results/*.parquet`` (local or s3://), heads split into
    ``head_2``..``head_4``; with ``uris``, only those rows (pushed down to the Parquet reader)."""
    fs, root = resolve(results_dir, s3)
    path = f"{root.rstrip('/')}/{RESULTS_DIR}"
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no {RESULTS_DIR}/ folder under {results_dir}: is it the "
                                f"--out folder of `tamperscan scan`?")
    dataset = pads.dataset(path, filesystem=fs, format="parquet", schema=OUTPUT_SCHEMA)
    where = pc.field("uri").isin(pa.array(uris, pa.string())) if uris is not None else None
    table = dataset.to_table(columns=list(columns), filter=where)
    if "score_wcbnet_heads" in table.column_names:
        heads = table.column("score_wcbnet_heads")
        for i, block in enumerate((2, 3, 4)):
            table = table.append_column(f"head_{block}", pc.list_element(heads, i))
        table = table.drop_columns(["score_wcbnet_heads"])
    return table.to_pandas()


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """One row per URI even if the folder was never compacted (an interrupted run), by the
    rule of `ResultSink.compact`: an ``ok`` row beats an ``error`` row, a later run an earlier."""
    key = pd.DataFrame({"ok": df["status"].eq("ok").to_numpy(),
                        "run": df["run_id"].fillna("").astype(str).to_numpy()}, index=df.index)
    order = key.sort_values(["ok", "run"], kind="stable").index
    return df.loc[order].drop_duplicates("uri", keep="last")


def order_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Most suspicious first: score descending, rows without a score (errors) last, then URI."""
    return df.sort_values(["score", "uri"], ascending=[False, True], na_position="last",
                          kind="stable").reset_index(drop=True)


def _floats(series: pd.Series, digits: int = 4) -> np.ndarray:
    return np.round(series.to_numpy(dtype=np.float64, na_value=np.nan), digits)


def _nullable(values: np.ndarray) -> list:
    """NaN -> None (JSON null); Python floats otherwise."""
    out = values.astype(object)
    out[np.isnan(values)] = None
    return out.tolist()


def _strings(series: pd.Series) -> list:
    return series.astype(object).where(series.notna(), None).tolist()


def flag_codes(df: pd.DataFrame, threshold: float) -> np.ndarray:
    """Per-row flags: error, flagged, and model agreement at the tamper threshold
    (both models at or above it / only one / neither; n/a for errors)."""
    error = ~df["status"].eq("ok").to_numpy(dtype=bool)
    flagged = df["tampered"].fillna(False).to_numpy(dtype=bool) & ~error
    ts = df["score_two_stream"].to_numpy(dtype=np.float64, na_value=np.nan)
    wc = df["score_wcbnet"].to_numpy(dtype=np.float64, na_value=np.nan)
    ts_hi, wc_hi = ts >= threshold, wc >= threshold
    agree = np.select([ts_hi & wc_hi, ts_hi ^ wc_hi], [AGREE_BOTH, AGREE_DISAGREE], AGREE_NEITHER)
    agree[error | np.isnan(ts) | np.isnan(wc)] = AGREE_NA
    return (error * ERROR | flagged * FLAGGED | agree << 2).astype(np.uint8)


def top_flagged(df: pd.DataFrame, k: int) -> np.ndarray:
    """Positions (in report order) of the K highest-scoring flagged rows: the only rows that
    get images, so the cost of a report is bounded whatever the archive size."""
    flagged = df["tampered"].fillna(False).to_numpy(dtype=bool) & df["status"].eq("ok").to_numpy()
    return np.flatnonzero(flagged)[: max(k, 0)]


@dataclass(frozen=True)
class Summary:
    total: int
    by_status: dict[str, int]
    flagged: int
    refined: int
    errors_by_kind: dict[str, int]
    threshold: float
    hist_edges: list[float]
    hist_flagged: list[int]
    hist_clean: list[int]


def summarise(df: pd.DataFrame, threshold: float) -> Summary:
    """Counts and the score histogram (flagged and not flagged stacked), all vectorised."""
    ok = df["status"].eq("ok").to_numpy(dtype=bool)
    flagged = df["tampered"].fillna(False).to_numpy(dtype=bool) & ok
    scores = df["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    valid = ok & ~np.isnan(scores)
    clipped = np.clip(scores, 0.0, 1.0)
    hist_f = np.histogram(clipped[valid & flagged], edges)[0]
    hist_c = np.histogram(clipped[valid & ~flagged], edges)[0]
    errors = df.loc[~ok, "error"].fillna("").astype(str)
    kinds = errors.str.split(":", n=1).str[0].str.strip().replace("", "unknown")
    return Summary(
        total=len(df),
        by_status={str(k): int(v) for k, v in df["status"].fillna("?").value_counts().items()},
        flagged=int(flagged.sum()),
        refined=int(df["refined"].fillna(False).to_numpy(dtype=bool).sum()),
        errors_by_kind={str(k): int(v) for k, v in kinds.value_counts().items()},
        threshold=threshold,
        hist_edges=edges.round(4).tolist(),
        hist_flagged=hist_f.tolist(),
        hist_clean=hist_c.tolist(),
    )


def js_call(function: str, *args: Any) -> str:
    """``TamperReport.f(args);`` with JSON arguments that are safe anywhere in HTML too: ASCII
    only and no ``<`` (a URI holding ``</script>`` cannot end a script element)."""
    body = ",".join(json.dumps(a, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
                    for a in args)
    return f"TamperReport.{function}({body.replace('<', chr(92) + 'u003c')});\n"


def jpeg_findings(df: pd.DataFrame) -> list:
    """One line per row for analysts, e.g. "JPEG ijg:q90 · compressed more than once ·
    primary quality ≈ 70"; None for non-JPEG files and folders scanned before the stage."""
    tables = df["jpeg_table"].fillna("").astype(str).tolist()
    quality = df["jpeg_quality"].to_numpy(dtype=np.float64, na_value=np.nan)
    double = df["jpeg_double"].fillna(False).to_numpy(dtype=bool)
    lines: list = []
    for table, q, twice in zip(tables, quality, double, strict=True):
        if not table:
            lines.append(None)
            continue
        known = not np.isnan(q) and q >= 0
        if twice:
            lines.append(f"JPEG {table} · compressed more than once"
                         + (f" · primary quality ≈ {int(q)}" if known else ""))
        else:
            lines.append(f"JPEG {table}" + (f" · quality {int(q)}" if known else ""))
    return lines


def page_rows(df: pd.DataFrame, images: dict[int, dict]) -> list[tuple]:
    """Every row as a tuple in PAGE_FIELDS order, converted column by column (no per-row
    Python beyond the final zip)."""
    heads = np.stack([_floats(df[f"head_{b}"], 3) for b in (2, 3, 4)], axis=1)
    heads_list: list = heads.astype(object).tolist()
    for i in np.flatnonzero(np.isnan(heads).any(axis=1)):
        heads_list[i] = None
    img: list = [None] * len(df)
    for position, files in images.items():
        img[position] = files
    ints = {name: _nullable(df[name].to_numpy(dtype=np.float64, na_value=np.nan))
            for name in ("width", "height")}
    columns = [
        _strings(df["uri"]), _strings(df["status"]),
        _strings(df["error"].where(df["error"].fillna("") != "")),
        _nullable(_floats(df["score"])), _nullable(_floats(df["score_two_stream"])),
        _nullable(_floats(df["score_wcbnet"])), heads_list,
        _nullable(_floats(df["mask_fraction"])),
        [None if v is None else int(v) for v in ints["width"]],
        [None if v is None else int(v) for v in ints["height"]],
        df["refined"].fillna(False).to_numpy(dtype=bool).tolist(), img,
        _nullable(_floats(df["score_copy_move"])),  # null in folders scanned before it existed
        _nullable(_floats(df["score_jpeg"])),
        jpeg_findings(df),
    ]
    return list(zip(*columns, strict=True))


def write_data(df: pd.DataFrame, codes: np.ndarray, images: dict[int, dict], out: Path,
               chunk_rows: int, meta: dict[str, Any]) -> int:
    """Write ``out/index.js`` and ``out/page-NNNN.js``; returns the number of page files."""
    out.mkdir(parents=True, exist_ok=True)
    rows = page_rows(df, images)
    pages = (len(rows) + chunk_rows - 1) // chunk_rows
    for number in range(1, pages + 1):
        chunk = rows[(number - 1) * chunk_rows: number * chunk_rows]
        (out / page_name(number)).write_text(js_call("addPage", number, chunk), "utf-8")
    scores = df["score"].to_numpy(dtype=np.float64, na_value=np.nan)
    scaled = np.where(np.isnan(scores), -1, np.rint(np.clip(scores, 0, 1) * SCORE_SCALE))
    hex_digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    index = {
        **meta, "total": len(rows), "chunkRows": chunk_rows, "pages": pages,
        "fields": list(PAGE_FIELDS), "scoreScale": SCORE_SCALE,
        "score": scaled.astype(np.int32).tolist(),
        "flags": hex_digits[codes].tobytes().decode("ascii"),
    }
    (out / "index.js").write_text(js_call("index", index), "utf-8")
    return pages
