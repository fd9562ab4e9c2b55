"""Measuring for the scale bench: one command's wall time, CPU and peak memory, the CPU
the fleet's sshd processes spent meanwhile, the whole machine's CPU, and what machine this is.

CPU is read from the kernel, never estimated: a command's own user + system time and peak
RSS come from wait4(2); the sshd side is the sum of every node's listener sshd and the
session processes it has reaped (/proc/PID/stat utime + stime + cutime + cstime); the
machine's busy time comes from /proc/stat.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One measured run. Times in seconds, memory in MiB (0 when not measured)."""

    wall: float
    cpu: float  # the measured process(es) themselves: user + system
    sshd_cpu: float  # every sshd of the fleet, listeners and finished sessions
    machine_cpu: float  # every core's busy time (this machine is shared: includes others)
    peak_rss_mib: float = 0.0

    def per_node(self, nodes: int) -> dict[str, float]:
        """Return the CPU figures in milliseconds per node."""
        return {
            "cpu_ms": self.cpu / nodes * 1000,
            "sshd_ms": self.sshd_cpu / nodes * 1000,
            "rest_ms": max(self.machine_cpu - self.cpu, 0.0) / nodes * 1000,
        }

    def to_json(self) -> dict[str, float]:
        """Return the sample as JSON-ready values."""
        return asdict(self)


def machine_busy() -> float:
    """Return the seconds every core of this machine has been busy since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def process_cpu(pids: Iterable[int]) -> float:
    """Return the CPU seconds of ``pids`` and of the children they reaped (gone: 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def settled_cpu(pids: Sequence[int], pause: float = 0.2, limit: float = 5.0) -> float:
    """Return process_cpu(pids) once it stops growing: sessions that were just closed are
    reaped, and counted, a moment after the client is gone."""
    deadline = time.monotonic() + limit
    last = process_cpu(pids)
    while time.monotonic() < deadline:
        time.sleep(pause)
        now = process_cpu(pids)
        if now == last:
            break
        last = now
    return last


def run_command(
    argv: Sequence[str], sshd_pids: Sequence[int], env: dict[str, str], ok: Sequence[int] = (0,)
) -> Sample:
    """Run ``argv`` to its end and return its Sample; raise RuntimeError if it exits with a
    code not in ``ok``."""
    sshd_before, busy_before = process_cpu(sshd_pids), machine_busy()
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    busy = machine_busy() - busy_before
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    if process.returncode not in ok:
        tail = output.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}:\n{tail}")
    return Sample(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        sshd_cpu=settled_cpu(sshd_pids) - sshd_before,
        machine_cpu=busy,
        peak_rss_mib=usage.ru_maxrss / 1024,
    )


def run_children(work: Callable[[], None], sshd_pids: Sequence[int]) -> Sample:
    """Run ``work()`` (which starts and waits for child processes) and return its Sample;
    ``cpu`` is what those children used (RUSAGE_CHILDREN)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sshd_before, busy_before = process_cpu(sshd_pids), machine_busy()
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    busy = machine_busy() - busy_before
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return Sample(wall, cpu, settled_cpu(sshd_pids) - sshd_before, busy)


def _first_line(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return ((result.stdout or "") + (result.stderr or "")).strip().splitlines()[0]


def describe_machine() -> dict[str, Any]:
    """Return what this machine is: CPU, cores, memory, OS, kernel, and the versions of
    Python, paramiko, OpenSSH and rsync."""
    import paramiko

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release, re.MULTILINE)
    return {
        "cpu": model.group(1) if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "os": pretty.group(1) if pretty else platform.system(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "paramiko": paramiko.__version__,
        "openssh": _first_line(["ssh", "-V"]),
        "rsync": _first_line(["rsync", "--version"]) if shutil.which("rsync") else "not found",
        "load_average": os.getloadavg(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def raise_limits() -> None:
    """Let this process and its children (sshd, keysyncd) open as many files as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
