"""Local watch: a watchdog observer per repository directory, debounced, that survives.

It only says "something changed in repository R". An inotify watch follows an inode and
watchdog says nothing when the watched directory itself moves, so the watcher also compares
the directory's (device, inode) a few times a second: ``replaced`` (re-armed), ``removed``
(re-armed when back). Lost events (a queue overflow, a dead watcher) are ``overflow``: the
daemon then checks every repository in full."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger(__name__)
REPLACED, REMOVED, OVERFLOW = "replaced", "removed", "overflow"
# at most ALARM_BURST replaced/removed alarms per repository in ALARM_WINDOW seconds (the
# latest beyond is held): a loop swapping the directory must not flood the report history
ALARM_BURST, ALARM_WINDOW = 4, 60.0
# the daemon job each alarm queues: report and check a new directory; check a vanished one
# (invalid until it is back); check all after a loss
WATCH_JOBS = {REPLACED: "replaced", REMOVED: "watch", OVERFLOW: "check"}
Identity = tuple[int, int]


class _Handler(FileSystemEventHandler):
    def __init__(self, name: str, touched: Callable[[str], None]) -> None:
        self.name = name
        self.touched = touched

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):  # reads are not changes
            self.touched(self.name)


@dataclass
class _Target:
    """One repository's directory and what is armed on it (None: nothing, it is missing)."""

    directory: Path
    identity: Identity | None = None
    watch: ObservedWatch | None = None


def identity_of(directory: Path) -> Identity | None:
    """Return ``directory``'s (device, inode), None if missing or no directory; raise OSError."""
    try:
        info = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (info.st_dev, info.st_ino) if os.path.isdir(directory) else None


