"""Metrics of the running daemon itself, read from its self-description (``daemon.json``).

Like every other metric they come from what is on disk, so the textfile a CLI action writes
and the daemon's HTTP endpoint agree; they count from the daemon's start, as counters do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, Metric

from keysyncd.io.runtime.daemon_info import read_daemon_info


def daemon_metrics(state_dir: Path) -> Iterator[Metric]:
    """Yield ``keysyncd_config_reload_failures_total``: reloads that kept the previous
    config because the new one was invalid or unsafe (0 when no daemon runs)."""
    info = read_daemon_info(state_dir) or {}
    failures = info.get("config_reload_failures", 0)
    counter = CounterMetricFamily(
        "keysyncd_config_reload_failures",
        "Config reloads rejected (invalid or unsafe config; the previous one was kept)",
    )
    counter.add_metric([], failures if isinstance(failures, int) and failures >= 0 else 0)
    yield counter
