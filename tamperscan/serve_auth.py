"""API keys for the endpoint: where they come from and how a request's key is checked.

Keys never travel in the Serve config (it is visible on the dashboard): each ingress replica
reads them at start from ``TAMPERSCAN_API_KEYS`` (comma-separated) and/or a secrets file (one
key per line, ``#`` comments; e.g. a mounted Kubernetes secret). Rotating keys means updating
the secret and restarting the ingress replicas (``serve deploy`` again, or a rolling restart).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

KEYS_ENV = "TAMPERSCAN_API_KEYS"
KEYS_FILE_ENV = "TAMPERSCAN_API_KEYS_FILE"
MIN_KEY_LENGTH = 16


class AuthConfigError(RuntimeError):
    """The service has no usable keys and was not explicitly told to run without them."""


def _parse_file(path: Path) -> list[str]:
    keys = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


def load_api_keys(keys_file: str | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """All configured keys: the env var plus the file (``keys_file`` or the file env var).

    Short keys are refused outright: a key is the only thing between the internet and a GPU.
    """
    env = os.environ if environ is None else environ
    keys = [k.strip() for k in env.get(KEYS_ENV, "").split(",") if k.strip()]
    path = keys_file or env.get(KEYS_FILE_ENV)
    if path:
        try:
            keys += _parse_file(Path(path))
        except OSError as exc:
            raise AuthConfigError(f"cannot read API keys file {path}: {exc}") from exc
    weak = [k for k in keys if len(k) < MIN_KEY_LENGTH]
    if weak:
        raise AuthConfigError(f"{len(weak)} API key(s) shorter than {MIN_KEY_LENGTH} characters")
    return sorted(set(keys))


class KeyChecker:
    """Constant-time membership test: every key is compared, so the time taken says nothing
    about which key (or how much of one) matched."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        candidate = presented.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, candidate)
        return matched

