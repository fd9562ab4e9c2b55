"""When a repository's next rotation is due, and when a missed one is overdue. Pure. Due: the
first scheduled time after the last rotation (in the past while one is missed, for the
alert's ``time()``); overdue ``OVERDUE_PERIODS`` rotation periods later (room for a retry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from keysyncd.core.journal import RepositoryState
from keysyncd.core.schedule import cron_trigger, missed_rotation, next_fire_times, rotation_period
from keysyncd.errors import KeysyncError

OVERDUE_PERIODS = 0.5  # overdue half a rotation period after the rotation was due


@dataclass(frozen=True)
class RotationDue:
    """The rotation due after ``since`` (epoch seconds)."""

    since: float  # the last rotation, or when the keys in service took over (never rotated)
    due_at: float  # the first scheduled time after ``since``
    overdue_at: float  # due_at plus OVERDUE_PERIODS x the rotation period

    def overdue(self, now: float) -> bool:
        """Return True if the due rotation has not happened by ``overdue_at``."""
        return now > self.overdue_at


def rotated_since(state: RepositoryState) -> float | None:
    """Return when the keys in service were last rotated (any kind), or when they took over
    (``init``, ``adopt``: the primary's promotion, a JWS repository's oldest signing pair);
    None: no keys known yet (nothing is due before ``init``)."""
    times = (state.last_rotation_at, state.last_success.get("rotate"))
    rotated = [when for when in times if when is not None]
    if rotated:
        return max(rotated)
    if state.jws is not None and state.jws.signing:
        return min(pair.created_at for pair in state.jws.signing.values())
    primary = max((index for index in state.digests if index > 0), default=None)
    entry = state.history.get(primary) if primary is not None else None
    if entry is None:
        return None
    return entry.promoted_at if entry.promoted_at is not None else entry.created_at


def rotation_due(schedule: str, timezone: str, since: float) -> RotationDue | None:
    """Return the rotation ``schedule`` (in ``timezone``) makes due after ``since``, None if it
    never fires again; the period is the shortest gap between the fire times after the due one
    (none after it: no grace). Raise KeysyncError if the schedule or timezone is invalid."""
    trigger = cron_trigger(schedule, timezone)
    upcoming = next_fire_times(trigger, datetime.fromtimestamp(since, UTC), 1)
    if not upcoming:
        return None
    due = upcoming[0]
    try:
        period = rotation_period(trigger, due)
    except KeysyncError:
        period = 0.0
    due_at = due.timestamp()
    return RotationDue(since, due_at, due_at + OVERDUE_PERIODS * period)


def overdue_since(state: RepositoryState, schedule: str, timezone: str, now: float) -> float | None:
    """Return when the rotation now overdue was due (None: none), the rule ``status``, the metric
    and the alert share; raise KeysyncError if the schedule or timezone is invalid."""
    since = rotated_since(state)
    if since is None or not missed_rotation(schedule, timezone, since, now):
        return None  # nothing fell due yet: no rotation period to sample (a lighter status)
    due = rotation_due(schedule, timezone, since)
    return due.due_at if due is not None and due.overdue(now) else None
