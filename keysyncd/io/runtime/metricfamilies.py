"""The metric families keysyncd exports, and how one repository's journal fills them."""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from keysyncd.config import RepositoryConfig
from keysyncd.core import clock
from keysyncd.core.due import rotated_since, rotation_due
from keysyncd.core.journal import DURATION_BUCKETS, Durations, NodeRecord, RepositoryState
from keysyncd.core.keyring import PRIMARY, SECONDARY, STAGED
from keysyncd.core.nodes import nodes_in_sync, standing
from keysyncd.core.revocation import may_hold
from keysyncd.core.vocabulary import DOWN, GOOD
from keysyncd.errors import KeysyncError


def key_ages(state: RepositoryState, now: float) -> dict[str, float]:
    """Return, per role, how long the longest-serving key has held it."""
    primary = max((i for i in state.digests if i > 0), default=None)
    ages: dict[str, float] = {}
    for index, entry in state.history.items():
        if index not in state.digests:
            continue
        if index == 0:
            role, since = STAGED, entry.created_at
        elif index == primary:
            role, since = PRIMARY, entry.promoted_at
        else:
            role, since = SECONDARY, entry.demoted_at
        if since is not None:
            ages[role] = max(ages.get(role, 0.0), now - since)
    return ages


class Families:
    """The metric families of one collection, filled repository by repository."""

    def __init__(self, max_skew: float = 300.0) -> None:
        self.max_skew = max_skew  # clock.max_skew, to judge the recorded skew
        self._repository_families()
        self._node_families()
        self._health_families()
        self._rotation_families()

    def _repository_families(self) -> None:
        """Make the families of a repository's keys, generation, successes and node count."""
        self.key_age = _gauge(
            "keysyncd_key_age_seconds", "How long the longest-serving key has held its role", "role"
        )
        self.generation = _gauge("keysyncd_generation", "Repository generation")
        self.last = _gauge(
            "keysyncd_last_success_timestamp_seconds", "When each action last succeeded", "action"
        )
        self.since = _gauge(
            "keysyncd_last_success_age_seconds",
            "Seconds since each action last succeeded",
            "action",
        )
        self.in_sync = _gauge("keysyncd_nodes_in_sync", "Nodes verified in sync")
        # a gauge: no _total suffix, which Prometheus reserves for counters
        self.total = _gauge("keysyncd_nodes", "Configured nodes")

    def _node_families(self) -> None:
        """Make the families of each node: verified when, up, generations behind."""
        self.verified = _gauge(
            "keysyncd_node_last_verified_timestamp_seconds",
            "When the node was last verified in sync",
            "node",
        )
        self.up = _gauge("keysyncd_node_up", "1 if the node answered at its last check", "node")
        self.behind = _gauge(
            "keysyncd_node_generations_behind",
            "Generations the node lags behind the controller",
            "node",
        )
        self.revoked_held = _gauge(
            "keysyncd_node_revoked_key_held",
            "1 while a revocation is under way and the node was not verified without its key",
            "node",
        )

    def _health_families(self) -> None:
        """Make the families of drift, deferrals, local validity, durations, the clock, reports."""
        self.drift = _counter("keysyncd_drift_events", "Drift events by kind", "kind")
        self.deferrals = _counter("keysyncd_deferrals", "Rotations deferred")
        self.invalid = _gauge(
            "keysyncd_local_repository_invalid", "1 while the local repository is invalid"
        )
        self.durations = HistogramMetricFamily(
            "keysyncd_action_duration_seconds",
            "Duration of actions (kept in the state journal)",
            labels=["action"],
        )
        self.clock_skew = _gauge(
            "keysyncd_clock_skew_seconds",
            "The controller's clock minus the nodes' median clock at the last action",
        )
        self.clock_untrusted = _gauge(
            "keysyncd_clock_untrusted",
            "1 while the controller's clock is not trusted: nothing is retired or rotated",
        )
        self.unwritten = _gauge(
            "keysyncd_unwritten_reports",
            "Reports kept in the journal because report_dir could not take them",
        )

    def _rotation_families(self) -> None:
        """Make the families of the rotation schedule."""
        # timestamps, not ages: a textfile freezes gauges, a timestamp keeps ageing (the
        # alert compares them with time(); see keysyncd.core.due for the grace)
        self.next_rotation = _gauge(
            "keysyncd_next_rotation_timestamp_seconds",
            "When the next rotation is due: the first scheduled time after the last rotation "
            "(in the past while a rotation is missed)",
        )
        self.overdue_at = _gauge(
            "keysyncd_rotation_overdue_timestamp_seconds",
            "When the due rotation counts as overdue: the due time plus half a rotation period",
        )
        self.overdue = _gauge(
            "keysyncd_rotation_overdue",
            "1 while the due rotation is overdue (as of the last collection)",
        )

    def add_repository(
        self, name: str, state: RepositoryState, nodes: list[str], now: float
    ) -> None:
        for role, age in sorted(key_ages(state, now).items()):
            self.key_age.add_metric([name, role], age)
        self.generation.add_metric([name], state.generation)
        successes = dict(state.last_success)
        if state.last_rotation_at is not None:
            successes["rotate"] = max(successes.get("rotate", 0.0), state.last_rotation_at)
        for action, when in sorted(successes.items()):
            self.last.add_metric([name, action], when)
            self.since.add_metric([name, action], now - when)
        for node in nodes:
            record = state.nodes.get(node, NodeRecord())
            if record.last_verified_at is not None:
                self.verified.add_metric([name, node], record.last_verified_at)
            self.up.add_metric([name, node], 0 if record.reason in DOWN else 1)
            behind = state.generation - (record.generation or 0)
            # a node verified before the controller changed lags: stale, not in sync
            in_sync = standing(record, state.generation) in GOOD
            self.behind.add_metric([name, node], 0 if in_sync else behind)
        holding = may_hold(state, nodes)
        for node in nodes:
            self.revoked_held.add_metric([name, node], 1 if node in holding else 0)
        self.in_sync.add_metric([name], nodes_in_sync(state, nodes))
        self.total.add_metric([name], len(nodes))
        for counter, value in sorted(state.counters.items()):
            if counter.startswith("drift:"):
                self.drift.add_metric([name, counter.split(":", 1)[1]], value)
        self.deferrals.add_metric([name], state.counters.get("deferred", 0))
        self.invalid.add_metric([name], 1 if state.local_problems else 0)
        self.add_clock(name, state, now)

    def add_rotation_due(
        self, repository: RepositoryConfig, state: RepositoryState, now: float
    ) -> None:
        since = rotated_since(state)
        if since is None:  # no keys yet: nothing is due before init
            return
        try:
            due = rotation_due(repository.schedule, repository.timezone, since)
        except (KeysyncError, OverflowError, ValueError, OSError):
            return  # a journal time out of datetime's range: a scrape never fails for it
        if due is None:  # the schedule never fires again
            return
        name = repository.name
        self.next_rotation.add_metric([name], due.due_at)
        self.overdue_at.add_metric([name], due.overdue_at)
        self.overdue.add_metric([name], 1 if due.overdue(now) else 0)

    def add_clock(self, name: str, state: RepositoryState, now: float) -> None:
        check = clock.current(state, now, self.max_skew)
        if check.skew is not None:
            self.clock_skew.add_metric([name], check.skew)
        self.clock_untrusted.add_metric([name], 0 if check.trusted else 1)
        self.unwritten.add_metric([name], len(state.unwritten_reports))

    def add_durations(self, durations: dict[str, Durations]) -> None:
        for action, histogram in sorted(durations.items()):
            buckets = [
                (str(bound), count)
                for bound, count in zip(DURATION_BUCKETS, histogram.buckets, strict=True)
            ]
            buckets.append(("+Inf", histogram.count))
            self.durations.add_metric([action], buckets, histogram.total)

    def all(self) -> list[Metric]:
        """Return every family, in the order they were made (the order exported)."""
        return [family for family in vars(self).values() if isinstance(family, Metric)]


def _gauge(name: str, words: str, label: str | None = None) -> GaugeMetricFamily:
    """Return a gauge by repository (and ``label``)."""
    return GaugeMetricFamily(name, words, labels=["repository", *([label] if label else [])])


def _counter(name: str, words: str, label: str | None = None) -> CounterMetricFamily:
    """Return a counter by repository (and ``label``)."""
    return CounterMetricFamily(name, words, labels=["repository", *([label] if label else [])])
