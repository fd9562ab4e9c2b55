"""Local watch: a watchdog observer per repository directory, debounced.

It only says "something changed in repository R"; what changed, and whether
keysyncd itself did it, is decided by comparing the disk with the journal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, name: str, touched: Callable[[str], None]) -> None:
        self.name = name
        self.touched = touched

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):  # reads are not changes
            self.touched(self.name)


class RepositoryWatcher:
    """Calls ``on_change(repository_name)`` once a repository has been quiet for ``debounce`` s."""

    def __init__(self, on_change: Callable[[str], None], debounce: float = 0.5) -> None:
        self.on_change = on_change
        self.debounce = debounce
        self.observer = Observer()
        self.observer.daemon = True
        self._dirty: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._settle, name="watch-debounce", daemon=True)

    def start(self, directories: dict[str, Path]) -> dict[str, str]:
        """Watch every ``name -> directory``; return why some cannot be watched, by name.

        Each directory fails on its own (missing directory, inotify limits), so one bad
        repository never leaves the others unwatched.
        """
        failures: dict[str, str] = {}
        try:
            self.observer.start()
        except OSError as error:
            reason = f"cannot start the file watcher: {error.strerror or error}"
            return dict.fromkeys(directories, reason)
        for name, directory in directories.items():
            try:  # on a running observer, schedule() adds the inotify watch right away
                self.observer.schedule(_Handler(name, self._touched), str(directory))
            except OSError as error:
                failures[name] = f"cannot watch {directory}: {error.strerror or error}"
        self._thread.start()
        return failures

    def _touched(self, name: str) -> None:
        with self._lock:
            self._dirty[name] = time.monotonic()

    def _settle(self) -> None:
        while not self._stop.wait(self.debounce / 4):
            now = time.monotonic()
            with self._lock:
                quiet = [n for n, at in self._dirty.items() if now - at >= self.debounce]
                for name in quiet:
                    del self._dirty[name]
            for name in quiet:
                self.on_change(name)

    def stop(self) -> None:
        """Stop watching and join the threads (bounded)."""
        self._stop.set()
        if self.observer.is_alive():
            self.observer.stop()
            self.observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
