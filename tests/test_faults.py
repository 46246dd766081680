"""Fault injection for the bulk scan: storage crashes while reading and while writing, a model
actor killed mid-batch, a throttling S3, odd and duplicate manifest entries, a full disk.

Each case ends with the job either complete or failed with a clear message, and a re-run with
the same output (the resume path) then leaves every input URI exactly once, read back after
compaction as a user reads it. One local Ray and one SeaweedFS serve the whole module; faults
go through `tests.faultproxy` on loopback or act on processes this module started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from tamperscan.config import S3Options
from tamperscan.io import ResultSink, read_bytes, s3_filesystem
from tamperscan.pipeline import ScanResources, ScanSummary, scan
from tests.corpus import make_corpus
from tests.faultproxy import FaultPlan, FaultProxy, object_reads, part_uploads
from tests.helpers import good_images, random_weights_config, read_results
from tests.reliability_report import row_outcome
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # Ray, S3, fault proxies
RESOURCES = ScanResources(batch_size=2)  # several batches per stage even for a few images


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_config(tmp_path_factory.mktemp("weights"))


BUCKET = "faults"  # one bucket, a prefix per case: each bucket takes volume slots in SeaweedFS


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("seaweed")).start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def s3_options(endpoint: str) -> S3Options:
    # Explicit credentials: the Ray workers do not see this process's later environment.
    return S3Options(endpoint_url=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


def put_images(server: S3Server, prefix: str, count: int, seed: int) -> set[str]:
    """``count`` images under s3://faults/<prefix>/; their URIs."""
    client = server.client()
    uris = set()
    for key, data in good_images(count, seed=seed).items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=data)
        uris.add(f"s3://{BUCKET}/{prefix}/{key}")
    return uris


def write_images(folder: Path, count: int, seed: int) -> set[str]:
    uris = set()
    for key, data in good_images(count, seed=seed).items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        uris.add(str(path))
    return uris


class Background:
    """`scan` in a thread, so that the test can break things while it runs."""

    def __init__(self, *args: object) -> None:
        self.result: ScanSummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: object) -> None:
        try:
            self.result = scan(*args, show_progress=False)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 240) -> Background:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the scan hangs after the fault"
        return self


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def first_run(run: Background) -> str:
    """The first run's outcome, for the report."""
    if run.error is not None:
        reason = getattr(run.error, "reason", str(run.error).splitlines()[0])
        return f"run 1 failed ({type(run.error).__name__}): {reason}"
    assert run.result is not None
    errors = ", ".join(f"{n} {k}" for k, n in sorted(run.result.errors_by_kind.items()))
    return f"run 1 completed, {run.result.processed} rows" + (f" ({errors} errors)" if errors
                                                               else ", all ok")


def once(df, uris: set[str]) -> tuple[int, int, str]:
    """(lost, duplicated, observed text) of a final output against the expected URIs."""
    counts = Counter(df["uri"])
    lost = len(uris - set(counts))
    duplicated = sum(n - 1 for n in counts.values())
    statuses = Counter(df["status"])
    extra = len(set(counts) - uris)
    text = (f"{len(counts)} URIs, {dict(statuses)}" + (f", {extra} unexpected" if extra else ""))
    return lost, duplicated, text


def assert_every_uri_once_ok(df, uris: set[str]) -> None:
    assert sorted(df["uri"]) == sorted(uris), "every input exactly once"
    bad = df[df["status"] != "ok"]
    assert bad.empty, bad[["uri", "error"]].to_string()


def clear_message(error: BaseException) -> bool:
    """A failure message that says what failed, where, and what to do (not a bare trace)."""
    text = str(error)
    return "resume" in text and "failed" in text and len(text.splitlines()[0]) > 20


# --- S3 goes away while the scan reads ------------------------------------------------------

