"""What every benchmark result records about where and when it was measured: date, command,
CPU, cores, RAM, library versions and the load average (a shared machine is marked)."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tamperscan.sysinfo import cpu_model

#: Above this 1-minute load average a run is marked "measured while the machine was shared".
SHARED_LOAD = 1.5


def versions() -> dict[str, str]:
    import cv2
    import onnxruntime
    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__}


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def date_string() -> str:
    """What `date` prints (falls back to UTC ISO time where there is no `date`)."""
    try:
        return subprocess.run(["date"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _short(path: str) -> str:
    """A path relative to the working directory when it lies below it (readable commands)."""
    try:
        inside = Path(os.path.abspath(path)).is_relative_to(Path.cwd())
        return os.path.relpath(path) if inside else path
    except ValueError:
        return path


def machine_info(argv: list[str] | None = None) -> dict:
    """Everything a result needs to be read later: when, where, with what, how invoked."""
    argv = sys.argv if argv is None else argv
    return {
        "date": date_string(),
        "command": shlex.join([_short(sys.executable), *argv]),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "versions": versions(),
        "load_average_start": [round(v, 2) for v in load_average()],
    }


def print_header(info: dict) -> None:
    v = info["versions"]
    print(f"date: {info['date']}")
    print(f"command: {info['command']}")
    print(f"machine: {info['cpu']} | {info['logical_cores']} logical cores | "
          f"{info['ram_gib']:.1f} GiB RAM")
    print("versions: " + " | ".join(f"{k} {v[k]}" for k in v))
    one, five, fifteen = info["load_average_start"]
    print(f"os.getloadavg() at start: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"
          + ("  -> machine shared" if one > SHARED_LOAD else ""))


def shared_note(info: dict) -> str:
    """The load remark for a Markdown section (max of the 1-minute load at start and end)."""
    loads = [info["load_average_start"][0], info.get("load_average_end", [0.0])[0]]
    worst = max(loads)
    text = f"load average {loads[0]:.2f} → {loads[1]:.2f} (1 min)"
    if worst > SHARED_LOAD:
        text += " · **measured while the machine was shared**"
    return text
