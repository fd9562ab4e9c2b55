"""Prometheus metrics, computed at collection time from what is on disk (state journal,
``daemon.json``), so the textfile and the HTTP endpoint agree and survive restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from keysyncd.config import Config
from keysyncd.core.journal import Durations
from keysyncd.errors import KeysyncError
from keysyncd.io.local.fsutil import atomic_write
from keysyncd.io.local.state import load_state
from keysyncd.io.runtime.daemon_info import read_daemon_info
from keysyncd.io.runtime.metricfamilies import Families
from keysyncd.io.runtime.metricsserver import serve

log = logging.getLogger(__name__)


class StateCollector(Collector):
    """Collects every keysyncd metric from ``config``'s state and reports."""

    def __init__(
        self, config: Callable[[], Config], clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config  # a callable, so a reloaded config is used at the next scrape
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (see the module docstring)."""
        now = self.clock()
        config = self.config()
        f = Families(config.clock.max_skew)
        durations: dict[str, Durations] = {}
        for repository in config.repositories:
            try:
                state = load_state(config.state_dir, repository.name)
            except KeysyncError:
                continue
            f.add_repository(repository.name, state, [n.name for n in config.nodes], now)
            f.add_rotation_due(repository, state, now)
            for action, histogram in state.durations.items():
                durations[action] = _merged(durations.get(action), histogram)
        f.add_durations(durations)
        yield from f.all()
        yield from daemon_metrics(config.state_dir)


def daemon_metrics(state_dir: Path) -> Iterator[Metric]:
    """Yield ``keysyncd_config_reload_failures_total``: reloads that kept the previous
    config because the new one was invalid or unsafe (0 when no daemon runs; counted from
    the daemon's start, as counters are)."""
    info = read_daemon_info(state_dir) or {}
    failures = info.get("config_reload_failures", 0)
    counter = CounterMetricFamily(
        "keysyncd_config_reload_failures",
        "Config reloads rejected (invalid or unsafe config; the previous one was kept)",
    )
    counter.add_metric([], failures if isinstance(failures, int) and failures >= 0 else 0)
    yield counter


def _merged(first: Durations | None, second: Durations) -> Durations:
    if first is None:
        return second
    buckets = tuple(a + b for a, b in zip(first.buckets, second.buckets, strict=True))
    return Durations(buckets, first.count + second.count, first.total + second.total)


def registry_for(config: Callable[[], Config]) -> CollectorRegistry:
    """Return a registry holding keysyncd's collector for the config ``config()`` returns."""
    registry = CollectorRegistry()
    registry.register(StateCollector(config))
    return registry


def write_metrics(config: Config) -> None:
    """Write the textfile (atomically, as prometheus_client does) if one is configured."""
    if config.metrics.textfile is None:
        return
    try:
        config.metrics.textfile.parent.mkdir(parents=True, exist_ok=True)
        # Our own atomic write (exclusive random temp name, then rename), not
        # write_to_textfile's predictable temp name in a directory others may write to.
        # Metrics hold no secrets, and node_exporter runs as another user: 0644.
        content = generate_latest(registry_for(lambda: config))
        atomic_write(config.metrics.textfile, content, mode=0o644)
    except OSError as error:
        log.warning("cannot write metrics to %s: %s", config.metrics.textfile, error)


def serve_metrics(config: Callable[[], Config]) -> Any:
    """Serve metrics on ``metrics.listen`` if configured; return the server (or None). Raise
    KeysyncError if the address cannot be bound."""
    listen = config().metrics.listen
    if not listen:
        return None
    host, port = listen.rsplit(":", 1)
    try:  # an empty host is every address, as config.yaml says (io/metricsserver.py)
        server = serve(host, int(port), registry_for(config))
    except OSError as error:
        raise KeysyncError(f"cannot serve metrics on {listen}: {error.strerror}") from None
    return server
