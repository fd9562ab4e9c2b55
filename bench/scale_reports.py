"""Synthetic retained reports for the scale bench: copies of a real report of this run,
widened to a large fleet, with ids older than every real report (so the newest report, the
chain head, stays the real one) and inside the retention window. Each also gets its line in
the summary index, as keysyncd writes one with every report: ``report list`` then reads what
it would read after a real history."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keysyncd.io.local.reportstore import INDEX_FILE, summary

ACTIONS = ("rotate", "sync", "verify")


def node_entry(digests: dict[str, str]) -> dict[str, Any]:
    """Return one node's part of a report, as a sync of a rotated repository writes it."""
    return {
        "changes": {"changed": [0], "missing": [max(int(i) for i in digests)]},
        "digests": dict(digests),
        "duration": 0.123,
        "error": None,
        "reason": None,
        "status": "updated",
    }


def template(report_dir: Path) -> dict[str, Any]:
    """Return the newest real report in ``report_dir`` (raise FileNotFoundError if none)."""
    reports = sorted(report_dir.glob("*.json"))
    if not reports:
        raise FileNotFoundError(f"no report in {report_dir} to copy")
    document: dict[str, Any] = json.loads(reports[-1].read_text())
    return document


def seed_reports(report_dir: Path, count: int, nodes: int) -> int:
    """Write ``count`` reports of a ``nodes``-node fleet into ``report_dir``, dated in the
    day before the oldest real report; return the bytes written."""
    base = template(report_dir)
    digests = base.get("expected") or {"0": "0" * 64, "1": "1" * 64, "2": "2" * 64}
    fleet = {f"node{index}": node_entry(digests) for index in range(1, nodes + 1)}
    oldest = min(path.name[:22] for path in report_dir.glob("*.json"))
    start = datetime.strptime(oldest, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    written = 0
    lines = []
    for index in range(count):
        when = start - timedelta(days=1) + timedelta(seconds=60 * index)
        action = ACTIONS[index % len(ACTIONS)]
        report_id = f"{when.strftime('%Y%m%dT%H%M%S%fZ')}-{action}-{secrets.token_hex(3)}"
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        document = {**base, "id": report_id, "action": action, "nodes": fleet}
        document.update(started_at=stamp, ended_at=stamp, previous=None)
        content = json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"
        path = report_dir / f"{report_id}.json"
        path.write_bytes(content)
        path.chmod(0o640)
        written += len(content)
        lines.append(json.dumps(summary(document), sort_keys=True) + "\n")
    with (report_dir / INDEX_FILE).open("a") as index:
        index.writelines(lines)
    return written
