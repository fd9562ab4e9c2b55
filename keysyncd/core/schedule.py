"""Cron expressions: parse them with APScheduler and answer "when next?".

A schedule is a 5-field crontab (``minute hour day month day_of_week``) or a
6-field one with a leading seconds field (for tests and demos).
"""

from __future__ import annotations

import _thread
import importlib
import importlib.util
import inspect
import itertools
import sys
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from keysyncd.errors import KeysyncError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_FIELDS_6 = ("second", "minute", "hour", "day", "month", "day_of_week")
# crontab numbers weekdays from Sunday (0 and 7), APScheduler 3 from Monday (0): a number
# passed through unchanged fires a day late ("0 0 * * 1", Mondays in cron, on Tuesdays).
# So the weekday field is expanded to the cron days it names, then written as names.
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APSCHEDULER_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _cron_day(token: str) -> int:
    """Return the cron day number (0 = Sunday) of ``token``: 0-7 or a name."""
    name = token.lower()
    if name in _CRON_DAYS:
        return _CRON_DAYS.index(name)
    if not (token.isascii() and token.isdigit()) or not 0 <= int(token) <= 7:
        raise ValueError(f"weekday {token!r} is not 0-7 or sun-sat")
    return int(token) % 7


def _weekdays(field: str) -> str:
    """Return crontab weekday ``field`` as APScheduler reads it (names; ``*`` stays).

    Example: ``"1-5"`` (Monday to Friday in cron) -> ``"mon,tue,wed,thu,fri"``.
    Raise ValueError for anything crontab would not accept there.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if step_text and not (step_text.isascii() and step_text.isdigit()):
            raise ValueError(f"weekday step {step_text!r} is not a positive number")
        step = int(step_text) if step_text else 1
        if step_text and (not (step_text.isascii() and step_text.isdigit()) or step < 1):
            raise ValueError(f"weekday step {step_text!r} is not a positive number")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, _, high = span.partition("-")
            first = 7 if low == "7" else _cron_day(low)
            last = 7 if high == "7" else _cron_day(high)
            if last == 0 and first > 0:  # "fri-sun": Sunday ends the range
                last = 7
            if first > last:
                raise ValueError(f"weekday range {span!r} runs backwards")
        elif step_text:
            raise ValueError(f"weekday {part!r}: a step needs a range (1-5/2) or */N")
        else:
            first = last = _cron_day(span)
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(name for name in _APSCHEDULER_ORDER if _CRON_DAYS.index(name) in days)


def _alone() -> bool:
    """Return True when the calling thread is the process's only Python thread.

    ``sys._current_frames`` sees every thread running Python code, however it was started;
    ``threading``'s count (when loaded: no import for this) also sees a thread whose start
    returned before it ran any. Nothing can start another thread while the alone caller
    imports, as long as what it imports starts none (APScheduler's trigger starts none).
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return False
    return len(sys._current_frames()) == 1


def _deferred_package() -> ModuleType:
    """Return the ``apscheduler`` package, not yet run: its ``__init__`` runs (once) when
    something asks for a name it defines. Raise ImportError if APScheduler is missing."""
    spec = importlib.util.find_spec("apscheduler")
    if spec is None or spec.loader is None:
        raise ImportError("APScheduler is not installed", name="apscheduler")
    package, loader = importlib.util.module_from_spec(spec), spec.loader
    once = _thread.RLock()  # threads may have started by the time a name is asked for
    ran: list[bool] = []

    def initialised(name: str) -> object:
        """Run the package's own ``__init__`` (once), then answer as the package does.

        Raise AttributeError for a name it does not define. A thread asking meanwhile
        waits for the whole ``__init__``: this stays the package's ``__getattr__`` until
        the names are there.
        """
        with once:
            if not ran:
                ran.append(True)
                loader.exec_module(package)
                del vars(package)["__getattr__"]
        if name not in vars(package):  # (asked while its own __init__ ran: not there yet)
            raise AttributeError(f"module 'apscheduler' has no attribute {name!r}", name=name)
        return vars(package)[name]

    vars(package)["__getattr__"] = initialised
    return package


def _cron_module() -> ModuleType:
    """Return APScheduler's ``apscheduler.triggers.cron``; raise ImportError without it.

    The cron trigger itself is cheap to import; two things its package imports on the way
    are not, and no cron computation uses them: the package's ``__init__`` works out its
    own version string through ``importlib.metadata`` (about 30 ms), and ``apscheduler.util``
    takes ``iscoroutinefunction`` from ``asyncio`` (about 15 ms, with ``ssl``), which only
    the asyncio and tornado executors ask (the daemon uses threads): a third of what
    ``check-config``, ``status`` and ``plan`` cost to start.

    So, the first time only (nothing of APScheduler loaded yet) and only in a process with
    no other thread (``_alone``: another thread importing ``asyncio`` meanwhile would keep
    the stand-in for good; with threads, the plain import): the package is loaded with
    its ``__init__`` put off until something asks for a name it defines (the daemon's
    scheduler asks for ``version``), and ``asyncio`` is a stand-in offering
    ``inspect.iscoroutinefunction`` (what APScheduler itself uses from Python 3.14 on)
    while the trigger's modules load, gone before this returns (test_schedule_import*.py).
    """
    if "apscheduler" in sys.modules or not _alone():
        return importlib.import_module("apscheduler.triggers.cron")
    sys.modules["apscheduler"] = _deferred_package()
    asyncio = None if "asyncio" in sys.modules else ModuleType("asyncio", "a stand-in")
    if asyncio is not None:
        vars(asyncio)["iscoroutinefunction"] = inspect.iscoroutinefunction
        sys.modules["asyncio"] = asyncio
    try:
        return importlib.import_module("apscheduler.triggers.cron")
    finally:
        if asyncio is not None and sys.modules.get("asyncio") is asyncio:
            del sys.modules["asyncio"]


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """Return the APScheduler trigger for ``expression``; raise KeysyncError if invalid.

    Example: ``cron_trigger("*/5 * * * * *")`` fires every five seconds.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise KeysyncError(f"unknown timezone {timezone!r}") from error
    fields = expression.split()
    try:
        if len(fields) in (5, 6):
            named = dict(zip(_FIELDS_6[6 - len(fields) :], fields, strict=True))
            if not named["day"].startswith("*") and not named["day_of_week"].startswith("*"):
                # crontab fires when EITHER matches (unless one starts with "*": then both
                # must, as APScheduler always requires)
                raise ValueError(
                    "give a day of the month or a weekday, not both (crontab would fire on "
                    "either, keysyncd's scheduler only on both)"
                )
            named["day_of_week"] = _weekdays(named["day_of_week"])
            trigger: CronTrigger = _cron_module().CronTrigger(**named, timezone=zone)
            return trigger
    except ValueError as error:
        raise KeysyncError(f"invalid cron expression {expression!r}: {error}") from error
    raise KeysyncError(
        f"invalid cron expression {expression!r}: expected 5 fields "
        f"(minute hour day month weekday) or 6 with leading seconds, got {len(fields)}"
    )


def next_fire_times(trigger: CronTrigger, after: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` fire times after ``after``, each strictly later than the one
    before (fewer if the schedule ends). Each step starts from the UTC instant just past the
    last answer: wall-clock arithmetic on a zoned time forgets a repeated (DST fall-back)
    hour's fold and goes back, and an answer not later than the last one is skipped."""
    times: list[datetime] = []
    previous: datetime | None = None
    now = after.astimezone(UTC) + timedelta(microseconds=1)
    for _ in range(2 * count + 2):  # bounded: a skipped answer takes a step too
        if len(times) == count:
            break
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        if fire.timestamp() >= now.timestamp():
            times.append(fire)
        previous = fire
        now = max(now, fire.astimezone(UTC)) + timedelta(microseconds=1)
    return times


def rotation_period(trigger: CronTrigger, after: datetime, samples: int = 32) -> float:
    """Return the shortest gap in seconds between consecutive fire times after ``after``.

    The shortest gap is the conservative choice for the keystone sizing rule: keys are
    demoted fastest then, so it needs the most active keys.
    Raise KeysyncError if the schedule fires fewer than twice.
    """
    times = next_fire_times(trigger, after, samples)
    if len(times) < 2:
        raise KeysyncError("the schedule fires fewer than twice; cannot derive a rotation period")
    return min(b.timestamp() - a.timestamp() for a, b in itertools.pairwise(times))


def missed_rotation(
    schedule: str, timezone: str, last_rotation_at: float | None, now: float
) -> bool:
    """Return True if a scheduled rotation fell between the last rotation and ``now``.

    A repository that was never rotated by keysyncd has nothing to catch up.
    """
    if last_rotation_at is None:
        return False
    trigger = cron_trigger(schedule, timezone)
    after = datetime.fromtimestamp(last_rotation_at, UTC) + timedelta(microseconds=1)
    due = trigger.get_next_fire_time(None, after)
    return due is not None and due.timestamp() <= now
