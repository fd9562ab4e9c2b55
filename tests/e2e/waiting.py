"""Bounded waits on observable state, for the e2e tests: never a sleep standing for an event.

A wait polls a predicate every POLL seconds, at most ``timeout / POLL + 1`` times and for at
most ``timeout`` seconds, and fails with what it waited for. Such a timeout is a failure
bound only (how long a missing event may take before the test gives up), never a claim
about speed: it is generous (EVENT_TIMEOUT) so that a loaded 2-core machine never trips it.
Where a test does assert something about time, it says so next to the assertion.

A ``HeldHook`` is a hook command that says it runs (a file appears) and then blocks until
the test releases it (another file), so a test can act while the hook's process, and with
it the rotation and its lock, is certainly inside that hook.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")
POLL = 0.05
EVENT_TIMEOUT = 60.0  # an event the test caused (a report, a notify message, a hook) is late
HOOK_POLLS = 2400  # a held hook gives up (exit 1) after this many polls of 0.05 s: >= 120 s


def wait_until(
    predicate: Callable[[], T],
    what: str,
    timeout: float = EVENT_TIMEOUT,
    *,
    gone: Callable[[], str | None] | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Return the first truthy value of ``predicate()``; fail after ``timeout`` seconds.

    Fail at once if ``gone()`` returns a reason (e.g. the process that should act exited);
    both failures end with ``context()`` (e.g. that process's log), if given.
    """
    deadline = time.monotonic() + timeout
    # Each poll sleeps POLL, so the deadline comes first; the count bounds the loop anyway.
    polls = math.ceil(timeout / POLL) + 1
    for _ in range(polls):
        value = predicate()
        if value:
            return value
        reason = gone() if gone is not None else None
        if reason is not None or time.monotonic() > deadline:
            why = reason or f"timed out after {timeout:g}s"
            tail = f"\n{context()}" if context is not None else ""
            pytest.fail(f"{why} while waiting for {what}{tail}")
        time.sleep(POLL)
    tail = f"\n{context()}" if context is not None else ""
    pytest.fail(f"gave up after {polls} polls waiting for {what}{tail}")


@dataclass(frozen=True)
class HeldHook:
    """A hook that creates ``started`` and then waits (bounded) until ``release`` exists.

    Example config value: ``{"before_rotate": [hook.command]}``. It exits 0 when released,
    1 if never released within HOOK_POLLS polls (so a forgotten release fails the action).
    """

    started: Path
    release: Path

    @classmethod
    def at(cls, directory: Path, name: str = "hook") -> HeldHook:
        """Return a hook whose marker files are ``directory/NAME-started`` and ``-release``."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / f"{name}-started", directory / f"{name}-release")

    @property
    def command(self) -> list[str]:
        """Return the hook's argv (``sh -c ...``)."""
        started, release = shlex.quote(str(self.started)), shlex.quote(str(self.release))
        script = (
            f"touch {started}; for i in $(seq {HOOK_POLLS}); do "
            f"[ -e {release} ] && exit 0; sleep {POLL}; done; exit 1"
        )
        return ["sh", "-c", script]

    def wait_started(
        self,
        what: str,
        *,
        gone: Callable[[], str | None] | None = None,
        context: Callable[[], str] | None = None,
    ) -> None:
        """Return once the hook runs; fail (see wait_until) if it does not start."""
        wait_until(self.started.exists, what, gone=gone, context=context)

    def let_go(self) -> None:
        """Release the hook (idempotent)."""
        self.release.touch()
