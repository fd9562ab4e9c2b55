"""Drift: changes keysyncd did not make, locally (watch) or on nodes (periodic verify).

Local changes are told apart from keysyncd's own writes by comparing the disk with
the journal, never by timing. Nodes that cannot be reached are retried with
exponential backoff and jitter. Callers hold the lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from typing import Any

from keysyncd.actions.distribute import finish_report, node_outcomes, record_nodes, start_fleet
from keysyncd.actions.local import open_repository, reconcile, recover
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.nodeplan import describe_changes
from keysyncd.core.report import NodeOutcome, Report
from keysyncd.io.fleet import NodeResult, Progress
from keysyncd.io.state import RepositoryState, load_state, save_state

log = logging.getLogger(__name__)
BACKOFF_CAP = 3600.0


def backoff_delay(failures: int, base: float, jitter: float) -> float:
    """Return seconds to wait before retrying a node after ``failures`` failures in a row.

    ``base * 2**(failures - 1)``, capped at an hour (or 16 bases), scaled by ``jitter``
    in [0.5, 1] so that many nodes that failed together do not retry together.
    """
    cap = min(BACKOFF_CAP, 16 * base)
    return min(cap, base * 2 ** max(failures - 1, 0)) * jitter


def check_local(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Report | None:
    """Validate the local repository against the journal; return a report if anything happened.

    Invalid states are reported (every time, until fixed) and never pushed; a valid
    foreign change becomes a new generation and is pushed or only reported.
    """
    now = time.time()
    repo = open_repository(repository)
    state = recover(repo, load_state(config.state_dir, repository.name))
    scan = repo.scan()
    problems = list(scan.problems) + (repo.permission_problems() if repo.holds_keys() else [])
    if problems:
        for problem in problems:
            log.error("%s: invalid local repository, not pushed: %s", repository.name, problem)
        if tuple(problems) != state.local_problems:
            state = state.counted("drift:local_invalid")
        state = replace(state, local_problems=tuple(problems))
        return finish_report(
            config,
            repository,
            "drift",
            trigger,
            now,
            state,
            {},
            outcome="failed",
            messages=tuple(problems),
            details={"local": {"valid": False, "problems": problems}},
        )
    if state.local_problems:
        log.info("%s: the local repository is valid again", repository.name)
        state = replace(state, local_problems=())
    state, foreign = reconcile(scan.keyset, state, now)
    save_state(config.state_dir, state)
    if not foreign:
        return None
    state = state.counted("drift:local_change")
    message = f"local repository changed outside keysyncd: now generation {state.generation}"
    log.warning("%s: %s", repository.name, message)
    results: dict[str, NodeResult] = {}
    if config.drift.on_local_change == "sync" and config.nodes:
        fleet = start_fleet(config, repository, list(config.nodes), progress, cancel)
        try:
            expected = scan.keyset.digests()
            fleet.inspect(expected)
            fleet.push(scan.keyset)
            fleet.verify(expected)
        finally:
            results = fleet.finish()
        state = record_nodes(state, results, time.time())
        action = "sync"
    else:
        message += " (not pushed: drift.on_local_change is alert)" if config.nodes else ""
        action = "drift"
    return finish_report(
        config,
        repository,
        action,
        trigger,
        now,
        state,
        results,
        messages=(message,),
        details={"local": {"valid": True}},
    )


def report_watch_failure(config: Config, repository: RepositoryConfig, failure: str) -> Report:
    """Write the report that the local watch of ``repository`` is unavailable."""
    state = load_state(config.state_dir, repository.name)
    message = f"local watch unavailable ({failure}); the periodic verify still covers it"
    return finish_report(
        config,
        repository,
        "drift",
        "watch",
        time.time(),
        state,
        {},
        outcome="failed",
        messages=(message,),
        details={"watch": {"available": False, "error": failure}},
    )


def check_fleet(
    config: Config,
    repository: RepositoryConfig,
    trigger: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    rng: random.Random | None = None,
) -> Report | None:
    """Verify every node not in backoff; repair drift if configured; return the report.

    Return None when there are no nodes or the local repository is invalid (that is
    reported by ``check_local``).
    """
    now = time.time()
    state = load_state(config.state_dir, repository.name)
    if not config.nodes or state.local_problems:
        return None
    keyset = open_repository(repository).load()
    expected = keyset.digests()
    due, waiting = _due_nodes(config, state, now)
    results: dict[str, NodeResult] = {}
    if due:
        fleet = start_fleet(config, repository, due, progress, cancel)
        try:
            fleet.inspect(expected)
            drifted = {
                n: r.plan.changes()
                for n, r in fleet.results.items()
                if r.status == "differs" and r.plan
            }
            if drifted and config.drift.on_remote_drift == "repair":
                fleet.push(keyset)
                fleet.verify(expected)
        finally:
            results = fleet.finish()
    else:
        drifted = {}
    state = _count_drift(state, drifted)
    state = _backoff(
        config,
        record_nodes(state, results, time.time()),
        results,
        now,
        rng or random.Random(),  # noqa: S311 - jitter, not crypto
    )
    outcomes = node_outcomes(results)
    for name, changes in drifted.items():
        repaired = results[name].ok
        outcomes[name] = replace(
            outcomes[name],
            changes=changes,
            status="repaired" if repaired else outcomes[name].status,
        )
    for name, entry in waiting.items():
        outcomes[name] = NodeOutcome(
            status="skipped", reason=entry.get("reason"), error=_waiting_message(entry)
        )
    messages = tuple(
        f"drift on {name}: {describe_changes(changes)}" for name, changes in drifted.items()
    )
    return finish_report(
        config,
        repository,
        "drift" if drifted else "verify",
        trigger,
        now,
        state,
        {},
        outcome=_outcome(outcomes),
        messages=messages,
        outcomes=outcomes,
        details={"backoff": {n: state.nodes[n].get("next_attempt_at") for n in waiting}},
    )


def _due_nodes(config: Config, state: RepositoryState, now: float) -> tuple[list, dict]:  # type: ignore[type-arg]
    due, waiting = [], {}
    for node in config.nodes:
        entry = state.nodes.get(node.name, {})
        if entry.get("next_attempt_at", 0) > now:
            waiting[node.name] = entry
        else:
            due.append(node)
    return due, waiting


def _backoff(
    config: Config,
    state: RepositoryState,
    results: dict[str, NodeResult],
    now: float,
    rng: random.Random,
) -> RepositoryState:
    nodes = dict(state.nodes)
    for name, result in results.items():
        entry = dict(nodes.get(name, {}))
        if result.error is not None and result.error.reason in ("unreachable", "timeout"):
            entry["failures"] = entry.get("failures", 0) + 1
            delay = backoff_delay(
                entry["failures"], config.drift.verify_interval, rng.uniform(0.5, 1.0)
            )
            entry["next_attempt_at"] = now + delay
        else:
            entry.pop("failures", None)
            entry.pop("next_attempt_at", None)
        nodes[name] = entry
    return replace(state, nodes=nodes)


def _count_drift(state: RepositoryState, drifted: dict[str, dict[str, Any]]) -> RepositoryState:
    kinds = [f"drift:{kind}" for changes in drifted.values() for kind, v in changes.items() if v]
    return state.counted(*kinds) if kinds else state


def _waiting_message(entry: dict[str, Any]) -> str:
    return (
        f"backing off after {entry.get('failures', 0)} failed attempts; next attempt at "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(entry['next_attempt_at']))}"
    )


def _outcome(outcomes: dict[str, NodeOutcome]) -> str:
    good = [o for o in outcomes.values() if o.status in ("in_sync", "updated", "repaired")]
    if len(good) == len(outcomes):
        return "ok"
    return "failed" if not good else "partial"
