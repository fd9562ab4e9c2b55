"""What every action shares: its run, its result, its one commit (report, then state, then
metrics; a report report_dir cannot take is kept in the journal and written, marked late, by
the next commit that can), ``write_ahead`` (the journal saved before the disk is touched, so
a crash can be finished or undone) and ``check_clock``, the one judgement of the clock."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from keysyncd.config import Config, NodeConfig, RepositoryConfig
from keysyncd.core import clock, journal
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import Recovery, RepositoryState
from keysyncd.core.policy import RotationPlan
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.core.revocation import revoked_digests
from keysyncd.core.text import plural
from keysyncd.core.vocabulary import Action, Outcome, Trigger, outcome_of
from keysyncd.errors import KeysyncError
from keysyncd.io.local.repolinks import node_owner
from keysyncd.io.local.reportstore import new_report_id, write_report
from keysyncd.io.local.state import load_state, save_state
from keysyncd.io.remote.fanout import Fanout, Progress
from keysyncd.io.remote.fleet import FleetAction

if TYPE_CHECKING:
    from keysyncd.io.remote.jwsfleet import JwsFleet

DRY_RUN = "dry-run"
F = TypeVar("F", "FleetAction", "JwsFleet")  # either kind's connections (``Run.connect``)

log = logging.getLogger(__name__)
# Reports kept in the journal while report_dir cannot take them: beyond these, the oldest
# lose their per-node tables (abridged, marked so), and beyond MAX_UNWRITTEN they are dropped
# (counted in the journal, logged): the state file must stay small enough to write at once.
MAX_UNWRITTEN = 1000
ABRIDGED_MESSAGE = 500  # characters kept of each message of an abridged report
MAX_UNWRITTEN_BYTES = 8 << 20


@dataclass(frozen=True)
class Run:
    """One action on one repository: config, trigger, clock, progress, the daemon's stop."""

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

    def nodes(self, only: str | Collection[str] | None = None) -> list[NodeConfig]:
        """Return every configured node, or ``only`` (raise UsageError for an unknown name)."""
        names = [only] if isinstance(only, str) else only
        return list(self.config.nodes) if names is None else [self.config.node(n) for n in names]

    def connect(
        self, fleet: type[F], only: str | Collection[str] | None = None, observe_clock: bool = True
    ) -> F:
        """Return a ``fleet`` (not yet open) of every node or ``only``; it reads each node's
        clock as it connects unless ``observe_clock`` is False (a dry run writes nothing)."""
        return fleet(
            self.repository,
            self.nodes(only),
            self.config.ssh,
            node_owner(self.repository),
            self.progress,
            self.cancel,
            self.clock if observe_clock else None,
        )

    @contextlib.contextmanager
    def fleet(
        self, only: str | Collection[str] | None = None, observe_clock: bool = True
    ) -> Iterator[FleetAction | None]:
        """Yield the open connections of ``connect`` (None without nodes), closed after."""
        if not self.nodes(only):  # no fleet to build (nor a node owner to resolve)
            yield None
            return
        fleet = self.connect(FleetAction, only, observe_clock)
        # the one place every symmetric action (sync, rotate, revoke, adopt, drift repair)
        # learns the revoked keys: a node showing one again is cleaned, never left diverged
        state = load_state(self.config.state_dir, self.repository.name)
        fleet.revoked = revoked_digests(state.revoked)
        try:
            fleet.open()
            yield fleet
        finally:
            fleet.finish()


@dataclass(frozen=True)
class ActionResult:
    """What an action did: its outcome, its report (None for a dry run), what it saw."""

    repository: str
    outcome: str
    report: Report | None
    nodes: Mapping[str, NodeOutcome] = field(default_factory=lambda: MappingProxyType({}))
    messages: tuple[str, ...] = ()
    rotation: RotationPlan | None = None
    preview: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    recovery: Recovery | None = None
    report_error: str | None = None  # why the report could not be written (kept in the state)
    clock_trusted: bool = True  # False: nothing was retired or rotated (SPEC rule 10)
    would: Outcome | None = None  # a dry run: the real action's outcome (None: taken as ok)
    promoted: bool = False  # a rotation: the staged key was promoted (whatever the nodes did)
    plan: Mapping[str, Any] | None = None  # any kind's plan, as details.plan records it

    @property
    def ok(self) -> bool:
        """Return True when nothing needs attention (a dry run: when the real one would not)."""
        good = self.report_error is None and self.clock_trusted
        if self.outcome == DRY_RUN:
            return good and self.would in (None, Outcome.OK)
        return good and self.outcome == Outcome.OK


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
    clock: ClockCheck | None = None  # None: no node read (clock.current judges at the commit)


def check_clock(
    run: Run, state: RepositoryState, fleet: Fanout[Any, Any] | None, quorum: bool = True
) -> ClockCheck:
    """Return the judgement of the clock now, against the journal's latest time and the
    nodes' clocks ``fleet`` read; ``quorum``: a majority of the nodes must have been read
    (``init`` needs none: no directory to read a clock in yet, and nothing to retire)."""
    skews = list(fleet.skews.values()) if fleet is not None else []
    latest = clock.latest_recorded(state)
    configured = len(run.config.nodes)
    # a majority of every node, not of those this action reached: sync --node, or a fleet
    # mostly down, proves nothing
    needed = configured // 2 + 1 if configured and quorum else 0
    return clock.judge(run.clock(), latest, skews, run.config.clock.max_skew, needed)


