"""pytest plugin: what every reliability case observed, written to RELIABILITY.md.

A test takes the ``reliability`` fixture and records one row per case (a fault, a bad input
kind, an abuse attempt): where it ran (bulk scan / endpoint), what was expected, what was
observed, how many URIs were lost or duplicated. The verdict is "pass" only when the observed
outcome matched, nothing was lost or duplicated and the test itself passed; a skipped test
gets a row with its reason. Tests using the fixture carry the ``reliability`` marker
(``pytest -m reliability`` selects them).

RELIABILITY.md is (re)written at the end of a session only when it is complete, so that a
partial run cannot clobber it: every module in `MODULES` was collected, no reliability test
was deselected and every one of them ran to a result. ``TAMPERSCAN_WRITE_RELIABILITY=1``
writes it whatever ran, ``=0`` never.
"""

from __future__ import annotations

import os
import platform
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

MARK = "reliability"
FIXTURE = "reliability"
ENV = "TAMPERSCAN_WRITE_RELIABILITY"
REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "RELIABILITY.md"
#: The modules whose reliability tests make up the full set.
MODULES = ("tests/test_faults.py", "tests/test_serve_abuse.py", "tests/test_scan.py",
           "tests/test_serve.py")
COMMAND = (f"{ENV}=1 .venv/bin/pytest -m {MARK} " + " ".join(MODULES))
SECTIONS = {"fault": "Faults during a bulk scan",
            "manifest": "Odd, duplicate and hostile manifest entries (bulk scan)",
            "corpus": "Bad and odd inputs (tests/corpus.py)",
            "abuse": "Endpoint abuse"}


@dataclass
class Row:
    section: str
    case: str
    where: str
    expected: str
    observed: str
    lost: int | None
    duplicated: int | None
    matched: bool
    nodeid: str
    test_outcome: str = "passed"

    @property
    def verdict(self) -> str:
        if self.test_outcome.startswith("skipped"):
            return self.test_outcome
        if self.test_outcome != "passed":
            return f"FAIL (test {self.test_outcome})"
        if not self.matched:
            return "FAIL (unexpected outcome)"
        if self.lost or self.duplicated:
            return "FAIL (lost or duplicated URIs)"
        return "pass"


class Recorder:
    """What one test records; ``record`` may be called any number of times."""

    def __init__(self, nodeid: str, rows: list[Row]) -> None:
        self.nodeid, self._rows = nodeid, rows

    def record(self, case: str, where: str, expected: str, observed: str, *,
               lost: int | None = None, duplicated: int | None = None,
               matched: bool | None = None, section: str = "fault") -> None:
        """One case; ``matched`` defaults to ``observed == expected``."""
        self._rows.append(Row(section, case, where, expected, observed, lost, duplicated,
                              observed == expected if matched is None else matched,
                              self.nodeid))


def http_outcome(response) -> str:
    """``"413 too_large"``: status and error code of an endpoint answer."""
    try:
        code = response.json().get("error", "")
    except ValueError:
        code = "(not JSON)"
    return f"{response.status_code} {code}".strip()


def record_scan_rows(recorder: Recorder, df, expected: dict[str, tuple[str, str]], where: str,
                     section: str = "corpus") -> None:
    """One row per expected URI of a scan output ``df``: ``expected`` maps uri -> (case
    name, expected status/kind such as ``"ok"`` or ``"error: corrupt"``)."""
    counts = Counter(df["uri"])
    outcome = {row.uri: row_outcome(row.status, row.error) for row in df.itertuples()}
    for uri, (case, want) in expected.items():
        n = counts.get(uri, 0)
        recorder.record(case, where, want, outcome.get(uri, "missing"), lost=int(n == 0),
                        duplicated=max(0, n - 1), section=section)


def expected_row(item) -> str:
    """What the scan must write for a `tests.corpus.CorpusItem`: "ok" or "error: <kind>"."""
    return "ok" if item.expect == "ok" else f"error: {item.error}"


