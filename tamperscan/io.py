"""Sources (local folders, s3:// prefixes, URI manifests) and the resumable Parquet sink.

Every input URI must appear exactly once in the output. The sink writes one Parquet part per
batch, each atomically (temp name + rename locally; a single PUT on S3 only becomes visible
when complete), so an interrupted run leaves only whole parts behind. A re-run skips URIs
already written ``ok`` and `compact` then drops rows superseded by a later, better row.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tamperscan.config import S3Options

MANIFEST_SUFFIXES = (".parquet", ".csv")
RESULTS_DIR = "results"
HEATMAPS_DIR = "heatmaps"
T = TypeVar("T")


class SourceError(OSError):
    """Reading an input failed; ``kind`` is "not_found", "too_large", "bad_uri" or "io"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def s3_filesystem(options: S3Options | None = None) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem; path-style addressing whenever an endpoint is given."""
    options = options or S3Options()
    endpoint = options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict = {
        "region": options.region or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
        "connect_timeout": 10,
        "request_timeout": 60,
    }
    if endpoint:
        # S3-compatible servers (SeaweedFS, MinIO, Ceph...) often reject or mangle the
        # aws-chunked checksums that recent AWS SDKs send by default; only checksum when the
        # API requires it. Must be in the environment before the SDK initialises here.
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
        scheme, _, host = endpoint.rpartition("://")
        kwargs["endpoint_override"] = host.rstrip("/")
        kwargs["scheme"] = scheme or "https"
    if options.access_key:
        kwargs.update(access_key=options.access_key, secret_key=options.secret_key,
                      session_token=options.session_token)
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or an s3:// URI."""
    if is_s3(uri):
        return s3_filesystem(s3), uri[len("s3://"):]
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def list_source(source: str, s3: S3Options | None = None) -> list[str]:
    """All input URIs of a source, sorted: a folder or prefix is listed recursively (every
    file, not only image extensions: bad files must show up as error rows); a ``.parquet`` or
    ``.csv`` manifest yields its ``uri`` column. Duplicates collapse: one output row each."""
    if source.endswith(MANIFEST_SUFFIXES):
        uris = read_manifest(source, s3)
    else:
        fs, root = resolve(source, s3)
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"source not found: {source}")
        if info.type == pafs.FileType.File:
            uris = [source]
        else:
            selector = pafs.FileSelector(root.rstrip("/"), recursive=True)
            prefix = "s3://" if is_s3(source) else ""
            uris = [
                prefix + f.path
                for f in fs.get_file_info(selector)
                if f.type == pafs.FileType.File and not _hidden(f.path, root)
            ]
    return sorted(set(uris))


def _hidden(path: str, root: str) -> bool:
    rel = path[len(root.rstrip("/")):].lstrip("/")
    return any(part.startswith(".") for part in rel.split("/"))


def read_manifest(manifest: str, s3: S3Options | None = None) -> list[str]:
    fs, path = resolve(manifest, s3)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f) if manifest.endswith(".parquet") else pacsv.read_csv(f)
    if "uri" not in table.column_names:
        raise ValueError(f"manifest {manifest} has no 'uri' column (columns: {table.column_names})")
    return [u for u in table.column("uri").to_pylist() if u]


def with_retries(call: Callable[[], T], attempts: int,
                 errors: tuple[type[BaseException], ...]) -> T:
    """``call()``, tried up to ``attempts`` times on ``errors`` with exponential back-off
    (0.2 s, 0.4 s, ...); the last error propagates."""
    for attempt in range(attempts - 1):
        try:
            return call()
        except errors:
            time.sleep(0.2 * 2**attempt)
    return call()