def test_s3_killed_mid_read_then_restarted(ray_local, weights, s3, tmp_path, reliability):
    uris = put_images(s3, "read/in", 14, seed=300)
    source, out = f"s3://{BUCKET}/read/in", str(tmp_path / "out")
    with FaultProxy(s3.s3_port, lifetime_s=240) as proxy:
        proxy.hold_after(4, object_reads)  # 4 objects read, the next reads wait at the proxy
        run = Background(source, out, weights, s3_options(proxy.endpoint), RESOURCES)
        assert proxy.wait_held(180), "the scan never got past its first reads"
        s3.stop(kill=True)  # SIGKILL while a read is in flight
        proxy.release()
        wait_until(lambda: proxy.stats.upstream_failures > 0, 30, "a read to hit the dead server")
        s3.restart(wait_for=(BUCKET, sorted(uris)[0].removeprefix(f"s3://{BUCKET}/")))
        run.join()
    first = first_run(run)
    rerun = scan(source, out, weights, s3_options(s3.endpoint), RESOURCES, show_progress=False)
    df = read_results(out)
    lost, duplicated, observed = once(df, uris)
    reliability.record(
        "S3 killed (SIGKILL) mid-read, restarted on the same port and data dir", "bulk",
        "run 1 completes (unreadable rows `io` errors) or fails clearly; re-run: all ok, once",
        f"{first}; re-run processed {rerun.processed}: {observed}", lost=lost,
        duplicated=duplicated,
        matched=(run.error is None or clear_message(run.error))
        and set(df["status"]) == {"ok"})
    assert run.error is None or clear_message(run.error), run.error
    assert_every_uri_once_ok(df, uris)
    assert rerun.skipped_done + rerun.processed == len(uris)


# --- S3 goes away while the scan writes its output ------------------------------------------

def test_s3_killed_mid_write_then_restarted(ray_local, weights, s3, tmp_path, reliability):
    uris = write_images(tmp_path / "in", 14, seed=400)
    source, out = str(tmp_path / "in"), f"s3://{BUCKET}/write/out"
    with FaultProxy(s3.s3_port, lifetime_s=240) as proxy:
        proxy.hold_after(1, part_uploads)  # one part lands, the next uploads wait
        run = Background(source, out, weights, s3_options(proxy.endpoint), RESOURCES)
        assert proxy.wait_held(180), "the scan never wrote a second part"
        s3.stop(kill=True)
        proxy.release()
        run.join()
    s3.restart()
    first = first_run(run)
    if run.error is not None:  # a failed run gives its CPUs back (pipeline.release_workers)
        wait_until(lambda: ray.available_resources().get("CPU", 0) >= 2, 30,
                   "the failed run's workers to release their CPUs")
    options = s3_options(s3.endpoint)
    rerun = scan(source, out, weights, options, RESOURCES, show_progress=False)
    df = read_results(out, s3_filesystem(options))
    lost, duplicated, observed = once(df, uris)
    reliability.record(
        "S3 killed (SIGKILL) mid-write of the output, restarted", "bulk",
        "run 1 fails clearly (or completes); re-run: all ok, once",
        f"{first}; re-run skipped {rerun.skipped_done}, processed {rerun.processed}: {observed}",
        lost=lost, duplicated=duplicated,
        matched=(run.error is None or clear_message(run.error))
        and set(df["status"]) == {"ok"})
    assert run.error is None or clear_message(run.error), run.error
    assert_every_uri_once_ok(df, uris)


# --- a model actor dies mid-batch -------------------------------------------------------------

def actor_table() -> dict[str, dict]:
    from ray._private import state  # the public state API needs the dashboard, off here

    return state.actors()


def alive_actors(name_part: str) -> list[dict]:
    return [a for a in actor_table().values()
            if name_part in a.get("ActorClassName", "") and a.get("State") == "ALIVE"]


