"""Fleet actions on one repository: verify (read-only) and sync (push + read-back).

Both write one report and record node status in the state journal.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from keysyncd.actions.local import open_repository, policy_of, prepare, resolve_id, retire_due
from keysyncd.config import Config, NodeConfig, RepositoryConfig
from keysyncd.core.keyring import KeySet
from keysyncd.core.policy import confirm_demotions
from keysyncd.core.report import NodeOutcome, Report, new_report_id, outcome_of
from keysyncd.io.fleet import FleetAction, NodeResult, Progress
from keysyncd.io.metrics import write_metrics
from keysyncd.io.reportstore import write_report
from keysyncd.io.state import RepositoryState, load_state, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionResult:
    """What an action did: its report (already written) and the node results."""

    report: Report
    results: dict[str, NodeResult]


def node_owner(repository: RepositoryConfig) -> tuple[int | None, int | None]:
    """Return numeric (uid, gid) to set on nodes; names are resolved on the controller."""
    return resolve_id(repository.owner, "user"), resolve_id(repository.group, "group")


def start_fleet(
    config: Config,
    repository: RepositoryConfig,
    nodes: list[NodeConfig],
    progress: Progress | None,
    cancel: threading.Event | None = None,
) -> FleetAction:
    """Return a FleetAction for ``nodes`` with every connection attempted."""
    fleet = FleetAction(repository, nodes, config.ssh, node_owner(repository), progress, cancel)
    fleet.open()
    return fleet


def node_outcomes(results: dict[str, NodeResult]) -> dict[str, NodeOutcome]:
    """Return the report's per-node section for ``results``."""
    outcomes = {}
    for name, result in results.items():
        seen = result.verified or result.view
        outcomes[name] = NodeOutcome(
            status=result.status,
            digests=seen.summary() if seen else None,
            error=str(result.error) if result.error else None,
            reason=result.error.reason if result.error else None,
            duration=round(result.duration or time.monotonic() - result.started, 3),
            changes=result.plan.changes() if result.plan and not result.plan.in_sync else {},
        )
    return outcomes


def record_nodes(
    state: RepositoryState, results: dict[str, NodeResult], now: float
) -> RepositoryState:
    """Return ``state`` with each node's last status (and when it last verified)."""
    nodes = dict(state.nodes)
    for name, result in results.items():
        entry: dict[str, Any] = dict(nodes.get(name, {}))
        entry["status"] = result.status
        entry["error"] = str(result.error) if result.error else None
        entry["reason"] = result.error.reason if result.error else None
        entry["checked_at"] = now
        if result.ok:
            entry["last_verified_at"] = now
            entry["generation"] = state.generation
        nodes[name] = entry
    return replace(state, nodes=nodes)


def confirm_if_all_verified(
    state: RepositoryState, node_names: list[str], now: float
) -> RepositoryState:
    """Return ``state`` with demotions confirmed if every node holds the current generation.

    Retirement is timed from that confirmation (see keysyncd.core.policy).
    """
    for name in node_names:
        entry = state.nodes.get(name, {})
        if entry.get("status") not in ("in_sync", "updated") or (
            entry.get("generation") != state.generation
        ):
            return state
    return replace(state, history=confirm_demotions(state.history, now))


def finish_report(
    config: Config,
    repository: RepositoryConfig,
    action: str,
    trigger: str,
    started: float,
    state: RepositoryState,
    results: dict[str, NodeResult],
    outcomes: dict[str, NodeOutcome] | None = None,
    **extra: Any,
) -> Report:
    """Build, write and return the report of an action; record it as the last action.

    ``outcomes`` replaces the per-node section built from ``results`` when given.
    """
    outcomes = outcomes if outcomes is not None else node_outcomes(results)
    state = confirm_if_all_verified(state, [node.name for node in config.nodes], time.time())
    report = Report(
        id=new_report_id(started, action),
        action=action,
        trigger=trigger,
        repository=repository.name,
        started_at=started,
        ended_at=time.time(),
        outcome=extra.pop("outcome", None) or outcome_of(outcomes),
        generation=state.generation,
        expected={str(i): d for i, d in sorted(state.digests.items())},
        nodes=outcomes,
        **extra,
    )
    write_report(config.report_dir, config.state_dir, report, config.reports, time.time())
    last = {"action": action, "outcome": report.outcome, "at": report.ended_at, "report": report.id}
    state = replace(state, last_action=last)
    if report.outcome == "ok":
        state = replace(state, last_success={**state.last_success, action: report.ended_at})
    if report.outcome == "deferred":
        state = state.counted("deferred")
    save_state(config.state_dir, state)
    write_metrics(config)
    return report


def selected_nodes(config: Config, only: str | None) -> list[NodeConfig]:
    """Return every node, or just ``only`` (raise KeysyncError if unknown)."""
    return [config.node(only)] if only else list(config.nodes)


def verify_repository(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    progress: Progress | None = None,
    node: str | None = None,
    cancel: threading.Event | None = None,
) -> ActionResult:
    """Read every node and compare it with the local repository; change nothing anywhere."""
    started = time.time()
    state = load_state(config.state_dir, repository.name)
    keyset = open_repository(repository).load()
    fleet = start_fleet(config, repository, selected_nodes(config, node), progress, cancel)
    try:
        fleet.inspect(keyset.digests())
    finally:
        results = fleet.finish()
    state = record_nodes(state, results, time.time())
    report = finish_report(config, repository, "verify", trigger, started, state, results)
    return ActionResult(report, results)


def push_keyset(fleet: FleetAction, keyset: KeySet, force: bool = False) -> None:
    """Inspect, push in two phases and verify ``keyset`` on every healthy node of ``fleet``."""
    expected = keyset.digests()
    fleet.inspect(expected, force)
    fleet.push(keyset)
    fleet.verify(expected)


def sync_repository(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    progress: Progress | None = None,
    node: str | None = None,
    force: bool = False,
    cancel: threading.Event | None = None,
) -> ActionResult:
    """Push the local repository to every node (or one) and verify it; caller holds the lock."""
    started = time.time()
    repo = open_repository(repository)
    keyset, state, foreign = prepare(repo, load_state(config.state_dir, repository.name), started)
    if foreign:
        log.warning(
            "%s: local keys changed outside keysyncd; now generation %d",
            repository.name,
            state.generation,
        )
    # keys kept past max_active_keys go at the first action at which that is safe (rule 2)
    keyset, state, retired = retire_due(repo, keyset, state, policy_of(repository), started)
    messages = (f"retired keys {list(retired)}: no live token can need them",) if retired else ()
    save_state(config.state_dir, state)
    fleet = start_fleet(config, repository, selected_nodes(config, node), progress, cancel)
    try:
        push_keyset(fleet, keyset, force)
    finally:
        results = fleet.finish()
    state = record_nodes(state, results, time.time())
    report = finish_report(
        config,
        repository,
        "sync",
        trigger,
        started,
        state,
        results,
        forced=force,
        messages=messages,
    )
    return ActionResult(report, results)
