"""The local watch survives its directory: the real watchdog observer on real directories.

A repository directory moved away and recreated, or removed and recreated, is re-armed (a
change in the new directory is seen) and reported; an inotify queue overflow (a real one:
the kernel's queue filled while the watcher's reader is held) is reported so the daemon
checks everything. Every wait is bounded (a failure bound only).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keysyncd.io.runtime.watch import OVERFLOW, REMOVED, REPLACED, RepositoryWatcher

TIMEOUT = 30.0
DRAINED = 2048  # events watchdog's inotify reader takes in one read (DEFAULT_NUM_EVENTS)


class Seen:
    """What the watcher said, in order, from its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changes: list[str] = []
        self.alarms: list[tuple[str, str]] = []

    def change(self, name: str) -> None:
        with self.lock:
            self.changes.append(name)

    def alarm(self, name: str, what: str) -> None:
        with self.lock:
            self.alarms.append((name, what))

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.alarms}"
            time.sleep(0.05)

    def wait_change(self) -> None:
        with self.lock:
            count = len(self.changes)
        self.wait(lambda: len(self.changes) > count, "a change")


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[RepositoryWatcher, Seen, Path]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "0").write_text("key\n")
    seen = Seen()
    watcher = RepositoryWatcher(seen.change, seen.alarm, debounce=0.2)
    assert watcher.start({"r": keys}) == {}
    try:
        yield watcher, seen, keys
    finally:
        watcher.stop()


def test_a_directory_moved_away_and_recreated_is_rearmed_and_reported(
    watched: tuple[RepositoryWatcher, Seen, Path],
) -> None:
    _, seen, keys = watched
    keys.rename(keys.with_name("keys.old"))  # watchdog emits nothing for this (IN_MOVE_SELF)
    shutil.copytree(keys.with_name("keys.old"), keys)  # the restore
    seen.wait(lambda: ("r", REPLACED) in seen.alarms, "the replacement to be reported")
    (keys / "1").write_text("another key\n")
    seen.wait_change()  # the new directory is watched


def test_a_removed_directory_is_reported_and_rearmed_when_it_comes_back(
    watched: tuple[RepositoryWatcher, Seen, Path],
) -> None:
    _, seen, keys = watched
    shutil.rmtree(keys)
    seen.wait(lambda: ("r", REMOVED) in seen.alarms, "the removal to be reported")
    keys.mkdir()
    seen.wait(lambda: ("r", REPLACED) in seen.alarms, "the new directory to be reported")
    (keys / "0").write_text("key\n")
    seen.wait_change()


def test_an_inotify_queue_overflow_is_reported(
    watched: tuple[RepositoryWatcher, Seen, Path],
) -> None:
    """The watcher's inotify reader is held (its lock, as a slow reader would be) while the
    kernel queue overflows (more events than fs.inotify.max_queued_events)."""
    watcher, seen, keys = watched
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to queue")
    reader = watcher.observer._inotify_fd  # type: ignore[attr-defined]
    # One event per file counted (create; open and close are more), plus what the reader
    # may drain before it waits for the lock: the read it is in, of up to DRAINED events.
    with reader._lock:
        for number in range(limit + 2 * DRAINED + 100):
            descriptor = os.open(keys / f"f{number}", os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(descriptor)
    seen.wait(lambda: ("r", OVERFLOW) in seen.alarms, "the overflow to be reported")


def test_a_watcher_whose_observer_died_says_so_once(
    watched: tuple[RepositoryWatcher, Seen, Path],
) -> None:
    """The fallback where watchdog cannot report an overflow: a dead observer is a loss, and
    the daemon (watcher.lost) checks everything and starts a new watcher."""
    watcher, seen, _ = watched
    watcher.observer.stop()  # as an unexpected error in watchdog's threads would end it
    watcher.observer.join(timeout=10)
    seen.wait(lambda: watcher.lost and ("r", OVERFLOW) in seen.alarms, "the loss to be reported")
    time.sleep(0.5)  # a property about count: several looks later, still one alarm
    assert seen.alarms.count(("r", OVERFLOW)) == 1
