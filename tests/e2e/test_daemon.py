"""The daemon end to end: a real ``keysyncd run`` process against a real 3-node OpenSSH fleet.

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
SIGKILL for anything it started that outlived it: its session), and only processes these
tests started are signalled: the daemons and their leftovers, and the fleet's own sshd
session processes that one test pauses (SIGSTOP) and resumes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.e2e import waiting
from tests.e2e.waiting import EVENT_TIMEOUT, HeldHook
from tests.keystone_compat import load_keys, multifernet

pytestmark = pytest.mark.fleet

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


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Return a factory starting daemons (``start(config, *args, **kw)``); all stop at the end."""
    started: list[DaemonProcess] = []

    def start(config: Path, *args: str, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path, *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in reversed(started):
        daemon.kill()


# --- config, reports, keys -------------------------------------------------------------------


def write_config(
    fleet: Fleet, root: Path, *, ssh: dict[str, Any] | None = None, **repository: Any
) -> Path:
    """Write the controller config for every node of ``fleet`` (now); return its path.

    ``ssh`` overrides fields of the ssh section, ``repository`` those of the repository.
    The SSH timeouts are failure bounds only (no node is slow unless a test makes it so,
    and then it sets its own); keys are retired after one second (token_expiration 1) so
    frequent rotations keep the repositories small; local drift watching and periodic
    verifies are off so that only the test triggers actions.
    """
    connection = {
        "user": fleet.user,
        "identity_file": str(fleet.client_key),
        "known_hosts": str(fleet.known_hosts),
        "connect_timeout": 10,
        "operation_timeout": 10,
        "concurrency": 16,
        **(ssh or {}),
    }
    overrides = {"schedule": FAR_SCHEDULE, "token_expiration": 1, "allow_expired_window": 0}
    return fleet_config(
        fleet,
        root,
        repository={**overrides, **repository},
        ssh=connection,
        drift={"watch_local": False, "verify_interval": 3600},
    )


def init(config: Path) -> None:
    """Run ``keysyncd init`` (keys 0 and 1 on the controller and every node)."""
    result = keysyncd(config, "init")
    assert result.returncode == 0, result.stdout + result.stderr


def report_dir(config: Path) -> Path:
    return config.parent / "reports"


def state_dir(config: Path) -> Path:
    return config.parent / "state"


def reports(
    config: Path, action: str | None = None, trigger: str | None = None
) -> list[dict[str, Any]]:
    """Return the reports (of ``action`` by ``trigger``), oldest first."""
    found = []
    directory = report_dir(config)
    names = sorted(os.listdir(directory)) if directory.is_dir() else []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        try:
            document = json.loads((directory / name).read_text())
        except FileNotFoundError:  # pruned by retention meanwhile
            continue
        if (action is None or document.get("action") == action) and (
            trigger is None or document.get("trigger") == trigger
        ):
            # report schema 2 writes RFC 3339 times; the timing checks here compare seconds
            times = {key: epoch(document[key]) for key in ("started_at", "ended_at")}
            found.append({**document, **times})
    return sorted(found, key=lambda document: document["started_at"])


def epoch(value: str) -> float:
    """Return epoch seconds for a report time (``2026-11-22T20:00:00.123456Z``)."""
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def key_files(directory: Path) -> dict[int, bytes]:
    """Return {index: content} of the files keystone would load as keys."""
    return {int(p.name): p.read_bytes() for p in directory.iterdir() if p.name.isdigit()}


def assert_valid(where: str, directory: Path) -> None:
    """Assert keystone's loader accepts ``directory`` and it holds a staged key and a primary."""
    keys = key_files(directory)
    assert 0 in keys, f"{where}: no staged key 0 ({sorted(keys)})"
    assert max(keys) > 0, f"{where}: no primary ({sorted(keys)})"
    assert all(keys.values()), f"{where}: an empty key file"
    assert len(load_keys(str(directory))) == len(keys), f"{where}: keystone skipped a key"
    multifernet(str(directory))  # raises ValueError on a malformed key


def assert_nodes_match(fleet: Fleet, config: Path) -> None:
    """Assert every node holds exactly the controller's keys."""
    controller = key_files(config.parent / "keys")
    for node in fleet.nodes:
        assert key_files(node.directory) == controller, f"{node.name} differs from controller"
        assert_valid(node.name, node.directory)


def next_fire(schedule: str) -> str:
    """Return the next fire time of ``schedule`` as the daemon prints it."""
    when = next_fire_times(cron_trigger(schedule), datetime.now(UTC), 1)[0]
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_holder(config: Path) -> dict[str, Any] | None:
    """Return who holds the keysyncd lock (the lock file's record), or None."""
    try:
        text = (state_dir(config) / "lock").read_text()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


# --- 1. cron schedule ------------------------------------------------------------------------

PERIOD = 5  # seconds between fires of the schedule below
# How late after its fire time a rotation may start (report started_at, the daemon's own
# clock, against the fire time). Between the two lie APScheduler's wake-up, the hand-off to
# the worker, the preflight and the lock: milliseconds idle; the worst seen with both cores
# busy and a load average of 12 was 0.66 s. Half the period still attributes each start to
# its own fire, which is what "on time" means for a schedule.
ON_TIME = PERIOD / 2


def test_seconds_schedule_rotates_on_time(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Every 5 s: each fire gives one rotation, triggered by cron, that starts on time."""
    config = write_config(fleet, tmp_path / "ctl", schedule=f"*/{PERIOD} * * * * *")
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    rotations = wait_until(
        lambda: (found := reports(config, "rotate"))[2:] and found, "three cron rotations", daemon
    )
    assert daemon.stop() == 0
    for report in rotations:
        assert report["trigger"] == "cron", report
        assert report["outcome"] == "ok", report
    lates = [report["started_at"] % PERIOD for report in rotations]  # fires: multiples of PERIOD
    print(f"timing: rotations started {[round(late, 3) for late in lates]} s after their fires")
    assert all(late < ON_TIME for late in lates), f"started late: {lates} s after the fire"
    slots = [int(report["started_at"] // PERIOD) for report in rotations]
    assert slots == list(range(slots[0], slots[0] + len(slots))), f"fires skipped: {slots}"
    assert_nodes_match(fleet, config)


def rotations_around_reload(log: str) -> tuple[int, int]:
    """Return how many rotations the daemon logged as done before and after its reload."""
    before, reloaded, after = log.partition("configuration reloaded")
    assert reloaded, f"no reload in the log:\n{log}"
    done = re.compile(rf"rotate \(cron\) of {REPOSITORY}: ")
    return len(done.findall(before)), len(done.findall(after))


def test_slow_rotations_never_overlap_and_missed_fires_coalesce(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A rotation (2 s hook) longer than the period (1 s): back to back, never overlapping.

    Fires during a rotation collapse into one queued run: after the schedule is switched
    off (SIGHUP to a far schedule) at most that one run follows, not a backlog.
    """
    hook = 2.0  # the slowness under test, not a stand-in for an event: the hook just lasts
    config = write_config(
        fleet,
        tmp_path / "ctl",
        schedule="* * * * * *",
        hooks={"before_rotate": [f"sleep {hook:g}"]},
    )
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    wait_until(lambda: reports(config, "rotate")[2:], "3 rotations", daemon)
    write_config(
        fleet, tmp_path / "ctl", schedule=FAR_SCHEDULE, hooks={"before_rotate": [f"sleep {hook:g}"]}
    )
    mark = len(daemon.notify.messages)
    daemon.send(signal.SIGHUP)
    reloading = daemon.notify.wait("RELOADING", "1", mark, daemon=daemon)
    daemon.notify.wait("READY", "1", reloading, daemon=daemon)
    # The worker runs jobs one at a time in queue order: a sync asked for now runs after
    # whatever the old schedule had queued, so its report means that backlog has run.
    daemon.send(signal.SIGUSR2)
    wait_until(
        lambda: reports(config, "sync", "signal"), "the sync queued after the reload", daemon
    )
    assert daemon.stop() == 0
    rotations = reports(config, "rotate")
    assert all(r["trigger"] == "cron" and r["outcome"] == "ok" for r in rotations), rotations
    for before, after in itertools.pairwise(rotations):
        assert after["started_at"] >= before["ended_at"], f"overlap: {before} / {after}"
    assert all(r["ended_at"] - r["started_at"] >= hook for r in rotations), "hook did not run"
    ran, after_reload = rotations_around_reload(daemon.stderr())  # the daemon's own order
    assert ran + after_reload == len(rotations), (ran, after_reload, len(rotations))
    assert after_reload <= 1, f"{after_reload} runs after the reload: a backlog"
    # the 1 s schedule fired once per second boundary while those rotations ran
    fired = int(rotations[ran - 1]["ended_at"]) - int(rotations[0]["started_at"])
    assert ran <= fired / hook + 1, f"{ran} rotations in {fired} s cannot all last {hook} s"
    assert ran < fired, f"{fired} fires gave {ran} rotations: nothing was coalesced"
    assert_nodes_match(fleet, config)


# --- 2. systemd notify -----------------------------------------------------------------------

# WatchdogSec=1: systemd kills a service that stays silent for 1 s; the daemon pings every
# 0.5 s. Gaps are measured between the kernel's send times of the pings, so only the
# daemon's own wake-up delay counts: tens of milliseconds on a loaded 2-core machine,
# against a 0.5 s margin. The lower bound (half the interval) says it does not flood.
PINGS = 4


def test_notify_ready_status_watchdog_reload_and_stopping(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """READY=1 with STATUS and MAINPID, WATCHDOG=1 pings, RELOADING=1/READY=1, STOPPING=1."""
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config)
    ready = daemon.wait_ready()
    notify = daemon.notify
    assert ready.fields.get("MAINPID") == str(daemon.pid)
    status = ready.fields.get("STATUS") or ""
    assert f"next rotation {REPOSITORY} {next_fire(FAR_SCHEDULE)}" in status, ready
    first = notify.find("READY", "1")
    assert first is not None
    pings = [first]
    for _ in range(PINGS):
        pings.append(notify.wait("WATCHDOG", "1", pings[-1] + 1, daemon=daemon))
    times = [notify.messages[index].at for index in pings[1:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    interval = WATCHDOG_USEC / 2e6
    print(f"timing: WATCHDOG=1 gaps {[round(gap, 3) for gap in gaps]} s")
    assert all(interval / 2 < gap < 2 * interval for gap in gaps), (
        f"WATCHDOG=1 gaps {[round(gap, 3) for gap in gaps]} s; WatchdogSec=1 needs < 1 s"
    )

    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    reloading = notify.wait("RELOADING", "1", mark, daemon=daemon)
    again = notify.wait("READY", "1", reloading, daemon=daemon)
    assert "next rotation" in notify.messages[again].fields.get("STATUS", "")

    mark = len(notify.messages)
    assert daemon.stop() == 0
    notify.wait("STOPPING", "1", mark)


def test_sigint_stops_like_sigterm_and_exits_130(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Ctrl-C (a real SIGINT to the running daemon): the same graceful stop, exit 130.

    The exit-code table says 130 for an interruption; SIGTERM (systemd's stop) stays 0.
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    mark = len(daemon.notify.messages)
    daemon.send(signal.SIGINT)
    try:
        code = daemon.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"daemon did not exit within {STOP_BOUND:g}s of SIGINT:\n{daemon.stderr()}")
    assert code == 130, daemon.stderr()
    daemon.notify.wait("STOPPING", "1", mark)
    assert "Traceback" not in daemon.stderr()
    assert not (state_dir(config) / "daemon.json").exists(), "a graceful stop cleans up"


# --- 3. signals (and --log-format json) ------------------------------------------------------

# SIGUSR1 means "rotate now": its rotation starts (report started_at, the daemon's clock)
# within this long of the signal. Idle it is milliseconds (the handler wakes the worker);
# the margin covers a loaded 2-core machine many times over, and it is far below any
# schedule, so only the signal can have started it.
PROMPT = 5.0


def test_sigusr1_rotates_and_sigusr2_syncs_and_verifies(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGUSR1: a rotation report (signal) started at once; SIGUSR2: a sync and a verify report.

    Also: ``--log-format json`` logs one JSON object per stderr line, and without
    $WATCHDOG_USEC the daemon sends no WATCHDOG=1.
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config, "--log-format", "json", watchdog=False)
    ready = daemon.wait_ready()
    signalled = time.time()
    daemon.send(signal.SIGUSR1)
    rotated = wait_until(lambda: reports(config, "rotate", "signal"), "rotation", daemon)
    assert [r["outcome"] for r in rotated] == ["ok"]
    delay = rotated[0]["started_at"] - signalled
    print(f"timing: rotation started {delay:.3f} s after SIGUSR1")
    assert -0.001 <= delay < PROMPT, f"the rotation started {delay:.2f}s after SIGUSR1"
    assert_nodes_match(fleet, config)

    daemon.send(signal.SIGUSR2)
    synced = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)
    verified = wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)
    assert [r["outcome"] for r in synced + verified] == ["ok", "ok"]
    assert set(verified[0]["nodes"]) == {n.name for n in fleet.nodes}
    # An absence over time: give a watchdog the daemon should not run four of its 0.5 s
    # intervals after READY=1 (the actions above may take only a fraction of a second).
    silence = 4 * WATCHDOG_USEC / 2e6
    wait_until(lambda: time.time() > ready.at + silence, "a watchdog's pings to be due", daemon)
    mark = len(daemon.notify.messages)
    assert daemon.stop() == 0
    daemon.notify.wait("STOPPING", "1", mark)  # the last datagram: every one is in
    assert reports(config, "rotate", "cron") == []
    assert daemon.notify.find("WATCHDOG") is None

    lines = [line for line in daemon.stderr().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    documents = []
    for line in lines:
        try:
            documents.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert all({"time", "level", "logger", "message"} <= set(d) for d in documents), documents
    messages = [d["message"] for d in documents]
    assert any(m.startswith("SIGUSR1") for m in messages), messages
    assert any(m.startswith("SIGUSR2") for m in messages), messages


# --- 4. reload (and journald priority prefixes) ----------------------------------------------


def test_reload_adds_a_node_and_rejects_an_invalid_config(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGHUP with a new node: the next sync pushes to it. SIGHUP with a broken config: every
    error is logged with its path and the daemon keeps working with the previous config.

    Run as under systemd, stderr connected to the journal ($JOURNAL_STREAM names it): stderr
    lines carry ``<N>`` priorities and no time (journald adds its own).
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(
        config, env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}, journal=True
    )
    daemon.wait_ready()
    notify = daemon.notify

    new_node = fleet.add_node()
    write_config(fleet, tmp_path / "ctl")
    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    notify.wait("READY", "1", notify.wait("RELOADING", "1", mark, daemon=daemon), daemon=daemon)
    daemon.send(signal.SIGUSR2)
    sync = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)[0]
    assert sync["outcome"] == "ok", sync
    assert sync["nodes"][new_node.name]["status"] == "updated", sync["nodes"]
    assert key_files(new_node.directory) == key_files(config.parent / "keys")
    wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)

    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["max_active_keys"] = 0
    document["repositories"][0]["no_such_option"] = True
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    notify.wait("READY", "1", notify.wait("RELOADING", "1", mark, daemon=daemon), daemon=daemon)
    for path in ("repositories[0].max_active_keys", "repositories[0].no_such_option"):
        wait_until(lambda path=path: f"At '{path}'" in daemon.stderr(), path, daemon)
    daemon.send(signal.SIGUSR2)
    syncs = wait_until(lambda: reports(config, "sync", "signal")[1:], "2nd sync", daemon)
    assert syncs[-1]["outcome"] == "ok", syncs[-1]
    assert set(syncs[-1]["nodes"]) == {n.name for n in fleet.nodes}, "old config not kept"
    assert daemon.stop() == 0

    log = daemon.stderr()
    rejected = [line for line in log.splitlines() if "reload rejected: At '" in line]
    assert any("At 'repositories[0].max_active_keys'" in line for line in rejected), log
    assert any("At 'repositories[0].no_such_option'" in line for line in rejected), log
    assert all(line.startswith("<3>keysyncd") for line in rejected), rejected
    for line in filter(None, log.splitlines()):
        assert re.match(r"<[0-7]>[\w.]+: ", line), f"no priority prefix (or a timestamp): {line!r}"
    assert re.search(r"^<6>keysyncd[\w.]*: started", log, re.MULTILINE), log


# --- 5. graceful stop during a slow push -----------------------------------------------------

# How long node3 may hang before the daemon gives up on it. SIGTERM must land inside this
# window (the test reacts in milliseconds once the hang is observed; seconds spare under
# load); the stop takes about as long, since the step in flight ends at this timeout.
HANG = 6


def test_sigterm_during_a_slow_push_exits_0_and_leaves_nodes_valid(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGTERM while node3's SSH session is frozen mid-rotation: exit 0 within the bound,
    every node valid for keystone, no process of the daemon left, nothing left for us to reap.

    The before_rotate hook holds the rotation (the daemon's connections already open) while
    node3's session processes are stopped; once released, the rotation promotes locally and
    its push hangs on node3 (its inspect step, which every node must finish before phase 1)
    until the operation timeout; SIGTERM arrives during that hang.
    """
    hook = HeldHook.at(tmp_path / "hook")
    config = write_config(
        fleet,
        tmp_path / "ctl",
        ssh={"operation_timeout": HANG},
        hooks={"before_rotate": [hook.command]},
    )
    init(config)
    keys = config.parent / "keys"
    new_primary = str(max(key_files(keys)) + 1)
    ours_before = set(children_of(os.getpid()))
    daemon = daemons(config)
    daemon.wait_ready()
    seen_children: dict[int, str] = {}

    def hook_running() -> bool:
        kids = children_of(daemon.pid)
        seen_children.update({pid: stat_fields(pid)[19] for pid in kids if stat_fields(pid)})
        return bool(kids)

    node3 = fleet.node("node3")
    assert node3.pid is not None
    paused: list[int] = []
    try:
        daemon.send(signal.SIGUSR1)
        hook.wait_started("the before_rotate hook", gone=daemon.gone, context=daemon.context)
        assert hook_running(), "the hook is not the daemon's child"
        paused = descendants(node3.pid)
        assert paused, "the daemon has no open session on node3"
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        wait_until(
            lambda: all(stat_fields(pid)[:1] in (["T"], []) for pid in paused),
            "node3's session processes to stop",
            daemon,
        )
        hook.let_go()
        wait_until(lambda: not hook_running(), "the hook to finish", daemon)
        # The push is now waiting on node3: the new primary is in place locally and node3's
        # frozen session holds bytes from the daemon that it never read.
        wait_until(
            lambda: (keys / new_primary).exists() and unread_bytes(node3.port) > 0,
            "the push to hang on node3",
            daemon,
        )
        holder = lock_holder(config)
        assert holder is not None and holder["pid"] == daemon.pid, "not rotating any more"
        assert not (fleet.node("node1").directory / new_primary).exists(), "push went past"
        stopped_at = time.monotonic()
        code = daemon.stop(STOP_BOUND)
        elapsed = time.monotonic() - stopped_at
    finally:
        hook.let_go()
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert code == 0, daemon.stderr()
    assert elapsed < STOP_BOUND  # the hard-exit bound; it ends when node3's step times out
    assert seen_children, "never saw the hook process"
    for pid, started in seen_children.items():
        fields = stat_fields(pid)
        assert not fields or fields[19] != started, f"child {pid} of the daemon outlived it"
    assert session_members(daemon.pid) == set(), "processes of the daemon's session remain"
    ours_after = children_of(os.getpid())
    assert set(ours_after) <= ours_before, f"new children of the test: {ours_after}"
    assert "Z" not in ours_after.values(), f"zombies: {ours_after}"

    assert_valid("controller", keys)
    for node in fleet.nodes:
        assert_valid(node.name, node.directory)
    rotation = reports(config, "rotate", "signal")
    assert len(rotation) == 1, "the abandoned rotation was not reported"
    nodes = rotation[0]["nodes"]
    assert nodes["node3"]["status"] == "failed", nodes
    assert "abandoned: stopping" in (nodes["node1"].get("error") or ""), nodes  # SIGTERM in time
    result = keysyncd(config, "sync")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_nodes_match(fleet, config)
    print(f"timing: exit {elapsed:.2f} s after SIGTERM during the hang ({HANG} s)")


def test_sigterm_while_waiting_for_the_lock_exits_at_once(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A daemon job waiting for the lock held by a CLI rotate gives up on SIGTERM at once.

    Regression: it used to keep waiting (up to LOCK_WAIT) and was hard-exited after 30 s.
    The CLI holds the lock in its before_rotate hook until the test releases it, which it
    does only after the daemon exited: the daemon cannot have had the lock meanwhile.
    """
    hook = HeldHook.at(tmp_path / "hook")
    cli_config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook.command]})
    cli_config = Path(shutil.copy(cli_config, tmp_path / "ctl" / "cli.yaml"))
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    with subprocess.Popen(
        [sys.executable, "-m", "keysyncd", "-c", str(cli_config), "rotate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    ) as cli:

        def cli_gone() -> str | None:
            return None if cli.poll() is None else f"the CLI exited ({cli.returncode})"

        try:
            hook.wait_started("the CLI's before_rotate hook", gone=cli_gone)
            holder = lock_holder(config)
            assert holder is not None and holder["pid"] == cli.pid, holder
            daemon.send(signal.SIGUSR1)
            lock = state_dir(config) / "lock"
            wait_until(
                lambda: opened_for_writing(daemon.pid, lock),
                "the daemon's rotation to wait for the lock",
                daemon,
            )
            stopped_at = time.monotonic()
            code = daemon.stop()
            elapsed = time.monotonic() - stopped_at
            holder = lock_holder(config)
            assert holder is not None and holder["pid"] == cli.pid, "the CLI lost the lock"
            hook.let_go()
            output, _ = cli.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            hook.let_go()
            if cli.poll() is None:
                cli.kill()
    assert code == 0, daemon.stderr()
    print(f"timing: stopped {elapsed:.3f} s after SIGTERM while waiting for the lock")
    assert "not waiting for it: stopping" in daemon.stderr(), daemon.stderr()
    assert "did not finish within" not in daemon.stderr(), "hard exit: it waited for the lock"
    # The waiting job polls its stop flag every 0.1 s; 10 s is far above any delay under load
    # and far below the 30 s hard exit that waiting for the lock would end in.
    assert elapsed < 10.0, f"the stop took {elapsed:.1f}s: it waited for the CLI's lock"
    assert cli.returncode == 0, output
    assert [r["trigger"] for r in reports(config, "rotate")] == ["cli"]
    assert_nodes_match(fleet, config)


def test_hard_exit_after_the_stop_timeout_leaves_no_hook_behind(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A hook that outlasts STOP_TIMEOUT (shortened to 2 s here): the daemon exits 0 anyway
    and terminates the hook first; every node stays valid.

    The hook ignores SIGTERM, so the stop's SIGTERM to its process group does not end it and
    its SIGKILL comes GROUP_GRACE (3 s) later, after the hard exit: the hard exit ends it.
    Regression: the hard exit left the hook process running, orphaned.
    """
    stop_timeout = 2.0
    # the hook only has to outlast the stop timeout by far: it is never meant to end
    hook = ["sh", "-c", "trap '' TERM; sleep 600"]
    config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook]})
    init(config)
    daemon = daemons(config, stop_timeout=stop_timeout)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    hooks = wait_until(lambda: children_of(daemon.pid), "the before_rotate hook", daemon)
    started = {pid: stat_fields(pid)[19] for pid in hooks}
    stopped_at = time.monotonic()
    assert daemon.stop(STOP_BOUND) == 0, daemon.stderr()
    elapsed = time.monotonic() - stopped_at
    # The property is about time: the step gets stop_timeout, then the hook gets SIGTERM
    # (CHILD_GRACE 2 s before SIGKILL; it ignores SIGTERM) and the daemon exits: about 4.5 s.
    # The lower bound cannot be broken by load; 10 s leaves 7 s for scheduling delays.
    print(f"timing: hard exit {elapsed:.3f} s after SIGTERM (stop timeout {stop_timeout:g} s)")
    assert stop_timeout <= elapsed < 10.0, f"the stop took {elapsed:.1f}s"
    assert "did not finish within" in daemon.stderr(), daemon.stderr()
    for pid, start in started.items():
        fields = stat_fields(pid)
        assert not fields or fields[19] != start, f"hook {pid} outlived the daemon"
    assert session_members(daemon.pid) == set(), "processes of the daemon's session remain"
    for pid in started:  # each hook leads a process group of its own (zombies are dead)
        left = {p for p, f in processes().items() if int(f[2]) == pid and f[0] != "Z"}
        assert left == set(), f"processes of hook {pid}'s group remain"
    assert_valid("controller", config.parent / "keys")
    for node in fleet.nodes:
        assert_valid(node.name, node.directory)


# --- 6. catch-up after downtime --------------------------------------------------------------


def test_rotation_missed_while_down_is_caught_up_exactly_once(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Two scheduled times pass with no daemon: at start one catch-up rotation, no more.

    The schedule fires at two seconds of the minute just after ``init``; the daemon starts
    once both have passed, so its next regular fire is almost a minute away. Whether to
    catch up is decided before READY=1, and a sync asked for after READY=1 runs after
    everything queued at start: its report closes the window for a second catch-up.
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    journal = json.loads((state_dir(config) / "repositories" / f"{REPOSITORY}.json").read_text())
    last = int(journal["last_rotation_at"])
    schedule = f"{(last + 1) % 60},{(last + 2) % 60} * * * * *"
    write_config(fleet, tmp_path / "ctl", schedule=schedule)
    # waiting for time itself: both scheduled times must pass while no daemon runs
    wait_until(lambda: time.time() > last + 2.5, "the scheduled times to pass", timeout=10)
    after = datetime.fromtimestamp(last + 2.5, UTC)
    regular = next_fire_times(cron_trigger(schedule), after, 1)[0].timestamp()

    daemon = daemons(config)
    ready = daemon.wait_ready()
    assert "catching up once" in daemon.stderr(), daemon.stderr()
    daemon.send(signal.SIGUSR2)
    wait_until(lambda: reports(config, "sync", "signal"), "the sync queued after start", daemon)
    caught = reports(config, "rotate")
    assert [(r["trigger"], r["outcome"]) for r in caught] == [("cron", "ok")]
    # at start: after READY=1 (kernel send time), not at the next regular fire
    print(f"timing: catch-up started {caught[0]['started_at'] - ready.at:.3f} s after READY=1")
    assert ready.at <= caught[0]["started_at"] < regular, (ready.at, caught[0], regular)
    assert daemon.stop() == 0

    again = daemons(config)
    again.wait_ready()
    assert "catching up" not in again.stderr(), "a restart right after the catch-up caught up"
    again.send(signal.SIGUSR2)
    wait_until(lambda: reports(config, "sync", "signal")[1:], "the restart's sync", again)
    assert again.stop() == 0
    assert time.time() < regular, "the regular schedule may have fired: test too slow"
    assert len(reports(config, "rotate")) == 1, "caught up twice"
    assert_nodes_match(fleet, config)


# --- 7. one writer: the CLI is refused while the daemon rotates ------------------------------


def test_cli_rotate_is_refused_while_the_daemon_rotates(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """``keysyncd rotate`` during the daemon's rotation exits 1 and names the daemon.

    The daemon's rotation is held in its before_rotate hook until the CLI has been refused.
    """
    hook = HeldHook.at(tmp_path / "hook")
    config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook.command]})
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    try:
        daemon.send(signal.SIGUSR1)
        hook.wait_started(
            "the daemon's before_rotate hook", gone=daemon.gone, context=daemon.context
        )
        holder = lock_holder(config)
        assert holder is not None and holder["pid"] == daemon.pid, holder
        result = keysyncd(config, "rotate")
    finally:
        hook.let_go()
    assert result.returncode == 1, result.stdout + result.stderr
    expected = f"another keysyncd holds the lock: PID {daemon.pid} (rotate (signal)) since "
    assert expected in result.stderr, result.stderr
    done = wait_until(lambda: reports(config, "rotate"), "the daemon's rotation", daemon)
    assert daemon.stop() == 0
    assert [(r["trigger"], r["outcome"]) for r in done] == [("signal", "ok")]
    assert len(reports(config, "rotate")) == 1, "the refused CLI rotation left a report"
    assert_nodes_match(fleet, config)


# --- 8. status -------------------------------------------------------------------------------


def test_status_shows_the_running_daemon_then_not_running(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """``status`` (and --json): the daemon's PID, next rotation, last outcome; then not running."""
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    wait_until(lambda: reports(config, "rotate"), "the rotation", daemon)
    info_path = state_dir(config) / "daemon.json"
    wait_until(
        lambda: info_path.exists() and json.loads(info_path.read_text())["last_job"],
        "daemon.json to record the rotation",
        daemon,
    )
    expected_next = next_fire(FAR_SCHEDULE)

    text = keysyncd(config, "status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"daemon: running as PID {daemon.pid}" in text.stdout, text.stdout
    assert f"next rotation of {REPOSITORY}: {expected_next}" in text.stdout, text.stdout
    assert "last action: rotate (signal) ok" in text.stdout, text.stdout

    machine = keysyncd(config, "status", "--json")
    assert machine.returncode == 0, machine.stdout + machine.stderr
    info = json.loads(machine.stdout)["daemon"]
    assert info["pid"] == daemon.pid
    assert info["next_rotation"] == {REPOSITORY: expected_next}
    assert (info["last_job"]["action"], info["last_job"]["trigger"]) == ("rotate", "signal")
    assert info["last_job"]["outcome"] == "ok"

    assert daemon.stop() == 0
    stopped = keysyncd(config, "status")
    assert "daemon: not running" in stopped.stdout, stopped.stdout
    assert json.loads(keysyncd(config, "status", "--json").stdout)["daemon"] is None


# --- each repository on its own ---------------------------------------------------------------


def test_one_broken_repository_never_stops_the_others(
    tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Two repositories, the first broken (an empty staged key): on the daemon's schedule the
    second rotates every time, and the periodic check covers both, each on its own."""
    root = tmp_path / "ctl"
    root.mkdir()
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(root / "state"),
                "report_dir": str(root / "reports"),
                "repositories": [
                    {
                        "name": name,
                        "kind": kind,
                        "path": str(root / name),
                        "schedule": "*/2 * * * * *",
                        "token_expiration": 1,
                        "allow_expired_window": 0,
                    }
                    for name, kind in (
                        ("fernet-tokens", "fernet"),
                        ("credential-keys", "credential"),
                    )
                ],
                "drift": {"watch_local": False, "verify_interval": 2},
            }
        )
    )
    init(config)
    (root / "fernet-tokens" / "0").write_bytes(b"")
    daemon = daemons(config)
    daemon.wait_ready()

    def by_repository(name: str, action: str) -> list[dict[str, Any]]:
        return [r for r in reports(config, action, "cron") if r["repository"] == name]

    rotated = wait_until(
        lambda: (found := by_repository("credential-keys", "rotate"))[1:] and found,
        "two rotations of the second repository",
        daemon,
    )
    checked = wait_until(
        lambda: by_repository("fernet-tokens", "drift"), "the broken one reported", daemon
    )
    assert daemon.stop() == 0
    assert all(report["outcome"] == "ok" for report in rotated), rotated
    assert checked[0]["outcome"] == "failed" and "empty key" in " ".join(checked[0]["messages"])
    assert by_repository("fernet-tokens", "rotate") == [], "the broken one is never rotated"
    assert sorted(p.name for p in (root / "fernet-tokens").iterdir()) == ["0", "1"]
    log = daemon.stderr_path.read_text()
    assert re.search(r"rotate \(cron\) of fernet-tokens: failed", log), log[-2000:]


# --- 9. a jws repository under the daemon ----------------------------------------------------


def test_the_daemon_rotates_syncs_and_measures_a_jws_repository(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """kind jws under the daemon: SIGUSR1 gives every node a new pair, public keys first;
    SIGUSR2 syncs and verifies; the metrics textfile describes the repository and its nodes."""
    config = write_config(fleet, tmp_path / "ctl", kind="jws")
    document = yaml.safe_load(config.read_text())
    document["repositories"][0].pop("max_active_keys")
    document["metrics"] = {"textfile": str(tmp_path / "ctl" / "metrics.prom")}
    config.write_text(yaml.safe_dump(document))
    init(config)
    private = {n.name: (n.directory / "private" / "private.pem").read_bytes() for n in fleet.nodes}
    first_public = {n.name: set(os.listdir(n.directory / "public")) for n in fleet.nodes}
    assert all(len(names) == 3 for names in first_public.values()), first_public

    daemon = daemons(config)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    rotated = wait_until(lambda: reports(config, "rotate", "signal"), "the jws rotation", daemon)
    assert [r["outcome"] for r in rotated] == ["ok"], rotated
    assert set(rotated[0]["nodes"]) == {n.name for n in fleet.nodes}
    for node in fleet.nodes:
        assert (node.directory / "private" / "private.pem").read_bytes() != private[node.name]
        public = set(os.listdir(node.directory / "public"))
        assert first_public[node.name] < public, "old public keys kept while tokens may live"
    daemon.send(signal.SIGUSR2)
    synced = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)
    verified = wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)
    assert [r["outcome"] for r in synced + verified] == ["ok", "ok"]
    textfile = tmp_path / "ctl" / "metrics.prom"
    metrics = wait_until(
        lambda: textfile.exists() and textfile.read_text(), "the metrics textfile", daemon
    )
    assert daemon.stop() == 0
    assert f'keysyncd_nodes_in_sync{{repository="{REPOSITORY}"}} 3.0' in metrics, metrics
    for node in fleet.nodes:
        assert f'keysyncd_node_up{{node="{node.name}",repository="{REPOSITORY}"}} 1.0' in metrics
