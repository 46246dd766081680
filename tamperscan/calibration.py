"""`tamperscan calibrate`: the operating point from a false-alarm rate on authentic images.

The authentic images are scanned by the bulk scan itself (any source `scan` accepts), so the
scores are exactly those a scan of the archive will compare with the threshold; the output
is a pipeline config (``tamper_threshold`` + its ``operating_point`` record) that `scan`,
`serve`, `evaluate` and `report` take with ``--config``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow.dataset as pads
import yaml

from tamperscan.config import PipelineConfig, S3Options
from tamperscan.io import list_source, resolve
from tamperscan.operating_point import CalibrationError, OperatingPoint, operating_point
from tamperscan.provenance import weights_versions


def check_source(source: str, s3: S3Options | None = None) -> None:
    """Fail early, before a cluster starts, on a source with nothing to calibrate on."""
    try:
        uris = list_source(source, s3)
    except FileNotFoundError as exc:
        raise CalibrationError(str(exc)) from exc
    if not uris:
        raise CalibrationError(f"no files under {source}: calibration needs authentic images")


def calibrate(source: str, false_alarm_rate: float, config: PipelineConfig,
              s3: S3Options | None = None, resources=None, scan_out: str | None = None,
              show_progress: bool = True, describe: str | None = None
              ) -> tuple[PipelineConfig, OperatingPoint]:
    """Scan the authentic images under ``source`` and return ``config`` with the
    ``tamper_threshold`` at which at most ``false_alarm_rate`` of them are flagged, and the
    record. ``scan_out``: keep the calibration scan there (default: a temporary folder);
    ``describe``: what the images are, for the record (default: ``source``)."""
    from tamperscan.pipeline import scan

    check_source(source, s3)
    with tempfile.TemporaryDirectory(prefix="tamperscan-calibrate-") as tmp:
        out = scan_out or tmp
        scan(source, out, config, s3, resources, show_progress=show_progress)
        fs, root = resolve(out, s3)
        table = pads.dataset(f"{root.rstrip('/')}/results", filesystem=fs,
                             format="parquet").to_table(columns=["status", "score"])
    rows = table.to_pydict()
    scores = [s for status, s in zip(rows["status"], rows["score"], strict=True)
              if status == "ok"]
    errors = len(rows["status"]) - len(scores)
    if not scores:
        raise CalibrationError(f"none of the {errors} files under {source} decoded as an "
                               "image: calibration needs authentic images")
    threshold, point = operating_point(scores, false_alarm_rate, weights_versions(config),
                                       describe or source, errors)
    calibrated = config.model_copy(update={"tamper_threshold": threshold,
                                           "operating_point": point})
    return calibrated, point


def write_calibration(config: PipelineConfig, path: Path, base: dict | None = None) -> None:
    """The calibrated config as YAML: ``base`` (the settings the scores were made with)
    plus ``tamper_threshold`` and ``operating_point``, loadable with ``--config``."""
    data = {**(base or {}), "tamper_threshold": config.tamper_threshold,
            "operating_point": config.operating_point.model_dump(mode="json")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# tamperscan calibrate: the operating point of the settings above it\n"
                    + yaml.safe_dump(data, sort_keys=False))
