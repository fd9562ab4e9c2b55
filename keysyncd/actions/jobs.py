"""Job recipes for the CLI and the daemon; each repository runs on its own (as borgmatic's):
one that fails never stops the next."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from keysyncd.actions import operations
from keysyncd.actions.context import ActionResult, Run
from keysyncd.actions.drift import report_replaced
from keysyncd.config import RepositoryConfig
from keysyncd.core.vocabulary import Outcome
from keysyncd.errors import KeysyncError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepositoryRun:
    """One repository's part of a command or daemon job: its results or its error."""

    repository: str
    results: tuple[ActionResult, ...] = ()
    error: KeysyncError | None = None

    @property
    def ok(self) -> bool:
        """Return True when it needs no attention."""
        return self.error is None and all(result.ok for result in self.results)

    @property
    def outcome(self) -> str:
        """Return ``ok``, the first outcome that is not, or ``failed`` for an error."""
        if self.error is not None:
            return Outcome.FAILED
        return next((r.outcome for r in self.results if not r.ok), Outcome.OK)

    def summary(self) -> str:
        """Return ``fernet-tokens: ok`` or ``fernet-tokens: failed (why)``."""
        why = f" ({self.error})" if self.error is not None else ""
        return f"{self.repository}: {self.outcome}{why}"


Step = Callable[[Run], list[ActionResult | None]]


def each_repository(
    repositories: Iterable[RepositoryConfig],
    make_run: Callable[[RepositoryConfig], Run],
    step: Step,
) -> list[RepositoryRun]:
    """Run ``step`` for every repository; return one RepositoryRun each. A KeysyncError ends
    that repository's part only; anything else is a bug and propagates."""
    done = []
    for repository in repositories:
        try:
            found = step(make_run(repository))
        except KeysyncError as error:
            log.debug("%s failed", repository.name, exc_info=True)
            done.append(RepositoryRun(repository.name, error=error))
            continue
        done.append(RepositoryRun(repository.name, tuple(r for r in found if r is not None)))
    return done


JOBS: dict[str, Step] = {
    "rotate": lambda run: [operations.rotate(run)],
    # SIGUSR2: push (verified by read-back), then a read-only verify of every node
    "sync": lambda run: [
        operations.sync(run),
        operations.verify(run) if run.config.nodes else None,
    ],
    # the periodic check: the local repository, then every node (repairing)
    "check": lambda run: [operations.check_local(run), operations.check_fleet(run)],
    "watch": lambda run: [operations.check_local(run)],
    # the local watch re-armed on a new directory: say so, then check what it holds
    "replaced": lambda run: [report_replaced(run), operations.check_local(run)],
}
