"""The processes of the test fleet: find, start and probe sshd, run tools, stop process trees.

Processes are found through /proc by the PIDs the fleet recorded, never by name, so that a
test never signals a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


class FleetUnsupported(Exception):
    """A fault or feature cannot be simulated here (the message says why)."""


def is_root() -> bool:
    """Return True when running as root (sshd options and faults differ then)."""
    return os.geteuid() == 0


def run(*args: str) -> None:
    """Run a command quietly; raise CalledProcessError if it fails, TimeoutExpired after 30 s."""
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _stat_fields(pid: int) -> list[str]:
    """Return /proc/PID/stat fields after the command name (state, ppid, ...); [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    """Return True while ``pid`` exists and is not a zombie."""
    return _stat_fields(pid)[:1] not in ([], ["Z"])


def process_tree() -> dict[int, list[int]]:
    """Return a map of PID -> child PIDs for every process in /proc (zombies included)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if fields := _stat_fields(int(entry)):
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Return the PIDs of all processes below ``pid`` (zombies included)."""
    children = process_tree() if children is None else children
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo and len(found) < 100_000:
        found.append(kid := todo.pop())
        todo.extend(children.get(kid, []))
    return found


def free_port(avoid: set[int]) -> int:
    """Return a currently free TCP port on 127.0.0.1 not in ``avoid``; raise if none is found."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
            if port not in avoid:
                return port
    raise RuntimeError("no free port found in 100 attempts")


def find_sshd() -> str:
    """Return the absolute path of sshd; raise FleetUnsupported if openssh-server is missing."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    if (found := shutil.which("sshd", path=path)) is None:
        raise FleetUnsupported("sshd not found: install openssh-server")
    return os.path.abspath(found)


def start_sshd(sshd: str, config: Path, host_key: Path, log: Path) -> subprocess.Popen[bytes]:
    """Return a new ``sshd -D`` in its own session, its output appended to ``log``."""
    cmd = [sshd, "-D", "-f", str(config), "-h", str(host_key), "-E", str(log)]
    cmd += ["-o", f"PidFile={config.parent / 'sshd.pid'}"]
    with open(log, "ab") as out:  # also catches PAM helpers' stderr
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


def wait_for_banner(proc: subprocess.Popen[bytes] | None, port: int, deadline: float) -> bool:
    """Return True once sshd ``proc`` sends an SSH banner; False if it exited or timed out."""
    while time.monotonic() < deadline:
        if proc is None or proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as s:
            if s.recv(256).startswith(b"SSH-2.0-"):
                s.sendall(b"SSH-2.0-fleet-probe\r\n")  # keeps the sshd log quiet
                return True
        time.sleep(0.02)
    return False


def keygen(path: Path, comment: str) -> None:
    """Write a new passphrase-less ed25519 key pair to ``path`` and ``path.pub``."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def terminate(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Stop ``procs`` and every process below them: SIGTERM, bounded wait, SIGKILL."""
    running = [proc for proc in procs if proc.poll() is None]
    tree = process_tree() if running else {}
    kids = [kid for proc in running for kid in descendants(proc.pid, tree)]
    for sig in (signal.SIGTERM, signal.SIGKILL):  # open sessions: sshd -D leaves them
        for pid in (kids := [pid for pid in kids if alive(pid)]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(100):
            if not any(map(alive, kids)):
                break
            time.sleep(0.01)
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
