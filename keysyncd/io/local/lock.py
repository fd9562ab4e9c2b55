"""One writer (safety rule 7): an exclusive flock on ``state_dir/lock`` for every mutating
action; the file records the holder (PID, action, since when) for a refused caller, and the
kernel releases it when the holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from keysyncd.core.times import rfc3339
from keysyncd.errors import KeysyncError, LockError, StateError
from keysyncd.io.local.fsutil import describe_os_error, load_json, remove_temp_files
from keysyncd.io.local.trust import check_directory, open_trusted, read_trusted


def describe_holder(path: Path) -> str:
    """Return "PID 123 (rotate) since 2026-11-22T20:00:00Z" from the lock file, or 'unknown'."""
    try:
        holder = load_json(read_trusted(path, limit=4096) or b"{}")
        since = rfc3339(float(holder["since"]))
        return f"PID {holder['pid']} ({holder['action']}) since {since}"
    except (KeysyncError, OSError, ValueError, KeyError, TypeError):
        return "an unknown process"


@contextlib.contextmanager
def exclusive(
    state_dir: Path,
    action: str,
    wait: float = 0.0,
    clock: Callable[[], float] = time.time,
    cancel: threading.Event | None = None,
) -> Iterator[None]:
    """Hold the keysyncd lock for the block, waiting up to ``wait`` seconds; raise LockError naming
    the holder if it stays taken, at once when ``cancel`` is set (the daemon stops)."""
    path = state_dir / "lock"
    check_directory(state_dir, "state_dir")
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StateError(
            f"cannot create state_dir {state_dir}: {describe_os_error(error)}"
        ) from None
    # O_NOFOLLOW and the trust check: a planted symlink must never make us truncate its target
    descriptor = open_trusted(path, os.O_RDWR | os.O_CREAT)
    try:
        _acquire(descriptor, path, wait, cancel or threading.Event())
        record = {"pid": os.getpid(), "action": action, "since": clock()}
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, json.dumps(record).encode(), 0)
        except OSError as error:
            raise StateError(f"cannot write lock {path}: {describe_os_error(error)}") from None
        # a writer killed mid-write leaves temp files; only lock holders write here
        remove_temp_files(state_dir / "repositories")
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _acquire(descriptor: int, path: Path, wait: float, cancel: threading.Event) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = describe_holder(path)
            if cancel.is_set():
                raise LockError(
                    f"another keysyncd holds the lock: {holder}; not waiting for it: stopping"
                ) from None
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait:g}s" if wait > 0 else ""
                raise LockError(f"another keysyncd holds the lock{waited}: {holder}") from None
            cancel.wait(min(0.1, max(deadline - time.monotonic(), 0.01)))
