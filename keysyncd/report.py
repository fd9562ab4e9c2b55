"""Audit reports: build the value (pure), render it (pure), write it atomically (IO).

One JSON document per action in ``report_dir``. Reports carry SHA-256 digests,
never key material.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keysyncd.errors import KeysyncError
from keysyncd.fsutil import atomic_write, describe_os_error

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


def write_report(report_dir: Path, report: Report) -> Path:
    """Write ``report`` atomically as ``<report_dir>/<id>.json``; return its path.

    Raise KeysyncError if it cannot be written.
    """
    path = report_dir / f"{report.id}.json"
    try:
        report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = json.dumps(report.to_json(), indent=2, sort_keys=True).encode() + b"\n"
        atomic_write(path, content, mode=0o640)
    except OSError as error:
        raise KeysyncError(f"cannot write report {path}: {describe_os_error(error)}") from None
    return path


def list_reports(report_dir: Path) -> list[Path]:
    """Return report files, oldest first (ids sort by time)."""
    try:
        names = sorted(n for n in os.listdir(report_dir) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    return [report_dir / name for name in names]
