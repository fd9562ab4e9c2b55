"""The audit report of one action, as a value; pure (``keysyncd.io.local.reportstore`` writes
it). Digests, never key material. Schema 2 (schemas/report.schema.json) writes every time as
RFC 3339 UTC with microseconds; schema 1 (report.v1.schema.json) wrote epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 2
TIME_MAPS = frozenset({"backoff"})  # details whose values are all times (node -> when)


def precise_time(timestamp: float) -> str | None:
    """Return ``2026-11-22T20:00:00.123456Z`` (RFC 3339, UTC, microseconds) for epoch seconds,
    None for a time no clock shows."""
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, ValueError, OSError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_times(value: Any, is_time: bool = False) -> Any:
    """Return ``value`` (JSON-ready) with every time in it written as reports write them, RFC
    3339: values under keys ending in ``_at`` and those of TIME_MAPS, at any depth (what the
    command line shows of a report's part, a dry run's plan, is what the report says)."""
    if isinstance(value, Mapping):
        return {key: _field(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_times(item, is_time) for item in value]
    if is_time and isinstance(value, int | float) and not isinstance(value, bool):
        return precise_time(value)
    return value


def _field(key: str, value: Any) -> Any:
    if key in TIME_MAPS and isinstance(value, Mapping):
        return {name: json_times(when, True) for name, when in value.items()}
    return json_times(value, key.endswith("_at"))


@dataclass(frozen=True)
class NodeOutcome:
    """What happened on one node during an action (``status``: a NodeStatus)."""

    status: str
    digests: dict[str, str] | None = None
    error: str | None = None
    reason: str | None = None
    duration: float = 0.0
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """One action's audit record."""

    id: str
    action: str
    trigger: str
    repository: str
    started_at: float
    ended_at: float
    outcome: str
    generation: int | None = None
    expected: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, NodeOutcome] = field(default_factory=dict)
    forced: bool = False
    messages: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict (with ``schema_version``)."""
        document = asdict(self)
        document["schema_version"] = SCHEMA_VERSION
        document["started_at"] = precise_time(self.started_at)
        document["ended_at"] = precise_time(self.ended_at)
        document["details"] = json_times(document["details"])
        document["messages"] = list(self.messages)
        for node in document["nodes"].values():
            node["changes"] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in node["changes"].items()
            }
        return document