def commit(run: Run, state: RepositoryState, draft: Draft, **result: Any) -> ActionResult:
    """Write the report (kept in the state if it cannot be), the state, the metrics; return
    the result. Raise KeysyncError if the state cannot be written."""
    ended = run.clock()
    check = draft.clock or clock.current(state, ended, run.config.clock.max_skew)
    outcome = draft.outcome or outcome_of(node.status for node in draft.nodes.values())
    # a clock seen wrong is said on every report; one merely unvouched for (too few nodes
    # read: sync --node, nodes down) only where it stopped something (a deferral)
    said = check.suspect or (not check.trusted and outcome == Outcome.DEFERRED)
    messages = (*draft.messages, check.describe()) if said else draft.messages
    report = _report(run, state, draft, outcome, messages, check, ended)
    state, report, failure = write_reports(run, clock.recorded(state, check), report, check)
    state = journal.finished(state, draft.action, outcome, draft.started, ended, report.id)
    save_state(run.config.state_dir, state)
    if run.config.metrics.textfile is not None:
        # imported only when configured: prometheus_client costs start-up time otherwise
        from keysyncd.io.runtime.metrics import write_metrics

        write_metrics(run.config)
    if failure is not None:
        messages = (*messages, not_written(failure, len(state.unwritten_reports)))
    return ActionResult(
        run.repository.name,
        outcome,
        report,
        MappingProxyType(dict(draft.nodes)),
        messages,
        report_error=failure,
        clock_trusted=not check.suspect,
        **result,
    )


def _report(
    run: Run,
    state: RepositoryState,
    draft: Draft,
    outcome: str,
    messages: tuple[str, ...],
    check: ClockCheck,
    ended: float,
) -> Report:
    """Return the report of ``draft`` (its id final once written: ``write_report``)."""
    return Report(
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
        messages=messages,
        details={**draft.details, "clock": check.to_json()},
    )


def write_ahead(run: Run, state: RepositoryState) -> None:
    """Save the journal now, so that a crash can always be finished or undone."""
    save_state(run.config.state_dir, state)


def node_outcomes(fleet: Fanout[Any, Any] | None) -> dict[str, NodeOutcome]:
    """Return each node's outcome as reports show it (none without nodes)."""
    return {} if fleet is None else {name: r.outcome() for name, r in fleet.results.items()}


def write_reports(
    run: Run, state: RepositoryState, report: Report, check: ClockCheck
) -> tuple[RepositoryState, Report, str | None]:
    """Write the kept reports, then ``report``; return the state, the report as written, why not."""
    now = report.ended_at
    # only a clock the nodes vouched for in this action ages reports out: a clock a year
    # ahead would make all of them look old (retention by count still applies)
    retention_now = now if check.trusted and check.fresh else None
    config = run.config
    waiting = [dict(document) for document in state.unwritten_reports]
    try:
        while waiting:
            write_report(
                config.report_dir, config.state_dir, waiting[0], config.reports, retention_now, now
            )
            waiting.pop(0)
        path = write_report(
            config.report_dir, config.state_dir, report, config.reports, retention_now
        )
    except KeysyncError as error:
        log.error("%s: %s", run.repository.name, error)
        return kept(state, [*waiting, report.to_json()]), report, str(error)
    return replace(state, unwritten_reports=()), replace(report, id=path.stem), None


def kept(state: RepositoryState, documents: list[dict[str, Any]]) -> RepositoryState:
    """Return ``state`` keeping ``documents`` (oldest first, the oldest abridged then dropped
    past MAX_UNWRITTEN_BYTES or MAX_UNWRITTEN; the newest always kept)."""
    sizes = [len(json.dumps(document)) for document in documents]
    for index, document in enumerate(documents):
        if sum(sizes) <= MAX_UNWRITTEN_BYTES:
            break
        documents[index] = _abridged(document)
        sizes[index] = len(json.dumps(documents[index]))
    dropped = max(len(documents) - MAX_UNWRITTEN, 0)
    while dropped < len(documents) - 1 and sum(sizes[dropped:]) > MAX_UNWRITTEN_BYTES:
        dropped += 1
    for document in documents[:dropped]:
        log.error("%s: report %s dropped: report_dir could not take it", state.name, document["id"])
    if dropped:
        state = journal.counted(state, *["reports:dropped"] * dropped)
    return replace(state, unwritten_reports=tuple(documents[dropped:]))


def _abridged(document: dict[str, Any]) -> dict[str, Any]:
    """Return ``document`` without nodes, digests and details, its messages shortened."""
    note = (
        "abridged while report_dir could not take it: the per-node table, the expected "
        "digests and the details were dropped, the messages shortened, to keep the journal small"
    )
    messages = [str(m)[:ABRIDGED_MESSAGE] for m in list(document.get("messages", []))[:20]]
    return {**document, "nodes": {}, "expected": {}, "details": {}, "messages": [*messages, note]}


def not_written(failure: str, kept: int) -> str:
    """Return what the result says of a report not written (``kept``: those kept now)."""
    earlier = f" with {plural(kept - 1, 'earlier one')}" if kept > 1 else ""
    return (
        f"the report could not be written ({failure}); it is kept in the journal{earlier} "
        "and written, marked late, by the next action that can"
    )
