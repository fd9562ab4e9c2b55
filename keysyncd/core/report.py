"""Audit reports: build the value (pure), render it (pure), write it atomically (IO).

One JSON document per action in ``report_dir``. Reports carry SHA-256 digests,
never key material.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
OUTCOMES = ("ok", "partial", "failed", "deferred")


@dataclass(frozen=True)
class NodeOutcome:
    """What happened on one node during an action."""

    status: str  # in_sync, updated, differs, failed, diverged, skipped
    digests: dict[str, str] | None = None
    error: str | None = None
    reason: str | None = None
    duration: float = 0.0
    changes: dict[str, list[int]] = field(default_factory=dict)


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
        document["messages"] = list(self.messages)
        return document


def new_report_id(started_at: float, action: str) -> str:
    """Return a sortable unique id like ``20261122T203000Z-rotate-1a2b3c``."""
    stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{action}-{secrets.token_hex(3)}"


def outcome_of(nodes: dict[str, NodeOutcome]) -> str:
    """Return ``ok`` if every node is fine, ``failed`` if none is, else ``partial``."""
    bad = [n for n in nodes.values() if n.status in ("failed", "differs", "diverged")]
    if not bad:
        return "ok"
    return "failed" if len(bad) == len(nodes) else "partial"
