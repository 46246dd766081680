"""Endpoint abuse: schema fuzzing, oversize and slow bodies, URIs outside the allowed buckets,
hostile upload names, the API key on every route, the bad-input corpus as named uploads.

Against the real application on a local Ray Serve, over HTTP on loopback: one Serve instance
and one SeaweedFS for the module. Nothing here may reach beyond loopback: the S3 endpoint is the
local SeaweedFS, and a canary HTTP server on loopback counts any request a URI makes it get.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import ray
import requests
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from ray import serve
from schemathesis.checks import positive_data_acceptance
from starlette.routing import Route

from tamperscan.config import S3Options
from tamperscan.serve import ReplicaOptions, ServeSettings, build_app
from tamperscan.serve_api import JSON_BODY_LIMIT, build_api
from tamperscan.serve_response import DECODE_STATUS
from tests.corpus import encode, make_corpus, natural_image
from tests.helpers import random_weights_config
from tests.reliability_report import http_outcome
from tests.s3server import ACCESS_KEY, SECRET_KEY, S3Server, free_port, serve_buckets

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # Ray Serve, S3

KEY = "abuse-test-key-0123456789abcdef"
MAX_IMAGE_BYTES = 1_000_000
MAX_BODY_BYTES = 1_200_000
BODY_TIMEOUT_S = 3.0
TIMEOUT = httpx.Timeout(120.0)
#: Open by design (serve_api): liveness, and the API description unless public_docs is off.
OPEN = {"/healthz"}
DOCS = {"/docs", "/docs/oauth2-redirect", "/openapi.json"}


def jpeg(seed: int) -> bytes:
    return encode(natural_image(48, 64, seed), "JPEG", quality=88)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return random_weights_config(tmp_path_factory.mktemp("weights"), runtime={"threads": 1},
                                 max_image_bytes=MAX_IMAGE_BYTES)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = serve_buckets(tmp_path_factory.mktemp("seaweed"), jpeg(7))
    yield server
    server.stop()


class _Canary(BaseHTTPRequestHandler):
    """Answers any request with a real JPEG, and counts it: no URI may make the service call."""

    def do_GET(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        body = jpeg(1)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def canary():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def serve_settings(config, s3: S3Server, keys_file: Path, **overrides) -> ServeSettings:
    tiny = {"num_replicas": 1, "num_cpus": 0.25, "num_gpus": 0}
    return ServeSettings(
        pipeline=config, api_keys_file=str(keys_file), allowed_buckets=["allowed"],
        s3=S3Options(endpoint_url=s3.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                     region="us-east-1"),
        max_body_bytes=MAX_BODY_BYTES, max_batch_size=1, body_timeout_s=BODY_TIMEOUT_S,
        ingress=ReplicaOptions(max_ongoing_requests=8, max_queued_requests=16, **tiny),
        models=ReplicaOptions(max_ongoing_requests=2, max_queued_requests=16, **tiny),
        refine=ReplicaOptions(max_ongoing_requests=2, max_queued_requests=16, **tiny),
        **overrides)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "api-keys"
    path.write_text(f"{KEY}\n")
    return path


@pytest.fixture(scope="module")
def endpoint(config, s3, keys_file):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(serve_settings(config, s3, keys_file)), name="tamperscan",
              route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
def client(endpoint):
    with httpx.Client(base_url=endpoint, timeout=TIMEOUT, headers={"X-API-Key": KEY}) as c:
        yield c


def abuse(reliability, case: str, expected: str, observed: str, **kwargs) -> None:
    reliability.record(case, "endpoint", expected, observed, section="abuse", **kwargs)


# --- the API key on every route -----------------------------------------------------------------

class _Stub:
    """Enough of ScanService to build the app and list its routes."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings

    def key_ok(self, key: str | None) -> bool:
        return key == KEY


def routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves."""
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            found += [(method, route.path) for method in sorted(route.methods or ())
                      if method != "HEAD"]
    return sorted(found)


def test_every_route_needs_the_key_except_healthz(endpoint, config, s3, keys_file,
                                                  reliability):
    app = build_api(_Stub(serve_settings(config, s3, keys_file)))
    listed = routes(app)
    assert ("POST", "/v1/scan") in listed and ("GET", "/healthz") in listed
    live = httpx.get(f"{endpoint}/openapi.json", timeout=TIMEOUT).json()["paths"]
    assert {p for _, p in listed} - DOCS == set(live), "the deployed app has the same routes"
    with httpx.Client(base_url=endpoint, timeout=TIMEOUT) as anonymous:
        for method, path in listed:
            want = 200 if path in OPEN | DOCS else 401
            got = anonymous.request(method, path, content=jpeg(3))
            why = " (open: liveness)" if path in OPEN else " (open: public_docs)" \
                if path in DOCS else ""
            abuse(reliability, f"{method} {path} without a key", f"{want}{why}",
                  str(got.status_code), matched=got.status_code == want)
            assert got.status_code == want, (method, path, got.text[:200])
            if want == 401:
                assert got.json()["error"] == "unauthorized"
    # With public_docs off, every route but /healthz needs the key (the docs are gone).
    closed = build_api(_Stub(serve_settings(config, s3, keys_file, public_docs=False)))
    with TestClient(closed) as local:
        for method, path in routes(closed):
            got = local.request(method, path, content=b"x")
            want = 200 if path in OPEN else 401
            abuse(reliability, f"{method} {path} without a key (public_docs: false)", str(want),
                  str(got.status_code), matched=got.status_code == want)
            assert got.status_code == want, (method, path)
        for path in sorted(DOCS):
            got = local.get(path)
            abuse(reliability, f"GET {path} (public_docs: false)", "404 (removed)",
                  str(got.status_code), matched=got.status_code == 404)
            assert got.status_code == 404


# --- URIs outside the allowed buckets -------------------------------------------------------------

def test_uris_outside_the_allowed_buckets_are_refused(client, canary, reliability):
    port = canary.server_address[1]
    cases = {
        "http://127.0.0.1:{port}/photo.jpg": 422,
        "https://127.0.0.1:{port}/photo.jpg": 422,
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/": 422,
        "file:///etc/passwd": 422,
        "/etc/passwd": 422,
        "../../../../etc/passwd": 422,
        "gs://allowed/in/photo one.jpg": 422,
        "S3://allowed/in/photo one.jpg": 422,
        " s3://allowed/in/photo one.jpg": 422,
        "": 422,
        "s3://allowed": 422,
        "s3://allowed/": 422,
        "s3://allowed/../private/in/photo one.jpg": 422,
        "s3://allowed/in/../../private/in/photo one.jpg": 422,
        "s3://allowed/in/./photo one.jpg": 422,
        "s3://allowed//in/photo one.jpg": 422,
        "s3://allowed/in/photo one.jpg\x00": 422,
        "s3://private/in/photo one.jpg": 403,
        "s3://ALLOWED/in/photo one.jpg": 403,
        "s3://allowed@127.0.0.1:{port}/photo.jpg": 403,
        "s3://127.0.0.1:{port}/photo.jpg": 403,
        "s3://allowed/in/%2e%2e/%2e%2e/private/in/photo one.jpg": 404,  # a literal key
    }
    for template, want in cases.items():
        uri = template.format(port=port)
        response = client.post("/v1/scan", json={"uri": uri})
        label = template.format(port="<canary port>")
        abuse(reliability, f"uri {label!r}", f"{want} (refused)", http_outcome(response),
              matched=response.status_code == want)
        assert response.status_code == want, (uri, response.text)
        assert set(response.json()) == {"error", "detail"}
    ok = client.post("/v1/scan", json={"uri": "s3://allowed/in/photo one.jpg"})
    assert ok.status_code == 200, ok.text
    abuse(reliability, "no request reached the canary HTTP server", "0 requests",
          f"{canary.hits} requests")
    assert canary.hits == 0


# --- oversize and slow bodies -----------------------------------------------------------------

def test_oversize_bodies_get_413(endpoint, client, reliability):
    big = bytes(MAX_BODY_BYTES + 1)

    def chunks():
        for _ in range(13):
            yield bytes(100_000)

    cases = {
        "raw body over the limit (Content-Length)": dict(content=big),
        "chunked body over the limit (no Content-Length)": dict(content=chunks()),
        "multipart file over the limit": dict(files={"file": ("big.jpg", big)}),
        "JSON body over 64 KiB": dict(content=b'{"uri": "' + b"a" * JSON_BODY_LIMIT + b'"}',
                                      headers={"Content-Type": "application/json"}),
    }
    for case, kwargs in cases.items():
        observed = http_outcome(client.post("/v1/scan", **kwargs))
        abuse(reliability, case, "413 too_large", observed)
        assert observed == "413 too_large", (case, observed)
    # a Content-Length of 10 GB is refused before a byte of the body is read
    status, sent = slow_post(endpoint, "/v1/scan", {"X-API-Key": KEY}, 10**10)
    abuse(reliability, "Content-Length claims 10 GB", "413 at once",
          f"{status} after {sent} body bytes", matched=status == 413)
    assert status == 413
    assert client.get("/healthz").status_code == 200


def slow_post(endpoint: str, path: str, headers: dict[str, str], length: int,
              start: bytes = b"", interval: float = 0.25,
              bound_s: float = 60.0) -> tuple[int | None, int]:
    """POST of a ``length``-byte body: ``start`` at once, the rest trickled in (10 bytes every
    ``interval`` s) until the server answers. Returns (status of the answer, or None if none
    came within ``bound_s``; body bytes sent)."""
    host, port = endpoint.removeprefix("http://").split(":")
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {length}",
            *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sent, received = len(start), b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode() + start)
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], interval)
            if readable:
                data = sock.recv(65536)
                received += data
                if b"\r\n" in received or not data:
                    break
            elif sent < length:
                try:
                    sock.sendall(b"0123456789"[: length - sent])
                    sent += min(10, length - sent)
                except OSError:
                    break
    status = received.split(b" ", 2)[1] if received.startswith(b"HTTP/") else None
    return (int(status) if status else None), sent


def test_slow_bodies_are_cut_off_with_408(endpoint, client, reliability):
    length = 20_000  # would take ~8 minutes at this pace
    part = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")
    cases = {
        "raw body trickled 10 B / 0.25 s": ("application/octet-stream", b""),
        "multipart upload trickled": ("multipart/form-data; boundary=xyz", part),
        "JSON body trickled": ("application/json", b'{"uri": "s3://allowed/'),
    }
    results: dict[str, tuple[int | None, int]] = {}

    def send(case: str, content_type: str, start: bytes) -> None:
        results[case] = slow_post(endpoint, "/v1/scan",
                                  {"X-API-Key": KEY, "Content-Type": content_type}, length, start)

    threads = [threading.Thread(target=send, args=(case, *spec)) for case, spec in cases.items()]
    for thread in threads:  # at the same time: they must not starve each other or others
        thread.start()
    for thread in threads:
        thread.join(90)
    for case in cases:
        status, sent = results.get(case, (None, 0))
        abuse(reliability, case, f"408 before the body is complete (deadline "
              f"{BODY_TIMEOUT_S:g} s)", f"{status} after {sent} of {length} bytes",
              matched=status == 408 and sent < length)
        assert status == 408 and sent < length, (case, status, sent)
    # without a key the body is never waited for
    status, sent = slow_post(endpoint, "/v1/scan", {}, length)
    abuse(reliability, "slow body without a key", "401 at once", f"{status} after {sent} bytes",
          matched=status == 401)
    assert status == 401
    response = client.post("/v1/scan", content=jpeg(5))
    abuse(reliability, "a normal request after the slow ones", "200", str(response.status_code))
    assert response.status_code == 200, response.text


# --- names that could reach a filesystem ---------------------------------------------------------

def test_upload_names_are_never_used_as_paths(client, tmp_path, reliability):
    decoy = tmp_path / "decoy.jpg"
    decoy.write_bytes(jpeg(11))  # a different image where a hostile name points
    body = jpeg(12)
    reference = client.post("/v1/scan", files={"file": ("plain.jpg", body)}).json()
    names = [str(decoy), "../../etc/x", "/etc/passwd", "..\\..\\windows\\win.ini",
             "x/../../../../tmp/tamperscan-upload", "%2e%2e%2fetc%2fx", "a" * 1000 + ".jpg"]
    for name in names:
        response = client.post("/v1/scan", files={"file": (name, body)})
        result = response.json()
        same = response.status_code == 200 and result.get("score") == reference["score"]
        label = "<path of another image on the server>" if name == str(decoy) else name[:60]
        abuse(reliability, f"multipart filename {label!r}",
              "200 with the uploaded bytes' result; name only echoed",
              f"{response.status_code}, same result as the body: {same}", matched=same)
        assert same, (name, response.text[:300])
        assert result["source"] == name
    assert not Path("/etc/x").exists() and not Path("/tmp/tamperscan-upload").exists()
    assert decoy.read_bytes() == jpeg(11)


# --- the corpus as named uploads ------------------------------------------------------------

def test_corpus_as_named_multipart_uploads(client, reliability):
    for item in make_corpus():
        response = client.post("/v1/scan", files={"file": (item.name, item.data)})
        if item.expect == "ok":
            want = "200"
            matched = response.status_code == 200 and response.json()["source"] == item.name
        else:
            want = f"{DECODE_STATUS[item.error]} {item.error}"
            matched = http_outcome(response) == want
        reliability.record(f"corpus: {item.name}", "endpoint (multipart upload)", want,
                           http_outcome(response), matched=matched, section="corpus")
        assert matched, (item.name, response.text[:300])


# --- schema fuzzing ---------------------------------------------------------------------------

def fuzz(operation, mode) -> tuple[Counter[int], list[str]] | None:
    """Up to 25 derandomised examples of one operation in one generation mode: the answers'
    statuses and the check failures (None: the mode has no inputs, e.g. negative GET
    /healthz)."""
    statuses: Counter[int] = Counter()
    found: list[str] = []
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(session=session, headers={"X-API-Key": KEY}, timeout=120)
        statuses[response.status_code] += 1
        try:
            # Every check but "schema-valid data is accepted": OpenAPI cannot say "bytes that
            # decode as an image", so a valid-looking body that is no image gets its
            # documented 415/422.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except BaseException as exc:  # schemathesis' FailureGroup
            found.append(" ".join(str(exc).split())[:240])
            raise

    try:
        run()
    except Unsatisfiable:
        return None
    except BaseException:
        if not found:  # not a check failure: a broken test, not a finding
            raise
    return statuses, found


def test_schema_fuzzing_finds_no_server_errors(endpoint, reliability):
    """Schemathesis against the live OpenAPI spec: positive and negative examples for every
    operation (bounded, derandomised); every answer must be documented, conform to its
    schema, and none may be a 5xx."""
    schema = schemathesis.openapi.from_url(f"{endpoint}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in schemathesis.GenerationMode:
            outcome = fuzz(operation, mode)
            if outcome is None:
                continue
            statuses, found = outcome
            assert statuses, f"no request was made for {operation.label}"
            label = f"schemathesis {operation.label} ({mode.value})"
            summary = ", ".join(f"{n}× {s}" for s, n in sorted(statuses.items()))
            abuse(reliability, label, "no 5xx; status, headers and body as documented",
                  f"{summary}; " + (f"failures: {'; '.join(sorted(set(found)))}" if found
                                    else "no failures"),
                  matched=not found and not any(s >= 500 for s in statuses))
            failures += [f"{label}: {f}" for f in found]
    assert not failures, "\n".join(sorted(set(failures)))
