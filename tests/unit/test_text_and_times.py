"""Text from elsewhere made safe to print (core/text.py) and the one time format (core/times.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from keysyncd.commands.render import when
from keysyncd.core.text import MAX_DETAIL, bounded, printable
from keysyncd.core.times import rfc3339, rfc3339_of

MOMENT = 1795377600.5  # 2026-11-22T20:00:00.5Z


def test_printable_escapes_what_could_forge_a_line_or_move_the_cursor() -> None:
    assert printable("plain text: ok") == "plain text: ok"
    assert printable("a\nb\x1b[2J\u202ec\td") == "a\\nb\\x1b[2J\\u202ec\\td"
    assert printable("caf\u00e9") == "caf\u00e9", "printable non-ASCII stays"


def test_printable_cuts_long_text_to_the_limit() -> None:
    assert printable("x" * MAX_DETAIL) == "x" * MAX_DETAIL
    cut = printable("x" * (MAX_DETAIL + 1))
    assert cut == "x" * (MAX_DETAIL - 3) + "..." and len(cut) == MAX_DETAIL
    assert printable("abcdef", limit=5) == "ab..."
    assert printable("\n" * 3, limit=5) == "\\n..."  # the limit counts escaped characters


def test_bounded_lists_stay_short() -> None:
    assert bounded([]) == ""
    assert bounded(["a", "b"]) == "a, b"
    assert bounded(list("abcde")) == "a, b, c, d, e"
    assert bounded(list("abcdefg")) == "a, b, c, d, e and 2 more"
    assert bounded(list("abc"), limit=2) == "a, b and 1 more"


def test_times_are_rfc3339_in_utc() -> None:
    assert rfc3339(MOMENT) == "2026-11-22T20:00:00Z"
    assert rfc3339(None) is None
    assert rfc3339(1e300) is None, "a hand-edited time no clock shows"
    paris = datetime(2026, 11, 22, 21, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339_of(paris) == "2026-11-22T20:00:00Z"
    assert rfc3339_of(datetime(2026, 11, 22, 20, 0, tzinfo=UTC)) == "2026-11-22T20:00:00Z"
    assert rfc3339_of(None) is None


def test_times_shown_to_people_are_rfc3339_too() -> None:
    """One form on every screen: what the renderer shows is what the JSON holds."""
    assert when(MOMENT) == "2026-11-22T20:00:00Z"
    assert when("2026-11-22T20:00:00Z") == "2026-11-22T20:00:00Z"
    assert when(None) == "-"
    assert when(1e300) == "?"
    assert when(float("nan")) == "?"
    assert when("soon") == "?"  # a hand-edited journal


def test_times_are_utc_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's machine runs in UTC, where local time and UTC agree: a controller in
    another zone must still write and show UTC."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    try:
        assert rfc3339(MOMENT) == "2026-11-22T20:00:00Z"
        assert when(MOMENT) == "2026-11-22T20:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()
