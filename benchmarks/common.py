"""Shared helpers of the benchmark scripts: machine/version header, a deterministic image set,
CPU accounting from /proc, Markdown output.

Importable as ``benchmarks.common`` (the scripts put the repository root on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tamperscan.sysinfo import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "images"
#: Authentic training photos (research-only; read in place, never copied into the repo).
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "train"
#: Above this 1-minute load average a run is marked "measured while the machine was shared".
SHARED_LOAD = 1.5
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}


# -- header ---------------------------------------------------------------------------------
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


# -- CPU accounting -------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of one process from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _label(pid: int, root: int) -> str:
    """A readable role for a process: Ray's process title (``ray::MapWorker(...)``,
    ``ray::IDLE``), else the executable or script name (raylet, gcs_server, agent.py)."""
    if pid == root:
        return "driver (this script)"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return "?"
    if words[0].startswith("ray::"):
        return words[0].split(" ")[0].split(".")[0]
    names = [Path(w).name for w in words if not w.startswith("-")]
    if names and names[0].startswith("python") and len(names) > 1:
        return names[1]
    return names[0] if names else words[0]


def tree_processes(root: int | None = None) -> dict[int, tuple[str, float]]:
    """{pid: (role, CPU seconds so far)} of ``root`` (default: this process) and all its live
    descendants: with a local Ray the raylet, GCS, agents and every worker descend from the
    driver."""
    root = os.getpid() if root is None else root
    stats = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[pid] = (_label(pid, root), stats[pid][1])
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by ``root`` (default: this process) and its live descendants."""
    return sum(cpu for _, cpu in tree_processes(root).values())