def s3_key_problem(uri: str) -> str | None:
    """Why an s3:// URI cannot be read faithfully, or None. Keys with empty, ``.`` or ``..``
    segments are refused: the HTTP client normalises them away (``s3://a/../b/k`` would
    read ``s3://b/k``), so another object would be read in the named one's place."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        return "an s3:// URI needs a bucket and a key"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "object key has an empty, '.' or '..' segment"
    return None


def read_bytes(uri: str, max_bytes: int, s3: S3Options | None = None,
               attempts: int = 3) -> bytes:
    """The original bytes of one input, refusing files larger than ``max_bytes`` before reading.

    An S3 GET that fails after the object was found is tried ``attempts`` times: the SDK
    retries throttling and network errors itself, but not all of them (an error answer
    larger than a small object's range fails as INTERNAL_FAILURE)."""
    if is_s3(uri) and (problem := s3_key_problem(uri)):
        raise SourceError("bad_uri", f"{problem}: {uri}")
    try:
        fs, path = resolve(uri, s3)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise SourceError("not_found", f"no such object: {uri}")
        if info.type != pafs.FileType.File:
            raise SourceError("not_found", f"not a file: {uri}")
        if info.size is not None and info.size > max_bytes:
            raise SourceError("too_large", f"file is {info.size} bytes, limit {max_bytes}")
    except SourceError:
        raise
    except (OSError, ValueError) as exc:
        raise SourceError("io", f"could not read {uri}: {exc}") from exc
    def read() -> bytes:
        with fs.open_input_stream(path) as f:
            return f.read(max_bytes + 1)

    try:
        data = with_retries(read, max(1, attempts) if is_s3(uri) else 1, (OSError, ValueError))
    except (OSError, ValueError) as exc:
        raise SourceError("io", f"could not read {uri}: {exc}") from exc
    if len(data) > max_bytes:
        raise SourceError("too_large", f"file is over the {max_bytes}-byte limit")
    return data


@dataclass
class ResultSink:
    """A Parquet dataset at ``out`` (local folder or s3:// prefix) written part by part."""

    out: str
    s3: S3Options | None = None

    def __post_init__(self) -> None:
        self.fs, root = resolve(self.out, self.s3)
        self.root = root.rstrip("/")
        self.results = f"{self.root}/{RESULTS_DIR}"
        self.fs.create_dir(self.results, recursive=True)

    def write_part(self, table: pa.Table, run_id: str) -> str:
        """Write one part atomically and return its path."""
        name = f"part-{run_id}-{uuid.uuid4().hex[:12]}.parquet"
        final = f"{self.results}/{name}"
        self._atomic_write(final, lambda sink: pq.write_table(table, sink, compression="zstd"))
        return final

    def write_file(self, relative: str, data: bytes) -> str:
        path = f"{self.root}/{relative}"
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        self._atomic_write(path, lambda sink: sink.write(data))
        return path

    def _atomic_write(self, final: str, write) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):
            parent, name = final.rsplit("/", 1)
            tmp = f"{parent}/.tmp-{name}"
            try:
                with self.fs.open_output_stream(tmp) as sink:
                    write(sink)
                os.replace(tmp, final)
            except BaseException:  # e.g. disk full: leave no half-written file behind
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
        else:  # S3: the object appears only when the upload completes
            buffer = io.BytesIO()
            write(buffer)
            with self.fs.open_output_stream(final) as sink:
                sink.write(buffer.getvalue())

    def part_paths(self) -> list[str]:
        selector = pafs.FileSelector(self.results, allow_not_found=True)
        return sorted(
            f.path for f in self.fs.get_file_info(selector)
            if f.path.endswith(".parquet") and not f.base_name.startswith(".")
        )

    def read_index(self, columns: Iterable[str] = ("uri", "status", "run_id")) -> pa.Table:
        """The small columns of every part, with the part path, for resume and compaction."""
        tables = []
        for path in self.part_paths():
            t = self._read_part(path, list(columns))
            tables.append(t.append_column("part", pa.array([path] * t.num_rows, pa.string())))
        if not tables:
            fields = [pa.field(c, pa.string()) for c in [*columns, "part"]]
            return pa.table({f.name: pa.array([], f.type) for f in fields})
        return pa.concat_tables(tables)

    def _read_part(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """Read one part; retried, because some S3 servers briefly serve a just-written
        object incompletely (seen with SeaweedFS under load)."""
        def read() -> pa.Table:
            with self.fs.open_input_file(path) as f:
                return pq.read_table(f, columns=columns)

        return with_retries(read, 5, (pa.ArrowInvalid, OSError))

    def done_uris(self, versions: str) -> set[str]:
        """URIs already written ``ok`` by the same weights and result-changing settings
        (``model_versions`` == ``versions``): a re-run skips them. Rows of other weights or
        settings are scanned again, and compaction keeps the new row (a later run wins):
        otherwise a re-run after new weights would silently keep the old scores."""
        index = self.read_index(("uri", "status", "run_id", "model_versions"))
        ok = index.filter(pc.and_(pc.equal(index["status"], "ok"),
                                  pc.equal(index["model_versions"], versions)))
        return set(ok.column("uri").to_pylist())

    def compact(self) -> int:
        """Drop superseded rows so each URI appears once: an ``ok`` row beats an ``error`` row,
        a later run beats an earlier one. Only parts holding superseded rows are rewritten."""
        index = self.read_index().to_pylist()
        best: dict[str, tuple] = {}
        copies: dict[tuple[str, str], int] = {}
        for row in index:
            key = (row["status"] == "ok", row["run_id"], row["part"])
            best[row["uri"]] = max(best.get(row["uri"], key), key)
            copies[row["uri"], row["part"]] = copies.get((row["uri"], row["part"]), 0) + 1
        stale = {part for (uri, part), n in copies.items() if n > 1 or best[uri][2] != part}
        dropped = 0
        for part in sorted(stale):
            table = self._read_part(part)
            kept_uris: set[str] = set()
            keep = []
            for uri in table.column("uri").to_pylist():
                keep.append(best[uri][2] == part and uri not in kept_uris)
                kept_uris.add(uri)
            kept = table.filter(pa.array(keep))
            dropped += table.num_rows - kept.num_rows
            if kept.num_rows:
                self._atomic_write(
                    part, lambda sink, t=kept: pq.write_table(t, sink, compression="zstd")
                )
            else:
                self.fs.delete_file(part)
        return dropped


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