def test_model_actor_killed_mid_batch(ray_local, weights, s3, tmp_path, reliability):
    uris = put_images(s3, "actor/in", 14, seed=500)
    source, out = f"s3://{BUCKET}/actor/in", str(tmp_path / "out")
    with FaultProxy(s3.s3_port, lifetime_s=240) as proxy:
        # On a CPU node every stage runs in the ScanWorker actors (fused layout), the reads
        # included: holding one keeps a worker busy in the middle of a batch when it is killed.
        proxy.hold_after(4, object_reads)
        run = Background(source, out, weights, s3_options(proxy.endpoint), RESOURCES)
        assert proxy.wait_held(180), "the scan never got past its first reads"
        victims = alive_actors("ScanWorker")
        assert victims, "no ScanWorker actor to kill"
        os.kill(int(victims[0]["Pid"]), signal.SIGKILL)
        wait_until(lambda: not any(a["ActorID"] == victims[0]["ActorID"]
                                   and a["Pid"] == victims[0]["Pid"]
                                   for a in alive_actors("ScanWorker")), 30, "the actor to die")
        proxy.release()
        run.join()
    restarts = actor_table()[victims[0]["ActorID"]]["NumRestarts"]
    first = first_run(run)
    rerun = scan(source, out, weights, s3_options(s3.endpoint), RESOURCES, show_progress=False)
    df = read_results(out)
    lost, duplicated, observed = once(df, uris)
    reliability.record(
        "ScanWorker actor (ray worker pid; runs both nets) SIGKILLed mid-batch", "bulk",
        "Ray restarts the actor and retries its task: run 1 completes; all ok, once",
        f"actor restarted {restarts}×; {first}; re-run skipped {rerun.skipped_done}: "
        f"{observed}", lost=lost,
        duplicated=duplicated, matched=run.error is None and set(df["status"]) == {"ok"})
    assert restarts >= 1, "the killed actor was not restarted"
    assert run.error is None, run.error
    assert_every_uri_once_ok(df, uris)


# --- a slow, throttling S3 ---------------------------------------------------------------------

def test_s3_slowdown_503_and_delays_are_retried(ray_local, weights, s3, tmp_path, reliability):
    uris = put_images(s3, "slow/in", 12, seed=600)
    tiny = next(item for item in make_corpus() if item.name == "1x1.png")
    s3.client().put_object(Bucket=BUCKET, Key="slow/in/tiny/1x1.png", Body=tiny.data)
    uris.add(f"s3://{BUCKET}/slow/in/tiny/1x1.png")  # smaller than S3's error body
    plan = FaultPlan(slowdown_probability=0.3, max_slowdowns=40, max_consecutive=2,
                     delay_probability=0.2, max_delay_s=0.2, seed=7)
    with FaultProxy(s3.s3_port, plan, lifetime_s=240) as proxy:
        options = s3_options(proxy.endpoint)
        summary = scan(f"s3://{BUCKET}/slow/in", f"s3://{BUCKET}/slow/out", weights, options,
                       RESOURCES, show_progress=False)
        df = read_results(f"s3://{BUCKET}/slow/out", s3_filesystem(options))
    stats = proxy.stats
    lost, duplicated, observed = once(df, uris)
    reliability.record(
        "S3 answers 503 SlowDown (p=0.3, at most 2 in a row) and delays up to 0.2 s", "bulk",
        "completes in one run, all ok, once (SDK + read retries)",
        f"{stats.slowdowns} SlowDowns and {stats.delays} delays in {stats.requests} requests; "
        f"{observed}", lost=lost, duplicated=duplicated,
        matched=set(df["status"]) == {"ok"} and stats.slowdowns > 0)
    assert stats.slowdowns > 0 and stats.delays > 0, stats
    assert_every_uri_once_ok(df, uris)
    assert summary.counts == {"ok": len(uris)}


def test_slowdown_on_an_object_smaller_than_the_error_body(s3, reliability):
    """pyarrow reads an object's bytes into a buffer of the object's size; S3's error answer
    to that GET does not fit in a tiny object's, and the SDK then fails without retrying
    (INTERNAL_FAILURE). `read_bytes` tries the GET again."""
    tiny = next(item for item in make_corpus() if item.name == "1x1.png").data
    s3.client().put_object(Bucket=BUCKET, Key="tiny/1x1.png", Body=tiny)
    plan = FaultPlan(slowdown_probability=1.0, max_slowdowns=1, applies_to=object_reads)
    with FaultProxy(s3.s3_port, plan, lifetime_s=60) as proxy:
        data = read_bytes(f"s3://{BUCKET}/tiny/1x1.png", 10**6, s3_options(proxy.endpoint))
    reliability.record(
        f"one 503 SlowDown on the GET of a {len(tiny)}-byte object", "bulk (read_bytes)",
        "the bytes, after a retry", f"{len(data)} bytes after {proxy.stats.slowdowns} SlowDown",
        matched=data == tiny and proxy.stats.slowdowns == 1)
    assert data == tiny and proxy.stats.slowdowns == 1


