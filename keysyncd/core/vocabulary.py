"""The words every layer shares: actions, triggers, node statuses, reasons and outcomes. One
``GOOD`` set and one ``outcome_of`` serve reports, metrics, the renderer, drift and the
daemon, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Action(StrEnum):
    """What a report is about."""

    INIT = "init"
    ADOPT = "adopt"
    ROTATE = "rotate"
    SYNC = "sync"
    VERIFY = "verify"
    DRIFT = "drift"  # a change keysyncd did not make, found locally or on a node
    MIGRATE = "migrate"  # the operator confirmed a credential migration (confirm-migration)
    REVOKE = "revoke"  # a leaked key removed from every node now (keysyncd revoke)


class Trigger(StrEnum):
    """What started an action."""

    CLI = "cli"
    CRON = "cron"
    SIGNAL = "signal"
    WATCH = "watch"


class NodeStatus(StrEnum):
    """One node's state at the end of an action."""

    PENDING = "pending"
    IN_SYNC = "in_sync"  # verified, nothing needed changing
    UPDATED = "updated"  # pushed and verified by read-back
    REPAIRED = "repaired"  # drift found and repaired (verified by read-back)
    DIFFERS = "differs"  # read, and not what it should be
    DIVERGED = "diverged"  # holds a newer or unrelated key set: left alone
    FAILED = "failed"
    SKIPPED = "skipped"  # not tried: backing off after failures


GOOD = frozenset({NodeStatus.IN_SYNC, NodeStatus.UPDATED, NodeStatus.REPAIRED})
# The statuses after which the differences a node had were fixed: its line says what was
# done (``added key 4``), every other says what differs (``missing key 4``).
CHANGED = frozenset({NodeStatus.UPDATED, NodeStatus.REPAIRED})


def state_of(status: str) -> str:
    """Return what a node IS after a check ending with ``status``: ``in_sync`` for every good one
    (``updated``, ``repaired`` say what an action did), else the status itself."""
    return NodeStatus.IN_SYNC if status in GOOD else status


# What ``status`` shows for a node whose last good check found an earlier generation: never
# an action's NodeStatus (``keysyncd.core.nodes.standing`` derives it); not GOOD (exit 1).
STALE = "stale"


class Reason(StrEnum):
    """Why a node failed, in a word an operator (and an alert rule) can act on."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTH = "auth"
    HOST_KEY = "host_key"
    PERMISSION = "permission"
    DISK_FULL = "disk_full"
    DIGEST_MISMATCH = "digest_mismatch"
    INVALID = "invalid"
    INVALID_ENTRY = "invalid_entry"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    ERROR = "error"


DOWN = frozenset({Reason.UNREACHABLE, Reason.TIMEOUT, Reason.AUTH, Reason.HOST_KEY})
RETRIED_WITH_BACKOFF = frozenset({Reason.UNREACHABLE, Reason.TIMEOUT})


class Outcome(StrEnum):
    """How an action ended."""

    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    DEFERRED = "deferred"


def outcome_after_push(found: Iterable[tuple[str, bool]]) -> Outcome:
    """Return a sync's outcome after a dry run found each node's (status, fixable): a fixable node
    that ``differs`` would be updated, an unfixable one fails, others stay as they are."""
    return outcome_of(
        (NodeStatus.UPDATED if fixable else NodeStatus.FAILED) if s == NodeStatus.DIFFERS else s
        for s, fixable in found
    )


def outcome_of(statuses: Iterable[str]) -> Outcome:
    """Return ``ok`` when every node is good (or there are none), ``failed`` when none is,
    else ``partial``. A skipped node was not verified, so it is not good."""
    found = list(statuses)
    good = sum(1 for status in found if status in GOOD)
    if good == len(found):
        return Outcome.OK
    return Outcome.FAILED if good == 0 else Outcome.PARTIAL


# The daemon's check every ``drift.verify_interval`` seconds: an interval, not a cron schedule
# (its reports keep the trigger ``cron``: not started by a person), as logs and status say.
PERIODIC_VERIFY = "periodic verify"


def job_name(action: str, trigger: str) -> str:
    """Return what a daemon job is called in its log lines, the lock and ``status``:
    ``periodic verify`` for the interval check, else ``rotate (cron)``, ``sync (signal)``."""
    return PERIODIC_VERIFY if action == "check" else f"{action} ({trigger})"
