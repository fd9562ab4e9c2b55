"""Whether the controller's clock can be trusted to time retirement and rotation (SPEC safety
rule 10). Pure. Witnesses: the journal's latest trusted time (a clock behind it stepped back)
and the nodes' median clock. An untrusted clock retires, rotates, confirms and advances
nothing. Only a *fresh* judgement (a majority of the nodes' clocks read in this action,
``needed``; no nodes: always) may trust it, advance the latest time or replace the skew.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from keysyncd.core.journal import ClockRecord, RepositoryState
from keysyncd.core.text import plural
from keysyncd.core.times import rfc3339

SLACK = 5.0  # seconds a clock may be behind the journal: measurement order, not a step


@dataclass(frozen=True)
class ClockCheck:
    """One judgement of the controller's clock at ``now``: ``latest`` recorded in the journal
    (None: nothing yet), ``skew`` (controller minus the nodes' median, seconds; None: no node
    observed) and how many node clocks were ``observed``."""

    now: float
    latest: float | None
    skew: float | None
    observed: int
    max_skew: float
    observed_at: float | None = None  # when the skew was measured (None: no skew)
    needed: int = 0  # node clocks a fresh judgement needs (a majority of those configured)
    fresh: bool = False  # read in this action from enough nodes (else: nothing new learnt)

    @property
    def behind(self) -> float:
        """Return how many seconds the controller is behind its journal (0 if it is not)."""
        return 0.0 if self.latest is None else max(self.latest - self.now, 0.0)

    @property
    def problem(self) -> str | None:
        """Return what is wrong with the clock itself (None: nothing seen wrong): behind the
        journal, or too far from the nodes it was compared with."""
        if self.behind > SLACK:
            return (
                f"the controller's clock ({rfc3339(self.now)}) is {self.behind:.0f}s behind the "
                f"latest time keysyncd recorded ({rfc3339(self.latest)}): it stepped back"
            )
        if self.skew is not None and abs(self.skew) > self.max_skew:
            direction = "ahead of" if self.skew > 0 else "behind"
            return (
                f"the controller's clock is {abs(self.skew):.0f}s {direction} the median clock "
                f"of {plural(self.observed, 'node')} (clock.max_skew is {self.max_skew:g}s)"
            )
        return None

    @property
    def suspect(self) -> bool:
        """Return True when the clock was seen wrong (an alarm, not a missing witness)."""
        return self.problem is not None

    @property
    def reason(self) -> str | None:
        """Return why the clock is not trusted to time retirement and rotation (None: it is):
        a problem, or too few nodes read to vouch for it."""
        if self.problem is not None:
            return self.problem
        if self.observed < self.needed:
            return (
                f"the clocks of only {plural(self.observed, 'node')} could be read, and "
                f"{self.needed} (a majority of the nodes) must agree with the controller's"
            )
        return None

    @property
    def trusted(self) -> bool:
        """Return True when retirement and rotation may be timed by this clock."""
        return self.reason is None

    def describe(self) -> str:
        """Return the line an action's report carries when the clock is not trusted."""
        return (
            f"clock not trusted: {self.reason}; nothing is retired or rotated until the "
            "clocks agree again"
        )

    def to_json(self) -> dict[str, Any]:
        """Return the check as reports show it (``*_at`` fields become RFC 3339)."""
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "skew": None if self.skew is None else round(self.skew, 3),
            "observed_nodes": self.observed,
            "max_skew": self.max_skew,
            "checked_at": self.now,
            "latest_at": self.latest,
        }


def median(values: Collection[float]) -> float:
    """Return the median of ``values`` (as ``statistics.median``, without its start-up cost);
    raise ValueError if there are none."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values to take the median of")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def judge(
    now: float, latest: float | None, skews: Collection[float], max_skew: float, needed: int = 0
) -> ClockCheck:
    """Return the judgement of the clock reading ``now`` from the journal's latest time, each
    observed node's skew and how many node clocks a fresh judgement needs (fewer: not trusted)."""
    skew = median(skews) if skews else None
    fresh = len(skews) >= needed
    observed_at = now if skews else None
    return ClockCheck(now, latest, skew, len(skews), max_skew, observed_at, needed, fresh)


def latest_recorded(state: RepositoryState) -> float | None:
    """Return the latest time the journal recorded with a trusted clock; an older journal (or a
    damaged field) stands in with every time it holds, except planned ones (backoff)."""
    if state.latest_time is not None:
        return state.latest_time
    times: list[float | None] = [state.last_rotation_at]
    times += [part.at for part in (state.last_action, state.hook_block) if part is not None]
    if state.pending is not None:
        times.append(state.pending.started_at)
    for entry in state.history.values():
        times += [entry.created_at, entry.promoted_at, entry.demoted_at, entry.confirmed_at]
        times += [entry.migrated_at]
    for record in state.nodes.values():
        times += [record.checked_at, record.last_verified_at]
    times += list(state.last_success.values())
    if state.jws is not None:
        pairs = (*state.jws.signing.values(), *state.jws.next.values())
        times += [pair.created_at for pair in pairs]
        times += [key.stopped_at for key in state.jws.retiring.values()]
    return max((when for when in times if when is not None), default=None)


def recorded(state: RepositoryState, check: ClockCheck) -> RepositoryState:
    """Return ``state`` remembering ``check`` if fresh (else the last fresh one stands): a trusted
    clock advances the latest time, an untrusted one leaves it (a clock a day ahead must not
    make the right time look like a step back once fixed)."""
    if not check.fresh:
        return state
    latest = check.latest
    if check.trusted:
        latest = check.now if latest is None else max(latest, check.now)
    checked_at = check.now if check.observed_at is None else check.observed_at
    record = ClockRecord(checked_at, check.skew, check.observed, check.reason)
    return replace(state, latest_time=latest, clock=record)


def current(state: RepositoryState, now: float, max_skew: float) -> ClockCheck:
    """Return the clock's judgement without reading any node: ``now`` against the journal, and
    the skew last observed (a clock found a day ahead stays suspect until nodes are read)."""
    record, latest = state.clock, latest_recorded(state)
    if record is None or record.skew is None:
        return ClockCheck(now, latest, None, 0, max_skew)
    return ClockCheck(now, latest, record.skew, record.observed, max_skew, record.checked_at)


def status_json(state: RepositoryState, now: float, max_skew: float) -> dict[str, Any]:
    """Return the clock as ``status`` shows it (``current``), every time as RFC 3339."""
    check = current(state, now, max_skew)
    times = {"checked_at": rfc3339(check.observed_at), "latest_at": rfc3339(check.latest)}
    return check.to_json() | times