def row_outcome(status: str, error: str | None) -> str:
    return "ok" if status == "ok" else f"error: {str(error).split(':', 1)[0]}"


# --- the plugin ---------------------------------------------------------------------------

class ReliabilityPlugin:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.items: dict[str, str] = {}  # nodeid -> module path of selected reliability tests
        self.deselected = 0
        self.outcomes: dict[str, str] = {}

    @pytest.hookimpl(tryfirst=True)  # before -m selects on the marker
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if FIXTURE in getattr(item, "fixturenames", ()):
                item.add_marker(MARK)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += sum(FIXTURE in getattr(i, "fixturenames", ()) for i in items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = {item.nodeid: item.nodeid.split("::", 1)[0] for item in session.items
                      if FIXTURE in getattr(item, "fixturenames", ())}

    @pytest.fixture
    def reliability(self, request: pytest.FixtureRequest) -> Recorder:
        return Recorder(request.node.nodeid, self.rows)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.items:
            return
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            self.outcomes[report.nodeid] = f"skipped: {reason.removeprefix('Skipped: ')}"
        elif report.failed:
            self.outcomes[report.nodeid] = "failed" if report.when == "call" else "errored"
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for nodeid, outcome in self.outcomes.items():
            recorded = [r for r in self.rows if r.nodeid == nodeid]
            for row in recorded:
                row.test_outcome = outcome
            if not recorded and outcome != "passed":
                name = nodeid.split("::")[-1]
                self.rows.append(Row("fault", name, "-", "-", "-", None, None, False, nodeid,
                                     outcome))
        flag = os.environ.get(ENV, "")
        if flag == "0" or not self.items:
            return
        complete = (set(MODULES) <= set(self.items.values()) and not self.deselected
                    and set(self.items) <= set(self.outcomes))
        if flag == "1" or complete:
            OUTPUT.write_text(render(self.rows, complete))


def render(rows: list[Row], complete: bool) -> str:
    verdicts = Counter(("pass" if r.verdict == "pass" else "skipped"
                        if r.verdict.startswith("skipped") else "FAIL") for r in rows)
    lost = sum(r.lost or 0 for r in rows)
    duplicated = sum(r.duplicated or 0 for r in rows)
    import pyarrow
    import ray

    lines = [
        "# Reliability: bad input, faults and abuse",
        "",
        "Generated by the test suite (`tests/reliability_report.py`); do not edit by hand. "
        "Regenerate with:",
        "",
        f"    {COMMAND}",
        "",
        f"- generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.machine()} with {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Ray {ray.__version__}, pyarrow {pyarrow.__version__}",
        "- " + ("the full set of reliability tests ran" if complete
                else "PARTIAL RUN: some reliability tests did not run"),
        f"- {len(rows)} cases: {verdicts['pass']} pass, {verdicts['FAIL']} fail, "
        f"{verdicts['skipped']} skipped; URIs lost: {lost}, duplicated: {duplicated}",
        "",
        "Bulk rows: *lost* counts input URIs missing from the output after the re-run, "
        "*duplicated* extra rows for a URI (both after compaction, as a reader sees them). "
        "Endpoint rows show the HTTP status and the `error` code of the JSON answer.",
    ]
    for section, title in SECTIONS.items():
        chosen = [r for r in rows if r.section == section]
        if not chosen:
            continue
        first_seen: dict[str, int] = {}
        for r in chosen:
            first_seen.setdefault(r.case, len(first_seen))
        chosen.sort(key=lambda r: first_seen[r.case])  # a case's rows together (stable)
        lines += ["", f"## {title}", "",
                  "| case | where | expected | observed | lost | duplicated | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for r in chosen:
            cells = [r.case, r.where, r.expected, r.observed, _count(r.lost),
                     _count(r.duplicated), r.verdict]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}: records its outcome for RELIABILITY.md")
    config.pluginmanager.register(ReliabilityPlugin(), "tamperscan-reliability")
