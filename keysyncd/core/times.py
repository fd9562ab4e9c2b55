"""One way to write a time: RFC 3339 in UTC (``2026-11-22T20:00:00Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(timestamp: float | None) -> str | None:
    """Return ``2026-11-22T20:00:00Z`` for epoch seconds (None for None)."""
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a time no clock will show (a hand edit)
        return None


def rfc3339_of(moment: datetime | None) -> str | None:
    """Return ``moment`` (any time zone) as RFC 3339 UTC, None for None."""
    return None if moment is None else rfc3339(moment.timestamp())