# --- odd, duplicate and hostile manifest entries -------------------------------------------------

def test_manifest_odd_keys_duplicates_and_traversal(ray_local, weights, s3, tmp_path,
                                                    reliability):
    client = s3.client()
    client.create_bucket(Bucket="private")
    images = list(good_images(9, seed=700).values())
    odd_keys = ["in/with space.jpg", "in/ünïcødé 写真.jpg", "in/100% sure.jpg",
                "in/a%20b.jpg", "in/a+b.jpg", "in/hash#tag?.jpg", "in/semi;colon,comma.jpg"]
    for key, data in zip(odd_keys, images, strict=False):
        client.put_object(Bucket=BUCKET, Key=f"odd/{key}", Body=data)
    # Objects a `..` in a key would reach instead of the named one.
    client.put_object(Bucket=BUCKET, Key="odd/secret.jpg", Body=images[7])
    client.put_object(Bucket="private", Key="secret.jpg", Body=images[8])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "elsewhere.jpg").write_bytes(images[0])
    (tmp_path / "in").mkdir()

    # uri -> (case, expected outcome)
    odd = f"s3://{BUCKET}/odd"
    cases = {f"{odd}/{key}": (f"S3 key {key!r}", "ok") for key in odd_keys}
    cases.update({
        f"{odd}/in/../secret.jpg": ("S3 key with '..' (would read s3://faults/odd/secret.jpg)",
                                      "error: bad_uri"),
        f"s3://{BUCKET}/../private/secret.jpg": ("'..' out of the bucket (would read "
                                                 "s3://private/secret.jpg)", "error: bad_uri"),
        f"{odd}/in/./with space.jpg": ("S3 key with '.'", "error: bad_uri"),
        f"{odd}/in//with space.jpg": ("S3 key with an empty segment", "error: bad_uri"),
        f"{odd}/in/missing.jpg": ("missing S3 object", "error: not_found"),
        f"{tmp_path}/in/../outside/elsewhere.jpg": (
            "local path with '../' (reads the file the path names)", "ok"),
        "../../../../../../../../etc/passwd": ("relative path traversal to /etc/passwd",
                                              "error: unsupported"),
        "http://169.254.169.254/latest/meta-data/": (
            "link-local http:// URL (a local path: never fetched)", "error: not_found"),
        f" {odd}/in/a+b.jpg": ("leading space (a local path)", "error: not_found"),
    })
    duplicate = f"{odd}/in/with space.jpg"
    entries = [*cases, duplicate, duplicate, "", None]
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"uri": pa.array(entries, pa.string())}), manifest)

    out = tmp_path / "out"
    config = weights.with_runtime(write_heatmaps=True)
    summary = scan(str(manifest), str(out), config, s3_options(s3.endpoint), RESOURCES,
                   show_progress=False)
    df = read_results(str(out))
    counts = Counter(df["uri"])
    got = {row.uri: (row_outcome(row.status, row.error), row.error) for row in df.itertuples()}
    for uri, (case, want) in cases.items():
        n = counts.get(uri, 0)
        reliability.record(case, "bulk (manifest)", want, got.get(uri, ("missing",))[0],
                           lost=int(n == 0), duplicated=max(0, n - 1), section="manifest")
    reliability.record("the same URI three times in the manifest", "bulk (manifest)",
                       "one row", f"{counts.get(duplicate, 0)} row(s)",
                       lost=int(duplicate not in counts),
                       duplicated=max(0, counts.get(duplicate, 0) - 1),
                       matched=counts.get(duplicate) == 1, section="manifest")
    heatmaps = sorted((out / "heatmaps").iterdir())
    reliability.record("heatmap file names for odd URIs", "bulk (manifest)",
                       "hashed names inside out/heatmaps",
                       f"{len(heatmaps)} files, all inside: "
                       f"{all(p.parent == out / 'heatmaps' for p in heatmaps)}",
                       matched=all(p.parent == out / "heatmaps" and len(p.stem) == 20
                                   for p in heatmaps) and len(heatmaps) > 0, section="manifest")

    assert summary.total == len(cases)
    assert sorted(df["uri"]) == sorted(cases), "one row per distinct URI; empty entries skipped"
    for uri, (case, want) in cases.items():
        assert got[uri][0] == want, (case, got[uri])
    assert "root:" not in got["../../../../../../../../etc/passwd"][1], "no file content leaks"
    assert all(p.parent == out / "heatmaps" for p in heatmaps)


