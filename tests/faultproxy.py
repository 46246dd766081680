"""A fault-injecting HTTP proxy for the S3 tests, on loopback only.

It sits between a client (pyarrow's S3 filesystem, boto3) and the SeaweedFS S3 port of
`tests.s3server` and forwards every request unchanged, the ``Host`` header included (SigV4
signs it, so signatures stay valid), except that it can:

- answer ``503 SlowDown`` (S3's throttling error, with the XML body S3 sends) instead of
  forwarding: with probability ``slowdown_probability``, at most ``max_slowdowns`` times in
  all and at most ``max_consecutive`` times in a row for the same request (method + target),
  so a client that makes more attempts than that always gets through;
- delay requests by up to ``max_delay_s`` (with probability ``delay_probability``);
- hold requests at a gate (`hold_after`) until the test calls `release`, so a test can stop
  the server at a known point of a scan ("after the 3rd object read");
- when the server is gone, drop the client connection without an answer, as a dead server does.

Bounded: it shuts itself down after ``lifetime_s`` (and closes every client connection then),
a held request waits at most that long, and all its threads are daemons.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Match = Callable[[str, str], bool]  # (method, target incl. query) -> applies?

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "expect"}
OWN_HEADERS = {"server", "date"}  # the proxy's response writer adds these itself

SLOWDOWN_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    "<Message>Please reduce your request rate.</Message><Resource>{resource}</Resource>"
    "<RequestId>faultproxy-{n}</RequestId></Error>"
)


def any_request(method: str, target: str) -> bool:
    return True


def object_reads(method: str, target: str) -> bool:
    """GET of an object (not a listing: those carry a query and end at the bucket)."""
    path = target.split("?", 1)[0]
    return method == "GET" and path.strip("/").count("/") >= 1 and "?" not in target


def part_uploads(method: str, target: str) -> bool:
    """PUT of a result part (`ResultSink.write_part`)."""
    return method == "PUT" and "/results/part-" in target


@dataclass
class FaultPlan:
    slowdown_probability: float = 0.0
    max_slowdowns: int = 0
    max_consecutive: int = 2
    delay_probability: float = 0.0
    max_delay_s: float = 0.0
    seed: int = 0
    applies_to: Match = any_request


@dataclass
class ProxyStats:
    requests: int = 0
    forwarded: int = 0
    slowdowns: int = 0
    delays: int = 0
    held: int = 0
    upstream_failures: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


class _Gate:
    def __init__(self, after: int, match: Match) -> None:
        self.after, self.match, self.passed = after, match, 0
        self.waiting = threading.Event()  # set once a request is held
        self.open = threading.Event()


class FaultProxy:
    """`with FaultProxy(upstream_port, plan) as proxy:` then point clients at proxy.endpoint."""

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None,
                 lifetime_s: float = 300.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.plan = plan or FaultPlan()
        self.lifetime_s = lifetime_s
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._rng = random.Random(self.plan.seed)
        self._streak: dict[tuple[str, str], int] = {}
        self._gate: _Gate | None = None
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.proxy = self  # type: ignore[attr-defined]
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                 daemon=True, name="faultproxy")
        timer = threading.Timer(self.lifetime_s, self.stop)
        timer.daemon = True
        self._threads = [serve, timer]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._gate:
            self._gate.open.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test controls ------------------------------------------------------------------

    def hold_after(self, count: int, match: Match) -> None:
        """Let ``count`` matching requests through, then hold the next ones until `release`."""
        self._gate = _Gate(count, match)

    def wait_held(self, timeout: float) -> bool:
        """Whether a request reached the gate within ``timeout`` seconds."""
        return self._gate is not None and self._gate.waiting.wait(timeout)

    def release(self) -> None:
        if self._gate:
            self._gate.open.set()

    # --- called by the handler ----------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def _admit(self, method: str, target: str) -> str:
        """What to do with one request: "forward" or "slowdown" (after any hold or delay)."""
        plan, delay, gate = self.plan, 0.0, None
        with self._lock:
            self.stats.requests += 1
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
            if (self._gate and not self._gate.open.is_set()
                    and self._gate.match(method, target)):
                if self._gate.passed < self._gate.after:
                    self._gate.passed += 1
                else:
                    gate = self._gate
                    self.stats.held += 1
            applies = plan.applies_to(method, target)
            if applies and plan.max_delay_s and self._rng.random() < plan.delay_probability:
                delay = self._rng.uniform(0, plan.max_delay_s)
                self.stats.delays += 1
            key = (method, target)
            slowdown = (applies and self.stats.slowdowns < plan.max_slowdowns
                        and self._streak.get(key, 0) < plan.max_consecutive
                        and self._rng.random() < plan.slowdown_probability)
            if slowdown:
                self.stats.slowdowns += 1
                self._streak[key] = self._streak.get(key, 0) + 1
            else:
                self._streak.pop(key, None)
        if gate is not None:
            gate.waiting.set()
            gate.open.wait(self.lifetime_s)
        if delay:
            self._stopped.wait(delay)
        return "slowdown" if slowdown else "forward"

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body if body or method in ("PUT", "POST") else None)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.proxy._track(self.connection, False)  # type: ignore[attr-defined]
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        method, target = self.command, self.path
        body = self._body()
        if proxy._admit(method, target) == "slowdown":
            n = proxy.stats.slowdowns
            xml = SLOWDOWN_XML.format(resource=target.split("?", 1)[0], n=n).encode()
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(xml)
            return
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        try:
            status, reason, out_headers, data = proxy._forward(method, target, headers, body)
        except OSError:  # the server is gone: so is the answer
            with proxy._lock:
                proxy.stats.upstream_failures += 1
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        with proxy._lock:
            proxy.stats.forwarded += 1
        try:
            self._answer(method, status, reason, out_headers, data)
        except OSError:  # the client went away meanwhile (e.g. a killed Ray worker)
            self.close_connection = True

    def _answer(self, method: str, status: int, reason: str, out_headers: list[tuple[str, str]],
                data: bytes) -> None:
        self.send_response(status, reason)
        for name, value in out_headers:
            low = name.lower()
            if low in HOP_BY_HOP or low in OWN_HEADERS or (
                    low == "content-length" and method != "HEAD"):
                continue
            self.send_header(name, value)
        if method != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD" and status not in (204, 304):
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
