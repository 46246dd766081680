"""CPU accounting from /proc: the CPU seconds of this process tree (per process, by role) and
of the whole machine over a window, so a benchmark can say where its cores went (its own work,
Ray's processes, other load, steal)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