class RepositoryWatcher:
    """Calls ``on_change(repository_name)`` once a repository has been quiet for ``debounce`` s,
    and ``on_alarm(repository_name, what)`` at once when its directory was ``replaced`` (and
    re-armed), ``removed``, or events were lost (``overflow``, for every repository)."""

    def __init__(
        self,
        on_change: Callable[[str], None],
        on_alarm: Callable[[str, str], None] | None = None,
        debounce: float = 0.5,
    ) -> None:
        self.on_change = on_change
        self.on_alarm = on_alarm or (lambda name, what: None)
        self.debounce = debounce
        self._overflowed = threading.Event()
        self.lost = False  # the observer died: nothing is watched any more
        self.observer = _observer(self._overflowed.set)
        self.observer.daemon = True
        self._targets: dict[str, _Target] = {}
        self._dirty: dict[str, float] = {}
        self._alarms: dict[str, list[float]] = {}  # when each recent alarm was sent, by name
        self._held: dict[str, str] = {}  # the latest alarm held back, by name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._settle, name="watch-debounce", daemon=True)

    def start(self, directories: dict[str, Path]) -> dict[str, str]:
        """Watch every ``name -> directory``; return why some cannot be, by name (each fails on its
        own; a missing one is left to the periodic check)."""
        failures: dict[str, str] = {}
        try:
            self.observer.start()
        except OSError as error:
            reason = f"cannot start the file watcher: {error.strerror or error}"
            return dict.fromkeys(directories, reason)
        for name, directory in directories.items():
            target = _Target(directory)
            try:
                self._arm(name, target)
            except OSError as error:
                failures[name] = f"cannot watch {directory}: {error.strerror or error}"
                continue
            if target.watch is None:
                failures[name] = f"cannot watch {directory}: no such directory"
                continue
            self._targets[name] = target
        self._thread.start()
        return failures

    def _arm(self, name: str, target: _Target) -> None:
        """Watch what is at ``target.directory`` now (if anything); raise OSError if it cannot be.
        The identity is taken first: a directory swapped meanwhile is re-armed later."""
        target.identity = identity_of(target.directory)
        if target.identity is not None:
            # on a running observer, schedule() adds the inotify watch right away
            target.watch = self.observer.schedule(
                _Handler(name, self._touched), str(target.directory)
            )

    def _disarm(self, target: _Target) -> None:
        watch, target.watch, target.identity = target.watch, None, None
        if watch is not None:
            try:
                self.observer.unschedule(watch)
            except (KeyError, OSError):  # its emitter already stopped (deleted directory)
                log.debug("watch of %s already gone", target.directory, exc_info=True)

    def _touched(self, name: str) -> None:
        with self._lock:
            self._dirty[name] = time.monotonic()

    def _settle(self) -> None:
        while not self._stop.wait(self.debounce / 4):
            self._look()
            now = time.monotonic()
            with self._lock:
                quiet = [n for n, at in self._dirty.items() if now - at >= self.debounce]
                for name in quiet:
                    del self._dirty[name]
            for name in quiet:
                self.on_change(name)

    def _alarm(self, name: str, what: str) -> None:
        """Send ``what`` about ``name`` now, or hold the latest while ALARM_BURST were just sent."""
        now = time.monotonic()
        recent = [at for at in self._alarms.get(name, []) if now - at < ALARM_WINDOW]
        if len(recent) >= ALARM_BURST:
            self._held[name] = what
            self._alarms[name] = recent
            return
        self._alarms[name] = [*recent, now]
        self._held.pop(name, None)
        self.on_alarm(name, what)

    def _look(self) -> None:
        """Re-arm directories that were replaced or came back; report what was lost."""
        for name, what in list(self._held.items()):
            self._alarm(name, what)
        if self._overflowed.is_set():
            self._overflowed.clear()
            for name in self._targets:
                self.on_alarm(name, OVERFLOW)
        if not self.observer.is_alive():
            # once, and not while we stop: the daemon checks everything, starts a new watcher
            if not self.lost and not self._stop.is_set():
                self.lost = True
                log.error("the file watcher stopped unexpectedly")
                for name in self._targets:
                    self.on_alarm(name, OVERFLOW)
            return
        for name, target in self._targets.items():
            try:
                now = identity_of(target.directory)
            except OSError:
                continue  # cannot look right now (permission): keep what is armed
            if now == target.identity:
                continue
            self._rearm(name, target, now)

    def _rearm(self, name: str, target: _Target, now: Identity | None) -> None:
        was_watching = target.identity is not None
        self._disarm(target)
        if now is None:
            log.warning("%s: repository directory %s is gone", name, target.directory)
            self._alarm(name, REMOVED)
            return
        try:
            self._arm(name, target)
        except OSError as error:
            log.error("%s: cannot watch %s again: %s", name, target.directory, error)
            target.identity = now  # do not retry at every look; the periodic check covers it
            return
        log.warning(
            "%s: repository directory %s was %s; watching the new one",
            name,
            target.directory,
            "replaced" if was_watching else "recreated",
        )
        self._alarm(name, REPLACED)

    def stop(self) -> None:
        """Stop watching and join the threads (bounded)."""
        self._stop.set()
        if self.observer.is_alive():
            self.observer.stop()
            self.observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _observer(overflowed: Callable[[], None]) -> BaseObserver:
    """Return watchdog's observer (with inotify, calling ``overflowed`` when events are lost)."""
    observer: BaseObserver = Observer()
    try:
        from watchdog.observers.inotify import InotifyEmitter
    except ImportError:  # not Linux: no inotify, no overflow to hear of
        return observer
    if observer._emitter_class is not InotifyEmitter:
        return observer
    observer._emitter_class = _overflow_emitter(InotifyEmitter, overflowed)
    return observer


def _overflow_emitter(base: Any, overflowed: Callable[[], None]) -> Any:
    """Return an inotify emitter class whose watch group also calls ``overflowed`` on a queue
    overflow (watchdog 7; with an older one only a dead watcher is noticed)."""

    # base is watchdog's InotifyEmitter, imported at run time only where inotify exists
    class OverflowEmitter(base):  # type: ignore[misc]
        def on_thread_start(self) -> None:
            super().on_thread_start()
            group = getattr(self, "_inotify", None)
            dropped = getattr(group, "on_queue_overflow", None)
            if group is None or dropped is None:
                log.info("this watchdog does not report inotify overflows")
                return

            def on_queue_overflow() -> None:
                dropped()
                log.warning("inotify queue overflow: file events were lost")
                overflowed()

            group.on_queue_overflow = on_queue_overflow

    return OverflowEmitter
