"""The parts of a repository's journal (``keysyncd.core.journal.RepositoryState``): an
in-flight rotation, node records, the last action, a blocking after_rotate hook, the clock's
judgement and the duration histograms. Pure values.
"""

from __future__ import annotations

from dataclasses import dataclass

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class PendingRotation:
    """A rotation that was started: enough to finish or roll it back after a crash."""

    new_primary: int
    old_staged_digest: str
    new_staged_digest: str
    retire: tuple[int, ...]
    started_at: float


@dataclass(frozen=True)
class NodeRecord:
    """What keysyncd last knew about one node of one repository."""

    status: str | None = None
    reason: str | None = None
    error: str | None = None
    checked_at: float | None = None
    last_verified_at: float | None = None
    generation: int | None = None  # the controller generation it was verified holding
    failures: int = 0  # failed attempts in a row that back off (unreachable, timeout)
    next_attempt_at: float | None = None


@dataclass(frozen=True)
class LastAction:
    """The last action's summary, as ``status`` shows it."""

    action: str
    outcome: str
    at: float
    report: str


@dataclass(frozen=True)
class HookBlock:
    """An after_rotate hook that has not succeeded: it blocks the next rotation until it does.
    Journaled before the hook starts (``status`` None, ``problem`` empty), so that a hook killed
    with keysyncd still blocks; ``problem``: how it ended if not by itself (``timed out ...``)."""

    hook: tuple[str, ...]
    status: int | None
    at: float
    problem: str = ""

    def outcome(self) -> str:
        """Return how the hook ended, in words (never "status None")."""
        if self.problem:
            return self.problem
        if self.status is None:
            return "did not finish (keysyncd was stopped or killed while it ran)"
        if self.status < 0:
            return f"was killed by signal {-self.status}"
        return f"exited with status {self.status}"

    def describe(self) -> str:
        """Return why rotation is blocked, and what clears it."""
        return (
            f"rotation blocked: after_rotate hook {' '.join(self.hook)!r} {self.outcome()}; "
            "it must succeed before the next rotation (each rotate retries it first)"
        )


@dataclass(frozen=True)
class ClockRecord:
    """The clock's last judgement (``keysyncd.core.clock``): when, the skew from the nodes' median
    (None: none observed), how many were observed, why it was not trusted (None: it was)."""

    checked_at: float
    skew: float | None = None
    observed: int = 0
    untrusted: str | None = None


@dataclass(frozen=True)
class Durations:
    """A cumulative histogram of one action's durations (Prometheus buckets)."""

    buckets: tuple[int, ...] = (0,) * len(DURATION_BUCKETS)
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> Durations:
        """Return the histogram with one more observation."""
        counts = tuple(
            count + (seconds <= bound)
            for count, bound in zip(self.buckets, DURATION_BUCKETS, strict=True)
        )
        return Durations(counts, self.count + 1, self.total + max(seconds, 0.0))
