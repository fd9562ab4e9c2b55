"""What every action shares: the run it belongs to, its result, and its single commit.

Each action reads *load -> decide -> act -> commit*. ``commit`` is the one place that writes
what an action learned: the report first, then the state, then the metrics (a crash between
them leaves a report whose state is redone by the next action, never the reverse).
``write_ahead`` saves the journal's record of a rotation before the disk is touched: the
only other state write, and the reason a crash can be finished or undone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from keysyncd.config import Config, RepositoryConfig
from keysyncd.core import journal
from keysyncd.core.journal import RepositoryState
from keysyncd.core.policy import RotationPlan
from keysyncd.core.recovery import Recovery
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.core.vocabulary import Action, Outcome, Trigger, outcome_of
from keysyncd.io.fanout import Progress
from keysyncd.io.fleet import FleetAction
from keysyncd.io.ids import node_owner
from keysyncd.io.reportstore import new_report_id, write_report
from keysyncd.io.state import save_state

DRY_RUN = "dry-run"


@dataclass(frozen=True)
class Run:
    """One action on one repository: the config, what started it, and its connections to
    the outside (the clock, progress on a terminal, a stop request from the daemon)."""

    config: Config
    repository: RepositoryConfig
    trigger: Trigger
    clock: Callable[[], float] = time.time
    progress: Progress | None = None
    cancel: threading.Event | None = None

    @property
    def node_names(self) -> list[str]:
        """Return the names of every configured node."""
        return [node.name for node in self.config.nodes]

    @property
    def cancelled(self) -> bool:
        """Return True once the daemon asked to stop."""
        return self.cancel is not None and self.cancel.is_set()

    @contextlib.contextmanager
    def fleet(self, only: str | Collection[str] | None = None) -> Iterator[FleetAction | None]:
        """Yield the connections to every node (or to ``only``: one name, or several), None
        when there is no node; every connection is closed afterwards, whatever happened."""
        if only is None:
            nodes = list(self.config.nodes)
        else:
            names = [only] if isinstance(only, str) else list(only)
            nodes = [self.config.node(name) for name in names]
        if not nodes:
            yield None
            return
        fleet = FleetAction(
            self.repository,
            nodes,
            self.config.ssh,
            node_owner(self.repository),
            self.progress,
            self.cancel,
        )
        try:
            fleet.open()
            yield fleet
        finally:
            fleet.finish()


@dataclass(frozen=True)
class ActionResult:
    """What an action did: its outcome, its report (None for a dry run) and what it saw.

    ``rotation``, ``preview`` and ``recovery`` are filled by the actions that have them:
    the rotation plan, what each node would get (dry run), what crash recovery does.
    """

    repository: str
    outcome: str
    report: Report | None
    nodes: Mapping[str, NodeOutcome] = field(default_factory=lambda: MappingProxyType({}))
    messages: tuple[str, ...] = ()
    rotation: RotationPlan | None = None
    preview: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    recovery: Recovery | None = None

    @property
    def ok(self) -> bool:
        """Return True when nothing needs the operator's attention."""
        return self.outcome in (Outcome.OK, DRY_RUN)


@dataclass(frozen=True)
class Draft:
    """A report before its commit: everything but its id, end time and generation."""

    action: Action
    started: float
    nodes: Mapping[str, NodeOutcome] = field(default_factory=lambda: MappingProxyType({}))
    outcome: Outcome | None = None  # None: from the nodes (outcome_of)
    forced: bool = False
    messages: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def commit(run: Run, state: RepositoryState, draft: Draft, **result: Any) -> ActionResult:
    """Write the report, then the state, then the metrics; return the action's result.

    Raise KeysyncError if the report or the state cannot be written.
    """
    ended = run.clock()
    outcome = draft.outcome or outcome_of(node.status for node in draft.nodes.values())
    report = Report(
        id=new_report_id(draft.started, draft.action),
        action=draft.action,
        trigger=run.trigger,
        repository=run.repository.name,
        started_at=draft.started,
        ended_at=ended,
        outcome=outcome,
        generation=state.generation,
        expected={str(i): d for i, d in sorted(state.digests.items())},
        nodes=dict(draft.nodes),
        forced=draft.forced,
        messages=draft.messages,
        details=dict(draft.details),
    )
    state = journal.finished(state, draft.action, outcome, draft.started, ended, report.id)
    write_report(run.config.report_dir, run.config.state_dir, report, run.config.reports, ended)
    save_state(run.config.state_dir, state)
    if run.config.metrics.textfile is not None:
        # imported only when configured: prometheus_client costs start-up time otherwise
        from keysyncd.io.metrics import write_metrics

        write_metrics(run.config)
    return ActionResult(
        run.repository.name,
        outcome,
        report,
        MappingProxyType(dict(draft.nodes)),
        draft.messages,
        **result,
    )


def write_ahead(run: Run, state: RepositoryState) -> None:
    """Save the journal now: the record of a rotation about to touch the disk, or what a
    rotation or recovery just did, so that a crash can always be finished or undone."""
    save_state(run.config.state_dir, state)


def node_outcomes(fleet: FleetAction | None) -> dict[str, NodeOutcome]:
    """Return each node's outcome as reports show it (none without nodes)."""
    return {} if fleet is None else {name: r.outcome() for name, r in fleet.results.items()}


def remember(run: Run, state: RepositoryState) -> None:
    """The commit of an action that found nothing to report (keysyncd's own write seen by
    the watch): the journal is saved, no report is written."""
    save_state(run.config.state_dir, state)
