"""`tamperscan report`: the data layout on 100 000 synthetic rows, and the page itself in real
headless Chromium on a real (in-process) scan of the bundled samples."""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tamperscan.cli import app
from tamperscan.config import PipelineConfig
from tamperscan.graph import analyse, build_stages
from tamperscan.render import heatmap_from_png, heatmap_png
from tamperscan.report import build_report
from tamperscan.report.build import prepare_out
from tamperscan.report.data import js_call
from tamperscan.results import OUTPUT_SCHEMA, WriteResults
from tamperscan.stages import ReadBytes
from tests.helpers import decode_png

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "images"
N_ROWS = 100_000
CHUNK = 1000
EVIL = 'evil/<script>alert("x")</script> \'quote\' & ünïcødé ☃\u2028.jpg'
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _payload(path: Path) -> object:
    """The JSON argument of a ``TamperReport.f(...);`` data file."""
    text = path.read_text("utf-8")
    start, end = text.index("(") + 1, text.rindex(")")
    body = text[start:end]
    if body.startswith(tuple("0123456789")):  # addPage(n, rows)
        number, rows = body.split(",", 1)
        return int(number), json.loads(rows)
    return json.loads(body)


def _write_parts(folder: Path, columns: dict, parts: int, run_id: str) -> None:
    table = pa.table({f.name: columns.get(f.name, pa.nulls(len(columns["uri"]), f.type))
                      for f in OUTPUT_SCHEMA}, schema=OUTPUT_SCHEMA)
    table = table.set_column(OUTPUT_SCHEMA.get_field_index("run_id"), "run_id",
                             pa.array([run_id] * table.num_rows, pa.string()))
    step = math.ceil(table.num_rows / parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{run_id}-{i}.parquet")


def synthetic_results(root: Path, n: int) -> pd.DataFrame:
    """A scan output folder with ``n`` distinct URIs written straight with pyarrow (no scan):
    3 % errors, the malicious URI on top, and one URI whose error row from an earlier run was
    never compacted away. Returns the expected rows (one per URI)."""
    rng = np.random.default_rng(0)
    folder = root / "results"
    folder.mkdir(parents=True)
    uris = [str(root / "missing" / f"img_{i:06d}.jpg") for i in range(n - 1)] + [EVIL]
    error = rng.random(n) < 0.03
    error[-1] = False
    score = rng.random(n).astype(np.float32)
    score[-1] = 1.0
    ts = np.clip(score + rng.normal(0, 0.2, n), 0, 1).astype(np.float32)
    wc = np.clip(2 * score - ts, 0, 1).astype(np.float32)
    for values in (score, ts, wc):
        values[error] = np.nan
    heads = np.repeat(wc[:, None], 3, axis=1).ravel()
    columns = {
        "uri": pa.array(uris, pa.string()),
        "status": pa.array(np.where(error, "error", "ok"), pa.string()),
        "error": pa.array(np.where(error, "corrupt: JPEG pixel data is <truncated>", ""),
                          pa.string()),
        "width": pa.array(np.full(n, 640, np.int32)), "height": pa.array(np.full(n, 480, np.int32)),
        "score": pa.array(score, from_pandas=True),
        "tampered": pa.array(~error & (score >= 0.5)),
        "score_two_stream": pa.array(ts, from_pandas=True),
        "score_wcbnet": pa.array(wc, from_pandas=True),
        "score_wcbnet_heads": pa.FixedSizeListArray.from_arrays(
            pa.array(heads, pa.float32(), from_pandas=True), 3),
        "refined": pa.array(np.zeros(n, bool)),
        # JPEG findings: every third row a JPEG, every ninth compressed twice with a region.
        "score_jpeg": pa.array(np.where(np.arange(n) % 9 == 0, 0.75, 0.0).astype(np.float32)),
        "jpeg_quality": pa.array(np.where(np.arange(n) % 3 == 0, 70, -1).astype(np.int16)),
        "jpeg_double": pa.array(np.arange(n) % 9 == 0),
        "jpeg_table": pa.array(np.where(np.arange(n) % 3 == 0, "ijg:q90", ""), pa.string()),
        "mask_fraction": pa.array(np.where(error, 0, 0.05).astype(np.float32)),
        "mask_png": pa.array([b""] * n, pa.binary()),
    }
    _write_parts(folder, columns, parts=4, run_id="run-2")
    # An earlier run's error row for a URI that is now ok: must not show twice.
    stale = {"uri": pa.array([uris[0]]), "status": pa.array(["error"]),
             "error": pa.array(["io: timeout"])}
    _write_parts(folder, stale, parts=1, run_id="run-1")
    return pd.DataFrame({"uri": uris, "status": np.where(error, "error", "ok"), "score": score,
                         "ts": ts, "wc": wc, "tampered": ~error & (score >= 0.5)})


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """100 000 rows -> report. The results folder name itself holds HTML."""
    root = tmp_path_factory.mktemp("big") / 'scan <b>"&'
    expected = synthetic_results(root, N_ROWS)
    out = root.parent / "report"
    start = time.perf_counter()
    # The synthetic rows were flagged at 0.5: the report's threshold must say the same.
    info = build_report(str(root), out, PipelineConfig(tamper_threshold=0.5), top_k=3,
                        rows_per_page=50, chunk_rows=CHUNK, workers=2)
    seconds = time.perf_counter() - start
    print(f"\n100k-row report built in {seconds:.1f} s")
    return root, expected, out, info, seconds


def _all_rows(out: Path) -> tuple[dict, list]:
    index = _payload(out / "data" / "index.js")
    rows = []
    for number in range(1, index["pages"] + 1):
        got_number, chunk = _payload(out / "data" / f"page-{number:04d}.js")
        assert got_number == number
        assert len(chunk) == (CHUNK if number < index["pages"] else index["total"] - len(rows))
        rows.extend(dict(zip(index["fields"], row, strict=True)) for row in chunk)
    return index, rows


@pytest.fixture(scope="module")
def big_rows(big):
    return _all_rows(big[2])


def test_pages_hold_every_row_once_sorted(big, big_rows):
    _, expected, out, info, _ = big
    index, rows = big_rows
    assert index["total"] == info.rows == N_ROWS
    assert index["pages"] == info.pages == math.ceil(N_ROWS / CHUNK)
    assert sorted((out / "data").glob("page-*.js"))[-1].name == f"page-{info.pages:04d}.js"
    assert len(list((out / "data").glob("page-*.js"))) == info.pages
    uris = [r["uri"] for r in rows]
    assert len(set(uris)) == len(uris) == N_ROWS
    assert set(uris) == set(expected["uri"])
    by_uri = expected.set_index("uri")
    assert rows[0]["uri"] == EVIL  # highest score
    first = next(r for r in rows if r["uri"] == expected["uri"][0])
    assert first["status"] == "ok", "the superseded error row of an earlier run must not win"

    scores = [r["score"] for r in rows]
    n_ok = int((expected["status"] == "ok").sum())
    assert all(s is not None for s in scores[:n_ok]) and all(s is None for s in scores[n_ok:])
    assert scores[:n_ok] == sorted(scores[:n_ok], reverse=True)
    for r in rows[n_ok:]:
        assert r["status"] == "error" and "corrupt" in r["error"]
    # The JPEG evidence and findings reach every row (None where the file is not a JPEG).
    number = {u: i for i, u in enumerate(expected["uri"])}
    for r in rows[:2000]:
        i = number[r["uri"]]
        assert r["jp"] == (0.75 if i % 9 == 0 else 0.0)
        assert r["jf"] == ("JPEG ijg:q90 · compressed more than once · primary quality ≈ 70"
                           if i % 9 == 0 else "JPEG ijg:q90 · quality 70" if i % 3 == 0 else None)

    # The index agrees with the rows and with the data that were written.
    flags = np.array([int(c, 16) for c in index["flags"]])
    status = np.array([r["status"] for r in rows])
    assert len(index["score"]) == len(flags) == N_ROWS
    assert ((flags & 1) == 1).tolist() == (status == "error").tolist()
    tampered = by_uri.loc[uris, "tampered"].to_numpy()
    assert ((flags & 2) == 2).tolist() == tampered.tolist()
    ts = by_uri.loc[uris, "ts"].to_numpy()
    wc = by_uri.loc[uris, "wc"].to_numpy()
    both, one = (ts >= 0.5) & (wc >= 0.5), (ts >= 0.5) ^ (wc >= 0.5)
    agree = flags >> 2
    assert (agree[status == "ok"] == np.where(both, 1, np.where(one, 2, 3))[status == "ok"]).all()
    assert (agree[status == "error"] == 0).all()
    scaled = np.rint(by_uri.loc[uris, "score"].to_numpy(np.float64) * 10_000)
    assert np.array_equal(np.array(index["score"]), np.where(np.isnan(scaled), -1, scaled))


def test_malicious_uri_is_escaped_everywhere(big, big_rows):
    root, _, out, _, _ = big
    for path in (out / "data").glob("*.js"):
        text = path.read_text("utf-8")
        assert "<" not in text and "\u2028" not in text, path
    page = (out / "index.html").read_text("utf-8")
    assert html.escape(str(root)) in page and str(root) not in page  # shown, escaped
    assert "<script>alert" not in page
    _, rows = big_rows
    top = rows[0]
    assert top["uri"] == EVIL  # survives the round trip exactly
    # Its source does not exist: a placeholder and a reason, not a crash.
    assert top["img"]["t"] is None and "not_found" in top["img"]["n"]
    assert rows[3]["img"] is None  # beyond top_k=3: no images
    assert not list((out / "img").glob("*"))  # no source readable, no mask: no figure files


def test_summary_counts_and_histogram(big):
    _, expected, out, _, _ = big
    page = (out / "index.html").read_text("utf-8")
    n_error = int((expected["status"] == "error").sum())
    assert f">{N_ROWS:,}<" in page and f">{n_error:,}<" in page
    assert f">{int(expected['tampered'].sum()):,}<" in page
    assert page.count('class="bin"') == 20
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_js_call_cannot_end_a_script_element():
    text = js_call("index", {"uri": "</script><script>x()</script>\u2028"})
    assert "</script" not in text and "\u2028" not in text
    assert json.loads(text[len("TamperReport.index("):-3]) == {
        "uri": "</script><script>x()</script>\u2028"}


def test_heatmaps_are_stored_as_values():
    heat = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    stored = decode_png(heatmap_png(heat))
    assert stored.ndim == 2 and stored.dtype == np.uint8  # greyscale levels, not colours
    assert np.abs(heatmap_from_png(heatmap_png(heat)) - heat).max() <= 0.5 / 255 + 1e-7
    colour = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    with pytest.raises(ValueError, match="colour heatmap"):  # an older scan's JET PNG
        heatmap_from_png(colour)


def test_refuses_to_clear_a_foreign_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.csv").write_text("x")
    with pytest.raises(FileExistsError):
        prepare_out(tmp_path)
    assert (tmp_path / "data" / "precious.csv").exists()


# --- end to end: a real scan, the report in real headless Chromium -------------------------


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """The bundled samples (one under a hostile name), a truncated JPEG, a text file and a
    missing file, scanned in-process with the shipped weights; then one flagged source is
    deleted, as happens in archives between a scan and its report."""
    root = tmp_path_factory.mktemp("e2e")
    inputs = root / "in"
    inputs.mkdir()
    for path in SAMPLES.iterdir():
        shutil.copyfile(path, inputs / path.name)
    shutil.move(inputs / "splice_001.jpg", inputs / 'x<img src=x onerror=alert(1)> "ü".jpg')
    (inputs / "truncated.jpg").write_bytes((SAMPLES / "splice_000.jpg").read_bytes()[:400])
    (inputs / "notes.txt").write_text("not an image")
    uris = [*sorted(str(p) for p in inputs.iterdir()), str(inputs / "gone.jpg")]
    config = PipelineConfig(runtime={"backend": "torch"})
    batch = analyse([ReadBytes(config), *build_stages(config)], {"uri": np.array(uris, object)})
    out = root / "scan"
    WriteResults(str(out), "run-e2e", write_heatmaps=True)(batch)
    df = pd.read_parquet(out / "results").sort_values(["score", "uri"], ascending=[False, True],
                                                       na_position="last")
    df = df.reset_index(drop=True)
    assert (df["status"] == "error").sum() == 3 and df["tampered"].sum() >= 2
    deleted = df["uri"][1]
    assert df["tampered"][1]
    Path(deleted).unlink()
    return out, df


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver; "
                    f"scripts/setup.sh installs them when run as root)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,2000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


ROWS_JS = """return [...document.querySelectorAll('#rows .row')].map(r => ({
  rank: +r.dataset.rank, status: r.dataset.status,
  score: r.dataset.score === '' ? null : +r.dataset.score, text: r.textContent}));"""
IMAGES_JS = """return [...document.querySelectorAll('#rows .fig img')].map(i => ({
  rank: +i.closest('.row').dataset.rank, kind: i.closest('.fig').classList[1],
  complete: i.complete, width: i.naturalWidth, placeholder: i.classList.contains('placeholder')
}));"""


def _wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def _ranks(driver) -> list[int]:
    return [r["rank"] for r in driver.execute_script(ROWS_JS)]


def _count(driver) -> str:
    return driver.find_element("id", "count").text


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _type(driver, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(value)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("TAMPERSCAN_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.slow  # a browser
def test_report_in_chromium(scanned, browser, tmp_path):
    results, df = scanned
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(results), "--out", str(out),
                                      "--rows-per-page", "5", "--top-k", "8"])
    assert result.exit_code == 0, result.output
    n = len(df)
    driver = browser
    driver.get(out.joinpath("index.html").as_uri())
    _wait(driver, lambda d: _ranks(d) == [1, 2, 3, 4, 5])
    assert _count(driver) == f"{n} of {n} rows match"
    assert driver.find_element("id", "page-info").text == f"Page 1 / {math.ceil(n / 5)}"

    # Previews: every thumbnail, heatmap and mask outline decoded; the deleted source shows
    # the placeholder and says why, its heatmap and mask (from the results) still render.
    _wait(driver, lambda d: all(i["complete"] for i in d.execute_script(IMAGES_JS)))
    images = driver.execute_script(IMAGES_JS)
    flagged = int(df["tampered"][:5].sum())  # flagged rows rank first: they have previews
    assert len(images) == 3 * flagged
    assert all(i["width"] > 0 for i in images), images
    thumbs = [i for i in images if i["kind"] == "thumb"]
    assert [i["rank"] for i in thumbs if i["placeholder"]] == [2]
    assert len([i for i in thumbs if not i["placeholder"]]) == flagged - 1
    rows = driver.execute_script(ROWS_JS)
    assert "source unreadable: not_found" in rows[1]["text"]

    # The hostile file name is shown as text and injected nothing.
    hostile = int(df.index[df["uri"].str.contains("onerror")][0]) + 1
    if hostile > 5:
        _goto(driver, f"#page={(hostile - 1) // 5 + 1}", hostile)
    row = next(r for r in driver.execute_script(ROWS_JS) if r["rank"] == hostile)
    assert 'x<img src=x onerror=alert(1)> "ü".jpg' in row["text"]
    injected = "return document.querySelectorAll('#rows img[src=x], #rows img[onerror]').length"
    assert driver.execute_script(injected) == 0
    if hostile > 5:
        _goto(driver, "", 1)
    # A JPEG row shows its findings (table fingerprint, quality) as text.
    jpeg_rank = int(df.index[df["jpeg_table"].str.startswith("ijg:")][-1]) + 1
    if jpeg_rank > 5:
        _goto(driver, f"#page={(jpeg_rank - 1) // 5 + 1}", jpeg_rank)
    row = next(r for r in driver.execute_script(ROWS_JS) if r["rank"] == jpeg_rank)
    assert f"JPEG {df['jpeg_table'][jpeg_rank - 1]}" in row["text"], row["text"]
    if jpeg_rank > 5:
        _goto(driver, "", 1)
    driver.save_screenshot(str(artifacts_dir() / "report.png"))

    # Paging forward shows the next ranks.
    driver.find_element("id", "next").click()
    _wait(driver, lambda d: _ranks(d) == [6, 7, 8, 9, 10])
    assert driver.find_element("id", "page-info").text.startswith("Page 2 /")

    # Filter: status=error -> exactly the error rows, with their error text.
    _select(driver, "f-status", "error")
    errors = df.index[df["status"] == "error"] + 1
    _wait(driver, lambda d: _ranks(d) == errors.tolist())
    assert _count(driver) == f"{len(errors)} of {n} rows match"
    texts = " ".join(r["text"] for r in driver.execute_script(ROWS_JS))
    assert "corrupt:" in texts and "unsupported:" in texts and "not_found:" in texts

    # Filter: a minimum score between the 3rd and 4th highest -> exactly the top three.
    _select(driver, "f-status", "any")
    cut = round(float(df["score"][2] + df["score"][3]) / 2, 4)
    assert df["score"][3] < cut < df["score"][2]
    _type(driver, "f-min", str(cut))
    _wait(driver, lambda d: _ranks(d) == [1, 2, 3])
    assert _count(driver) == f"3 of {n} rows match"
    assert all(r["score"] >= cut for r in driver.execute_script(ROWS_JS))


def _goto(driver, hash_: str, rank: int) -> None:
    """Open a state by URL hash (as a shared link would) and wait until ``rank`` shows."""
    driver.execute_script("location.hash = arguments[0]; location.reload();", hash_)
    _wait(driver, lambda d: rank in _ranks(d))


@pytest.mark.slow  # a browser
def test_100k_rows_filter_and_page_in_chromium(big, browser):
    _, expected, out, _, _ = big
    driver = browser
    start = time.perf_counter()
    driver.get(out.joinpath("index.html").as_uri())
    _wait(driver, lambda d: _ranks(d) == list(range(1, 51)))
    print(f"\nfirst page of {N_ROWS} rows after {time.perf_counter() - start:.1f} s")
    assert _count(driver) == f"{N_ROWS:,} of {N_ROWS:,} rows match"

    ok = expected["status"] == "ok"
    scaled = np.rint(expected["score"].to_numpy(np.float64) * 10_000)
    cases = [
        ("f-status", "error", int((~ok).sum())),
        ("f-agree", "disagree", int((ok & ((expected["ts"] >= 0.5) ^ (expected["wc"] >= 0.5)))
                                    .sum())),
        ("f-flagged", "no", int((~expected["tampered"]).sum())),  # errors are not flagged
    ]
    for element_id, value, count in cases:
        driver.find_element("id", "f-reset").click()
        _select(driver, element_id, value)
        _wait(driver, lambda d, c=count: _count(d) == f"{c:,} of {N_ROWS:,} rows match")
    driver.find_element("id", "f-reset").click()
    _type(driver, "f-min", "0.9")
    expected_min = int((scaled >= 9000).sum())
    _wait(driver, lambda d: _count(d) == f"{expected_min:,} of {N_ROWS:,} rows match")
    rows = driver.execute_script(ROWS_JS)
    assert len(rows) == 50 and all(r["score"] >= 0.9 for r in rows)

    # The last page (its own data file) holds the last ranks.
    driver.find_element("id", "f-reset").click()
    _goto(driver, "#page=400&size=250", N_ROWS)
    assert _ranks(driver)[-1] == N_ROWS
    assert driver.find_element("id", "page-info").text == "Page 400 / 400"
