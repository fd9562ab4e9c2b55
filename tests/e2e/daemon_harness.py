"""A real ``keysyncd run`` process for the end-to-end daemon tests, driven as systemd drives it.

Each test starts ``python -m keysyncd -c CONFIG run`` with Popen, in its own session, and
talks to it only the way systemd and an operator do: signals (os.kill), a unix datagram
socket bound in tmp_path as ``$NOTIFY_SOCKET`` (with ``$WATCHDOG_USEC``; ``$WATCHDOG_PID``
is left unset), the config file and the CLI. It is judged by what it leaves behind: reports
in report_dir, key files on the nodes, notify datagrams, stderr and its exit code.

The tests wait on observable state, never on a sleep standing for an event (see
``tests/e2e/waiting.py``): a report, a notify message, a log line, the lock file's holder,
a hook that says it runs and blocks until released, the daemon's open descriptors, bytes
a frozen node never read. Every wait is bounded and its bound is a failure bound only.
The few assertions about time (the schedule fires on time, watchdog pings often enough,
a stop is prompt) use the daemon's own timestamps where there are any (report times, the
kernel's send time of each notify datagram) and say next to them why their margin holds
on a loaded 2-core machine.

Every daemon is stopped when its test ends, whatever happened (SIGTERM, then SIGKILL, and
SIGKILL for anything it started that outlived it: its session; the ``daemons`` fixture in
``tests/e2e/conftest.py``), and only processes these tests started are signalled: the
daemons and their leftovers, and the fleet's own sshd session processes that one test
pauses (SIGSTOP) and resumes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.e2e import waiting
from tests.e2e.waiting import EVENT_TIMEOUT

REPOSITORY = "fernet-tokens"


FAR_SCHEDULE = "0 0 1 1 *"  # next fire is months away: cron never interferes with a test


WATCHDOG_USEC = 1_000_000  # systemd's WatchdogSec=1: the daemon pings every 0.5 s


STOP_BOUND = 40.0  # the daemon abandons a step after 30 s (STOP_TIMEOUT) at the latest


COMMAND_TIMEOUT = 60.0


# ``python -m keysyncd`` with the daemon's STOP_TIMEOUT shortened, so that the hard exit
# after a step that does not finish can be tested in seconds instead of 30.
SHORT_STOP = (
    "import os, sys; import keysyncd.commands.daemon as daemon; "
    "daemon.STOP_TIMEOUT = float(os.environ['KEYSYNCD_TEST_STOP_TIMEOUT']); "
    "from keysyncd.commands.cli import main; sys.exit(main(sys.argv[1:]))"
)


# Linux's SO_TIMESTAMP (asm-generic; Python does not export it): the kernel stamps each
# datagram when the daemon sends it, so notify times do not include our own delays.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)


T = TypeVar("T")


# --- processes -------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """Return our environment without anything that makes a child think systemd runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    for name in ("INVOCATION_ID", "JOURNAL_STREAM", "KEYSYNCD_CONFIG", "LISTEN_PID"):
        env.pop(name, None)
    return {**env, **extra}