# --- the output disk fills up -----------------------------------------------------------------

@contextlib.contextmanager
def small_filesystem(path: Path, free_kb: int, size_kb: int = 2048):
    """A ``size_kb`` filesystem at ``path`` (tmpfs, else a loop-mounted ext4 image, else the
    test is skipped) filled up to ``free_kb`` KiB free; yields the filler file, whose removal
    frees the space again."""
    path.mkdir()
    image = path.with_suffix(".img")
    tmpfs = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tamperscan-test", str(path)]
    done = subprocess.run(tmpfs, capture_output=True, text=True)
    if done.returncode != 0:
        reasons = [f"tmpfs: {done.stderr.strip()}"]
        subprocess.run(["truncate", "-s", f"{size_kb}k", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(image)],
                       capture_output=True)
        done = subprocess.run(["mount", "-o", "loop", str(image), str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            image.unlink(missing_ok=True)
            reasons.append(f"loop device: {done.stderr.strip()}")
            pytest.skip("the disk-full case needs a small filesystem, and mounting one is not "
                        "permitted here (root with CAP_SYS_ADMIN needed): " + "; ".join(reasons))
    try:
        stats = os.statvfs(path)
        filler = path / "filler"
        filler.write_bytes(bytes(max(0, stats.f_bfree * stats.f_frsize - free_kb * 1024)))
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        image.unlink(missing_ok=True)


def test_output_disk_full_fails_clearly_then_resumes(ray_local, weights, tmp_path,
                                                     reliability):
    uris = write_images(tmp_path / "in", 14, seed=800)
    with small_filesystem(tmp_path / "small", free_kb=40) as filler:
        out = filler.parent / "out"
        run = Background(str(tmp_path / "in"), str(out), weights, None, RESOURCES).join()
        leftovers = [p.name for p in (out / "results").iterdir() if p.name.startswith(".")]
        parts = ResultSink(str(out)).part_paths()
        rows_kept = sum(pq.read_metadata(p).num_rows for p in parts)  # each part reads whole
        filler.unlink()  # free the space, then resume into the same output
        rerun = scan(str(tmp_path / "in"), str(out), weights, None, RESOURCES,
                     show_progress=False)
        df = read_results(str(out))
    lost, duplicated, observed = once(df, uris)
    first = first_run(run)
    failed_clearly = run.error is not None and "No space left on device" in str(run.error) \
        and clear_message(run.error)
    reliability.record(
        "output filesystem full (40 KiB left)", "bulk",
        "run 1 fails with 'No space left on device' and leaves no partial part files; after "
        "freeing space the re-run completes: all ok, once",
        f"{first}; {len(parts)} whole parts ({rows_kept} rows) kept, {len(leftovers)} temp "
        f"files left; re-run skipped {rerun.skipped_done}, processed {rerun.processed}: "
        f"{observed}", lost=lost, duplicated=duplicated,
        matched=failed_clearly and not leftovers and set(df["status"]) == {"ok"})
    assert failed_clearly, run.error
    assert not leftovers, leftovers
    assert rerun.skipped_done == rows_kept
    assert_every_uri_once_ok(df, uris)
