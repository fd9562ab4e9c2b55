"""Local hook commands: run in ``/`` with the report JSON on stdin, a timeout, output captured
(bounded: the first and last HEAD_TAIL bytes). Each runs in a process group of its own, so
a timeout, a stop or a cancellation ends everything it started (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import secrets
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from keysyncd.io.local.hooktrust import RUN_DIRECTORY, hook_problem
from keysyncd.io.runtime.children import HOOK_TAG, end_group, forget_group, remember_group

HEAD_TAIL = 4096  # bytes of output kept at each end: the tail explains a failure
GROUP_GRACE = 3.0  # seconds between SIGTERM and SIGKILL to a hook's process group
DRAIN = 0.3  # after the hook exited, how long its leftovers may still write
POLL = 0.05  # how often the exit, the deadline and a cancellation are looked at
READ_SIZE = 1 << 20


@dataclass(frozen=True)
class HookRun:
    """One hook command's result: ``status`` is the exit code (negative: killed by that
    signal), None if it did not exit by itself (could not run, timed out, stopped)."""

    event: str
    command: tuple[str, ...]
    status: int | None
    output: str
    duration: float
    dropped: int = 0  # bytes of output not kept (between the head and the tail)
    problem: str = ""  # why it did not exit by itself: "timed out after 10s", ...

    @property
    def ok(self) -> bool:
        """Return True if the command exited 0."""
        return self.status == 0

    def outcome(self) -> str:
        """Return how it ended in words: ``exited with status 3``, ``was killed by signal 9
        (SIGKILL)``, ``timed out after 10s``, ``could not run: ...``."""
        if self.problem:
            return self.problem
        if self.status is None:  # a run refused before it started says why in its output
            return f"could not run: {self.output.strip()[-200:]}"
        if self.status < 0:
            names = {int(number): number.name for number in signal.Signals}
            name = names.get(-self.status, "unknown signal")
            return f"was killed by signal {-self.status} ({name})"
        return f"exited with status {self.status}"

    def describe(self) -> str:
        """Return one line such as ``after_rotate hook 'migrate' exited with status 3``."""
        return f"{self.event} hook {' '.join(self.command)!r} {self.outcome()}"

    def to_json(self) -> dict[str, Any]:
        """Return the run as a JSON-ready dict."""
        return {**asdict(self), "command": list(self.command)}


class Output:
    """A hook's output as kept: the head, the tail, and how many bytes fell between."""

    def __init__(self, keep: int = HEAD_TAIL) -> None:
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``'s bytes in the head while it has room, else in the tail, counting
        what the tail lets go."""
        room = self.keep - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[max(room, 0) :]
        excess = len(self.tail) - self.keep
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """Return what was kept, with a line saying how much was dropped in the middle."""
        middle = f"\n[... {self.dropped} bytes of output dropped ...]\n" if self.dropped else ""
        return (bytes(self.head).decode("utf-8", "replace") + middle) + bytes(self.tail).decode(
            "utf-8", "replace"
        )


def run_hooks(
    event: str,
    commands: tuple[tuple[str, ...], ...],
    document: bytes,
    timeout: float,
    cancel: threading.Event | None = None,
) -> list[HookRun]:
    """Run ``commands`` in order with ``document`` on stdin, stopping at a failure or at ``cancel``
    (ending a running hook's group); return a HookRun per command run or due; never raises."""
    runs: list[HookRun] = []
    for command in commands:
        if cancel is not None and cancel.is_set():
            runs.append(HookRun(event, command, None, "", 0.0, 0, "was not run: stopping"))
            break
        untrusted = hook_problem(command)  # checked right before it runs: files change
        if untrusted is not None:
            runs.append(HookRun(event, command, None, untrusted, 0.0))
            break
        runs.append(_run_one(event, command, document, timeout, cancel))
        if not runs[-1].ok:
            break
    return runs


def _run_one(
    event: str,
    command: tuple[str, ...],
    document: bytes,
    timeout: float,
    cancel: threading.Event | None,
) -> HookRun:
    """Return how one hook command ended; its process group is gone when this returns."""
    started = time.monotonic()
    output = Output()
    tag = secrets.token_hex(8)  # follows the processes that leave its group (setsid)
    try:
        process = _start(command, document, tag)
    except OSError as error:
        problem = f"could not run: {error.strerror or error}"
        return HookRun(event, command, None, "", time.monotonic() - started, 0, problem)
    remember_group(process.pid, tag)
    try:
        problem = _watch(process, output, started + timeout, cancel)
    finally:
        end_group(process.pid, GROUP_GRACE, tag)
        forget_group(process.pid)
        if process.stdout is not None:
            process.stdout.close()
        process.wait()
    if problem == "timeout":
        problem = f"timed out after {timeout:g}s (its process group was ended)"
    status = None if problem else process.returncode
    duration = time.monotonic() - started
    return HookRun(event, command, status, output.text(), duration, output.dropped, problem)


def _start(command: tuple[str, ...], document: bytes, tag: str) -> subprocess.Popen[bytes]:
    """Return the hook started in its own group, tagged ``tag``; raise OSError if it fails."""
    # stdin from an unlinked file: a hook that never reads it cannot block keysyncd
    with tempfile.TemporaryFile() as stdin:
        stdin.write(document)
        stdin.seek(0)
        return subprocess.Popen(
            list(command),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=RUN_DIRECTORY,  # not where keysyncd started: relative names, sys.path
            start_new_session=True,  # its own process group: ended as a whole
            env={**os.environ, HOOK_TAG: tag},
        )


def _watch(
    process: subprocess.Popen[bytes],
    output: Output,
    deadline: float,
    cancel: threading.Event | None,
) -> str:
    """Read ``process``'s output until it exited (plus DRAIN for its leftovers), the
    deadline passed or ``cancel`` was set; return "" if it exited, else why not."""
    assert process.stdout is not None  # noqa: S101 - Popen(stdout=PIPE)
    descriptor = process.stdout.fileno()
    os.set_blocking(descriptor, False)
    exited_at: float | None = None
    closed = False  # its output reached end of file
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and process.poll() is not None:
                exited_at = now
            if exited_at is not None and (closed or now >= exited_at + DRAIN):
                return ""  # done by its exit status; leftovers are ended with its group
            if exited_at is None and now >= deadline:
                return "timeout"
            if exited_at is None and cancel is not None and cancel.is_set():
                return "was stopped: keysyncd is stopping (its process group was ended)"
            if closed:
                time.sleep(POLL)
            elif selector.select(POLL):
                closed = not _read(descriptor, output)


def _read(descriptor: int, output: Output) -> bool:
    """Read what is there into ``output``; return False at end of file."""
    try:
        chunk = os.read(descriptor, READ_SIZE)
    except BlockingIOError:
        return True
    output.add(chunk)
    return bool(chunk)
