"""The audit report of one action, as a value; pure. ``keysyncd.io.reportstore`` writes it.

Reports carry SHA-256 digests, never key material.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


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
        document["messages"] = list(self.messages)
        for node in document["nodes"].values():
            node["changes"] = {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in node["changes"].items()
            }
        return document
