"""On-disk cache for exported ONNX graphs, TensorRT plans and backend choices.

Exporting takes seconds and building a TensorRT plan minutes, while a pipeline starts one
engine per actor: each artefact is produced once per key, under a file lock (concurrent actors
wait instead of exporting in parallel) and published with an atomic rename (a reader never sees
a half-written file). Keys hash what changes the artefact: the weights and config for ONNX, plus
the TensorRT version, GPU and profile for plans.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tamperscan.export import MIN_OPSET, export_onnx

REDUCED_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def default_cache_dir() -> Path:
    """``$TAMPERSCAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/tamperscan`` (``~/.cache/...``)."""
    if os.environ.get("TAMPERSCAN_CACHE_DIR"):
        return Path(os.environ["TAMPERSCAN_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "tamperscan"


def digest(*parts: object) -> str:
    """Short stable hash of JSON-serialisable parts (key material for file names)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """Hash of the config and every tensor of the state dict (names, dtypes, shapes, bytes):
    the same weights give the same key whichever file or process they were loaded from."""
    sha = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        sha.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return sha.hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (POSIX flock), released on exit or process death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_file(path: Path, build: Callable[[Path], None]) -> Path:
    """Return ``path``, first calling ``build(tmp)`` to write it if it does not exist yet."""
    if path.exists():
        return path
    with file_lock(path.with_name(path.name + ".lock")):
        if path.exists():  # another process built it while we waited
            return path
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def onnx_cache_path(model: nn.Module, cache_dir: Path, input_size: int,
                    precision: str = "fp32", opset: int = MIN_OPSET) -> Path:
    """Where ``cached_onnx`` keeps this graph: one file per (weights, config, size,
    precision, opset, torch version)."""
    key = digest(model_fingerprint(model), input_size, precision, opset, torch.__version__)
    return cache_dir / "onnx" / f"{model.config.arch}-{input_size}-{precision}-{key}.onnx"


def cached_onnx(model: nn.Module, cache_dir: Path, input_size: int, precision: str = "fp32",
                opset: int = MIN_OPSET) -> Path:
    """The model's ONNX graph (dynamic batch, fixed square ``input_size``), exported on first
    use."""
    path = onnx_cache_path(model, cache_dir, input_size, precision, opset)
    if path.exists():
        return path
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = copy.deepcopy(model).cpu()  # the exporter traces with CPU example inputs

    def build(tmp: Path) -> None:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, tmp, input_size, opset=opset,
                    dtype=REDUCED_DTYPES.get(precision, torch.float32))

    return cached_file(path, build)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def update_json(path: Path, key: str, value: Mapping[str, Any]) -> None:
    """Read-modify-write one entry under the lock, published atomically."""
    with file_lock(path.with_name(path.name + ".lock")):
        data = read_json(path)
        data[key] = dict(value)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
