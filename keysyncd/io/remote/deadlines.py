"""Deadlines run by one thread: paramiko leaves some of its waits unbounded, so a
connection that stalls, or a step that runs past operation_timeout, is closed from here.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable


class Deadlines:
    """One thread that runs a callback when its deadline passes (closing a transport that
    has not finished connecting): paramiko leaves some of its waits unbounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self._next_token = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Callable[[], None]) -> int:
        """Run ``action`` in ``seconds`` unless disarmed first; return a token for disarm."""
        with self._changed:
            token = next(self._next_token)
            self._pending[token] = (self.clock() + seconds, action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Cancel a deadline; return False if its action already ran (or is running)."""
        with self._changed:
            return self._pending.pop(token, None) is not None

    def _run(self) -> None:
        """Run each action whose deadline passed; return once none is pending."""
        while True:
            with self._changed:
                if not self._pending:
                    self._thread = None  # idle: a later arm() starts a new thread
                    return
                now = self.clock()
                due = [t for t, (at, _) in self._pending.items() if at <= now]
                actions = [self._pending.pop(token)[1] for token in due]
                if not actions:
                    soonest = min(at for at, _ in self._pending.values())
                    self._changed.wait(max(soonest - now, 0.01))
            for action in actions:
                with contextlib.suppress(Exception):  # closing a dead transport may fail
                    action()