def machine_cpu_seconds() -> dict[str, float]:
    """Machine-wide CPU seconds so far from /proc/stat: busy (user, nice, system, irq,
    softirq), of that ``nice`` (niced processes, e.g. a background training job), and
    ``steal`` (time the hypervisor gave this VM's CPUs to someone else)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return {"busy": float("nan"), "nice": float("nan"), "steal": float("nan")}
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / _TICK, "nice": nice / _TICK,
            "steal": steal / _TICK}


@dataclass
class CpuWindow:
    """CPU use of this process tree and of the whole machine between start() and stop()."""

    wall: float = 0.0
    tree: float = 0.0
    machine_busy: float = 0.0
    machine_nice: float = 0.0
    steal: float = 0.0

    def start(self) -> CpuWindow:
        self._t, self._tree, self._m = time.perf_counter(), tree_cpu_seconds(), \
            machine_cpu_seconds()
        return self

    def stop(self) -> CpuWindow:
        machine = machine_cpu_seconds()
        self.wall = time.perf_counter() - self._t
        self.tree = tree_cpu_seconds() - self._tree
        self.machine_busy = machine["busy"] - self._m["busy"]
        self.machine_nice = machine["nice"] - self._m["nice"]
        self.steal = machine["steal"] - self._m["steal"]
        return self

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall, "tree_cpu_s": self.tree,
                "machine_busy_cpu_s": self.machine_busy, "machine_nice_cpu_s": self.machine_nice,
                "steal_cpu_s": self.steal,
                "others_cpu_s": max(0.0, self.machine_busy - self.tree)}


class CpuSampler:
    """Samples the CPU counters of this process tree (per process) and of the machine every
    ``period`` seconds in a thread, so that the CPU use of a window known only afterwards
    can be read off. Timestamps are ``time.time()``."""

    def __init__(self, period: float = 0.5) -> None:
        import threading

        self.period = period
        self.samples: list[tuple[float, float, dict[str, float]]] = []
        self.processes: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now, processes = time.time(), tree_processes()
        self.processes.append((now, processes))
        self.samples.append((now, sum(cpu for _, cpu in processes.values()),
                             machine_cpu_seconds()))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def start(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> CpuSampler:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self

    def _process_cpu(self, t0: float, t1: float) -> dict[int, tuple[str, float]]:
        """{pid: (role, CPU seconds in [t0, t1])}: from the last sample at or before ``t0``
        (zero for a process born later) to the first sample at or after ``t1``, or, for a
        process that died before that sample (Ray Data ends its actors as soon as the last
        row is out), its last sample (an undercount of at most one period)."""
        times = [t for t, _ in self.processes]
        begin = max([i for i, t in enumerate(times) if t <= t0], default=0)
        end = min([i for i, t in enumerate(times) if t >= t1], default=len(times) - 1)
        first = self.processes[begin][1]
        last: dict[int, tuple[str, float]] = {}
        for _, procs in self.processes[begin:end + 1]:
            for pid, (role, cpu) in procs.items():
                if pid in last and role in ("ray::IDLE", "?"):
                    role = last[pid][0]  # a worker's title is IDLE between its tasks
                last[pid] = (role, cpu)
        return {pid: (role, cpu - (first[pid][1] if pid in first else 0.0))
                for pid, (role, cpu) in last.items()}

    def by_role(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds in [t0, t1] per process role (see ``_process_cpu``)."""
        roles: dict[str, float] = {}
        for role, cpu in self._process_cpu(t0, t1).values():
            roles[role] = roles.get(role, 0.0) + cpu
        return dict(sorted(roles.items(), key=lambda kv: -kv[1]))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds between two timestamps, in the form of ``CpuWindow.as_dict``: the
        process tree per process (see ``_process_cpu``), the machine interpolated."""
        times = [s[0] for s in self.samples]

        def machine(t: float) -> dict[str, float]:
            return {k: float(np.interp(t, times, [s[2][k] for s in self.samples]))
                    for k in self.samples[0][2]}

        m0, m1 = machine(t0), machine(t1)
        tree = sum(cpu for _, cpu in self._process_cpu(t0, t1).values())
        window = CpuWindow(wall=t1 - t0, tree=tree, machine_busy=m1["busy"] - m0["busy"],
                           machine_nice=m1["nice"] - m0["nice"], steal=m1["steal"] - m0["steal"])
        return window.as_dict()


# -- deterministic image set ----------------------------------------------------------------
def photo_source(kind: str = "auto", procedural_count: int = 12, seed: int = 0):
    """(name, photos) for the synthesiser: the shared authentic training photos when ``kind``
    is "shared" (or "auto" and they are present), else procedural scenes (768 x 1024)."""
    from tamperscan.train.photos import load_photo_manifest, procedural_photos

    manifest = SHARED_TRAIN / "MANIFEST.csv"
    if kind == "shared" or (kind == "auto" and manifest.is_file()):
        if not manifest.is_file():
            raise SystemExit(f"--photos shared: {manifest} not found")
        return "shared training photos (../shared/data/train)", load_photo_manifest(SHARED_TRAIN)
    if kind not in ("auto", "procedural"):
        raise SystemExit(f"unknown photo source {kind!r}")
    count = max(2, procedural_count)
    return (f"{count} procedural photos 768x1024 (tamperscan.train.photos)",
            procedural_photos(count, seed=seed, height=768, width=1024))


@dataclass(frozen=True)
class ImageSet:
    folder: Path
    paths: list[Path]
    labels: list[int]  # 1 forged, 0 authentic
    kinds: list[str]
    description: str

    @property
    def uris(self) -> list[str]:
        return [str(p) for p in self.paths]


def _synth(photos, seed: int, kinds: dict[str, float]):
    from tamperscan.train.synth import ForgerySynthesizer, SynthConfig

    config = replace(SynthConfig(), size_range=(640, 1024), kind_weights=kinds)
    return ForgerySynthesizer(photos, seed=seed, config=config)


def _write(folder: Path, index: int, sample) -> Path:
    path = folder / f"{index:04d}_{sample.kind}.{EXTENSIONS[sample.format]}"
    path.write_bytes(sample.image_bytes)
    return path


def mixed_image_set(folder: Path, count: int, photos: str = "auto", seed: int = 0,
                    with_samples: bool = True) -> ImageSet:
    """``count`` images: the bundled samples/images first (up to ``count``), then synthetic
    forgeries and authentic images (tamperscan.train.synth, the training mixture of kinds and
    formats, longer side 640-1024 px). Deterministic in (count, photos, seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels, kinds = [], [], []
    bundled = sorted(SAMPLES.iterdir()) if with_samples and SAMPLES.is_dir() else []
    for path in bundled[:count]:
        target = folder / f"sample_{path.name}"
        target.write_bytes(path.read_bytes())
        kind = path.name.rsplit("_", 1)[0]
        paths.append(target)
        labels.append(0 if kind == "authentic" else 1)
        kinds.append(kind)
    extra = count - len(paths)
    name = "none"
    if extra > 0:
        name, source = photo_source(photos, procedural_count=min(12, extra + 1), seed=seed)
        from tamperscan.train.synth import SynthConfig

        synth = _synth(source, seed, dict(SynthConfig().kind_weights))
        for index in range(extra):
            sample = synth.sample(index)
            paths.append(_write(folder, index, sample))
            labels.append(sample.label)
            kinds.append(sample.kind)
    description = (f"{len(bundled[:count])} bundled samples/images + {max(extra, 0)} synthetic "
                   f"(photos: {name}; seed {seed})")
    return ImageSet(folder, paths, labels, kinds, description)


def archive_image_set(folder: Path, count: int, forged_fraction: float = 0.05,
                      photos: str = "auto", seed: int = 0) -> ImageSet:
    """An archive that is mostly authentic: round(count * forged_fraction) synthetic forgeries
    (splice / copy-move / removal) at seeded random positions, the rest authentic images made
    by the same synthesis chain without a manipulation. Deterministic in the arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    forged_count = round(count * forged_fraction)
    name, source = photo_source(photos, procedural_count=min(12, count + 1), seed=seed)
    forged = _synth(source, seed, {"splice": 0.5, "copy_move": 0.3, "removal": 0.2})
    authentic = _synth(source, seed + 1, {"authentic": 1.0})
    positions = set(np.random.default_rng(seed).permutation(count)[:forged_count].tolist())
    paths, labels, kinds = [], [], []
    next_forged = next_authentic = 0
    for index in range(count):
        if index in positions:
            sample, next_forged = forged.sample(next_forged), next_forged + 1
        else:
            sample, next_authentic = authentic.sample(next_authentic), next_authentic + 1
        paths.append(_write(folder, index, sample))
        labels.append(sample.label)
        kinds.append(sample.kind)
    description = (f"{count} synthetic images, {forged_count} forged / {count - forged_count} "
                   f"authentic (photos: {name}; seed {seed})")
    return ImageSet(folder, paths, labels, kinds, description)


# -- output ---------------------------------------------------------------------------------
def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def finish_report(result: dict, info: dict, report: Callable[[dict], None],
                  markdown: Callable[[dict], str]) -> dict:
    """The shared tail of each script's measure(): end load average, the script's own
    plain-text report, then its Markdown section for RESULTS.md (kept in the result)."""
    info.setdefault("load_average_end", [round(v, 2) for v in load_average()])
    one, five, _ = info["load_average_end"]
    print(f"\nos.getloadavg() at end: {one:.2f} {five:.2f}")
    report(result)
    result["markdown"] = markdown(result)
    print("\n---- Markdown for benchmarks/RESULTS.md ----\n")
    print(result["markdown"])
    return result


def run_benchmark(script: str, parse_args, measure, argv: list[str] | None = None) -> dict:
    """Header, ``measure(args, info)``, optional JSON: the shared body of each script's main().
    Restores this process's torch/OpenCV thread settings, since tests call main() in-process."""
    import cv2
    import torch

    args = parse_args(argv)
    info = machine_info([sys.argv[0] if argv is None else script,
                         *(sys.argv[1:] if argv is None else argv)])
    print_header(info)
    threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        result = measure(args, info)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out_json}")
    return result