def keysyncd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion (bounded) and return it."""
    return subprocess.run(
        [sys.executable, "-m", "keysyncd", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
        env=clean_env(),
    )


def stat_fields(pid: int) -> list[str]:
    """Return /proc/PID/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def processes() -> dict[int, list[str]]:
    """Return the stat fields of every process (zombies included)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if fields := stat_fields(int(entry)):
            found[int(entry)] = fields
    return found


def children_of(pid: int) -> dict[int, str]:
    """Return {child PID: its state letter} for every child of ``pid``."""
    return {child: f[0] for child, f in processes().items() if int(f[1]) == pid}


def session_members(session: int) -> set[int]:
    """Return every process in ``session`` (the daemon runs as a session leader)."""
    return {pid for pid, f in processes().items() if int(f[3]) == session}


def descendants(pid: int) -> list[int]:
    """Return every process below ``pid``."""
    table = processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, f in table.items() if int(f[1]) == parent]
        found += kids
        frontier += kids
    return found


def opened_for_writing(pid: int, path: Path) -> bool:
    """Return True if process ``pid`` has ``path`` open read-write (/proc/PID/fd, fdinfo).

    The daemon opens ``state_dir/lock`` read-write only inside ``io.lock.exclusive``
    (its preflight opens it read-only, for a moment): while another process holds the
    lock, such a descriptor means the daemon's job is waiting for it.
    """
    target = str(path)
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}") != target:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{descriptor}").read_text()
        except OSError:
            continue  # closed meanwhile
        flags = re.search(r"^flags:\s*([0-7]+)$", info, re.MULTILINE)  # octal open flags
        if flags is not None and int(flags[1], 8) & os.O_ACCMODE == os.O_RDWR:
            return True
    return False


def unread_bytes(port: int) -> int:
    """Return the bytes that TCP connections to 127.0.0.1:``port`` received and no process
    has read yet (the server side's receive queues, /proc/net/tcp and tcp6).

    A node whose sshd session processes are stopped (SIGSTOP) reads nothing: bytes queued
    there are requests the daemon sent and is still waiting on.
    """
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                    total += int(queues.split(":")[1], 16)
    return total


def wait_until(
    predicate: Callable[[], T],
    what: str,
    daemon: DaemonProcess | None = None,
    timeout: float = EVENT_TIMEOUT,
) -> T:
    """Return the first truthy value of ``predicate()`` (see ``waiting.wait_until``).

    Fail at once if ``daemon`` exits meanwhile; failures show the daemon's stderr.
    """
    if daemon is None:
        return waiting.wait_until(predicate, what, timeout)
    return waiting.wait_until(predicate, what, timeout, gone=daemon.gone, context=daemon.context)


# --- systemd's side: the notify socket -------------------------------------------------------


@dataclass(frozen=True)
class Datagram:
    """One sd_notify message: when the daemon sent it (kernel time, epoch) and its fields."""

    at: float
    fields: dict[str, str]


class NotifySocket:
    """A unix datagram socket standing in for systemd's; a thread drains it at once.

    Draining matters: a datagram socket queues only ~10 messages (net.unix.max_dgram_qlen),
    after which the daemon's sendto() would block, as it would under a stalled systemd.
    Each datagram's time is the kernel's send time (SO_TIMESTAMP), not when we read it.
    """

    _numbers = itertools.count(1)

    def __init__(self, directory: Path) -> None:
        path = directory / f"notify-{next(self._numbers)}.sock"
        if len(str(path)) > 100:  # sun_path holds 108 bytes
            path = Path(tempfile.mkdtemp(prefix="ksd-")) / path.name
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        self.socket.settimeout(0.1)
        self._messages: list[Datagram] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="notify", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        timeval = struct.Struct("@ll")  # struct timeval: seconds, microseconds
        while not self._closed.is_set():
            try:
                data, ancillary, _, _ = self.socket.recvmsg(65536, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except OSError:
                return
            sent = time.time()  # only if the kernel gave no time
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                    seconds, microseconds = timeval.unpack(value[: timeval.size])
                    sent = seconds + microseconds / 1e6
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self._messages.append(Datagram(sent, fields))

    @property
    def messages(self) -> list[Datagram]:
        """Return every datagram received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def find(self, key: str, value: str | None = None, start: int = 0) -> int | None:
        """Return the index of the first datagram from ``start`` on holding ``key``(=value)."""
        for index, message in enumerate(self.messages[start:], start=start):
            if key in message.fields and (value is None or message.fields[key] == value):
                return index
        return None

    def wait(
        self,
        key: str,
        value: str | None = None,
        start: int = 0,
        *,
        daemon: DaemonProcess | None = None,
    ) -> int:
        """Return the index of the first datagram from ``start`` on with ``key``(=value)."""
        found = wait_until(
            lambda: (index + 1) if (index := self.find(key, value, start)) is not None else 0,
            f"notify {key}={value or '*'}",
            daemon,
        )
        return found - 1

    def close(self) -> None:
        """Stop draining and remove the socket."""
        self._closed.set()
        self._thread.join(timeout=2)
        self.socket.close()
        self.path.unlink(missing_ok=True)


# --- the daemon process ----------------------------------------------------------------------


class DaemonProcess:
    """One ``keysyncd run`` process, as systemd would run it (own session, notify socket)."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        *args: str,
        watchdog: bool = True,
        env: dict[str, str] | None = None,
        stop_timeout: float | None = None,
        journal: bool = False,
    ) -> None:
        """``journal``: stderr as systemd connects it to journald, named by JOURNAL_STREAM."""
        self.config = config
        self.notify = NotifySocket(workdir)
        extra = {"NOTIFY_SOCKET": str(self.notify.path), **(env or {})}
        if watchdog:
            extra["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        launcher = ["-m", "keysyncd"]
        if stop_timeout is not None:
            launcher = ["-c", SHORT_STOP]
            extra["KEYSYNCD_TEST_STOP_TIMEOUT"] = str(stop_timeout)
        self.stderr_path = Path(tempfile.mkstemp(prefix="daemon-", suffix=".log", dir=workdir)[1])
        if journal:  # systemd names the stream it connected: device and inode
            found = self.stderr_path.stat()
            extra["JOURNAL_STREAM"] = f"{found.st_dev}:{found.st_ino}"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, *launcher, "-c", str(config), "run", *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=clean_env(**extra),
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """Return the daemon's PID."""
        return self.proc.pid

    def stderr(self) -> str:
        """Return everything the daemon logged so far."""
        return self.stderr_path.read_text(errors="replace")

    def gone(self) -> str | None:
        """Return why waiting for this daemon is pointless (it exited), or None."""
        code = self.proc.poll()
        return None if code is None else f"the daemon exited ({code})"

    def context(self) -> str:
        """Return the daemon's stderr, to explain a failed wait."""
        return f"daemon stderr:\n{self.stderr()}"

    def wait_ready(self) -> Datagram:
        """Return the READY=1 datagram; fail if it does not come in time."""
        index = self.notify.wait("READY", "1", daemon=self)
        return self.notify.messages[index]

    def send(self, number: signal.Signals) -> None:
        """Send ``number`` to the daemon (which must still be running)."""
        assert self.proc.poll() is None, f"daemon already exited:\n{self.stderr()}"
        os.kill(self.pid, number)

    def stop(self, timeout: float = STOP_BOUND) -> int:
        """SIGTERM the daemon and return its exit code; fail if it takes over ``timeout``."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"daemon did not exit within {timeout:g}s of SIGTERM:\n{self.stderr()}")

    def kill(self) -> None:
        """Make sure the daemon is gone (teardown): SIGTERM, bounded wait, then SIGKILL.

        Processes it started (hooks) that outlived it are still in its session: kill them too.
        """
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(10)
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.notify.close()
