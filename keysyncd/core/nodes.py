"""The journal's record of each node: status, backoff, the confirmation that every node holds
the current state (it starts the retirement clock), and ``standing``. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import NodeRecord, RepositoryState, every_node_holds, frozen
from keysyncd.core.policy import confirm_demotions
from keysyncd.core.vocabulary import GOOD, RETRIED_WITH_BACKOFF, STALE, state_of

if TYPE_CHECKING:  # only the acting commands, which report, need the report model loaded
    from keysyncd.core.report import NodeOutcome

BACKOFF_CAP = 3600.0


def record_nodes(
    state: RepositoryState, checks: Mapping[str, NodeOutcome], now: float
) -> RepositoryState:
    """Return ``state`` with each checked node's status; a good one is verified at the
    current generation, and backoff is cleared for every node that answered."""
    nodes = dict(state.nodes)
    for name, check in checks.items():
        before = nodes.get(name, NodeRecord())
        record = replace(
            before, status=check.status, reason=check.reason, error=check.error, checked_at=now
        )
        if check.status in GOOD:
            record = replace(record, last_verified_at=now, generation=state.generation)
        if check.reason not in RETRIED_WITH_BACKOFF:
            record = replace(record, failures=0, next_attempt_at=None)
        nodes[name] = record
    return replace(state, nodes=frozen(nodes))


def confirm_if_all_verified(
    state: RepositoryState, node_names: Collection[str], now: float
) -> RepositoryState:
    """Return ``state`` with demotions confirmed if every node holds the current generation
    (retirement is timed from that confirmation: keysyncd.core.policy)."""
    if not every_node_holds(state, node_names):
        return state
    return replace(state, history=frozen(confirm_demotions(state.history, now)))


def backoff_delay(failures: int, base: float, jitter: float) -> float:
    """Return seconds to wait after ``failures`` failures in a row: ``base * 2**(failures - 1)``,
    at most an hour (or 16 bases), times ``jitter`` in [0.5, 1] so nodes do not retry together."""
    cap = min(BACKOFF_CAP, 16 * base)
    growth: float = base * 2.0 ** max(failures - 1, 0)
    return min(cap, growth) * jitter


def schedule_backoff(
    state: RepositoryState,
    checks: Mapping[str, NodeOutcome],
    now: float,
    base: float,
    jitter: Callable[[], float],
) -> RepositoryState:
    """Return ``state`` with the next attempt of each unreachable or timed-out node pushed
    back exponentially (``jitter()`` returns a factor in [0.5, 1])."""
    nodes = dict(state.nodes)
    for name, check in checks.items():
        if check.reason in RETRIED_WITH_BACKOFF:
            record = nodes.get(name, NodeRecord())
            failures = record.failures + 1
            delay = backoff_delay(failures, base, jitter())
            nodes[name] = replace(record, failures=failures, next_attempt_at=now + delay)
    return replace(state, nodes=frozen(nodes))


def due_nodes(
    state: RepositoryState, node_names: Collection[str], now: float
) -> tuple[list[str], list[str]]:
    """Return (nodes to check now, nodes still backing off)."""
    due, waiting = [], []
    for name in node_names:
        record = state.nodes.get(name)
        if record is not None and (record.next_attempt_at or 0.0) > now:
            waiting.append(name)
        else:
            due.append(name)
    return due, waiting


def standing(record: NodeRecord | None, generation: int, keys_changed: bool = False) -> str | None:
    """Return a node's status as ``status`` shows it (None: never checked): its last check's as a
    state (``state_of``), but ``stale`` when that check was good and found another generation
    than the controller's ``generation``, or any when ``keys_changed`` since the journal."""
    if record is None or record.status is None:
        return None
    if record.status in GOOD and (keys_changed or record.generation != generation):
        return STALE
    return state_of(record.status)


def stale_because(record: NodeRecord, generation: int, keys_changed: bool = False) -> str:
    """Return why a ``stale`` node is (``standing`` returned STALE for ``record``)."""
    if record.generation != generation:
        verified = "an unknown generation" if record.generation is None else record.generation
        return (
            f"last verified holding generation {verified}; the controller is at generation "
            f"{generation}"
        )
    return (
        f"last verified holding generation {generation}; the controller's keys changed since "
        "(keysyncd records and pushes them on its next sync or check)"
    )


def nodes_in_sync(state: RepositoryState, node_names: Collection[str]) -> int:
    """Return how many of ``node_names`` were last verified holding the current generation
    (a node verified before the controller changed is stale, not in sync)."""
    return sum(
        1 for name in node_names if standing(state.nodes.get(name), state.generation) in GOOD
    )


def checked(
    state: RepositoryState,
    outcomes: Mapping[str, NodeOutcome],
    node_names: Collection[str],
    now: float,
    clock: ClockCheck,
) -> RepositoryState:
    """Return ``state`` after a check of ``outcomes``: each node recorded, and demotions confirmed
    if every node now holds the current generation and the clock is trusted (a confirmation
    times a retirement: an untrusted clock leaves it to a later check)."""
    state = record_nodes(state, outcomes, now)
    return confirm_if_all_verified(state, node_names, now) if clock.trusted else state
