"""APScheduler's cron trigger loaded without its package's version lookup and without asyncio
(``keysyncd.core.schedule._cron_module``): the asyncio stand-in leaves nothing behind, the
package runs its own ``__init__`` when asked for what it defines, and the daemon's
scheduler, imported afterwards in the same process, gets the real modules and fires the
very triggers keysyncd made. Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> None:
    """Run ``code`` in a fresh interpreter; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stand_in_leaves_nothing_behind_and_the_package_completes_when_asked() -> None:
    run(
        """
        import sys, types
        from datetime import UTC, datetime
        from keysyncd.core.schedule import cron_trigger, next_fire_times
        trigger = cron_trigger("0 0 * * 1", "Europe/Paris")  # Mondays, as crontab means it
        first = next_fire_times(trigger, datetime(2026, 12, 1, tzinfo=UTC), 1)[0]
        assert first.weekday() == 0 and first.hour == 0, first
        assert "asyncio" not in sys.modules and "importlib.metadata" not in sys.modules
        for name, module in list(sys.modules.items()):
            for value in vars(module).values():
                stand_in = isinstance(value, types.ModuleType) and value.__name__ == "asyncio"
                assert not stand_in, f"{name} keeps the stand-in for asyncio"
        import apscheduler
        assert apscheduler.version_info[0] == 3  # its __init__ runs now, once
        assert "importlib.metadata" in sys.modules and "__getattr__" not in vars(apscheduler)
        assert apscheduler.triggers.cron.CronTrigger is type(trigger)
        """
    )


def test_the_daemons_scheduler_gets_the_real_modules_and_fires_the_same_triggers() -> None:
    run(
        """
        import asyncio, inspect, time
        from keysyncd.core.schedule import cron_trigger
        trigger = cron_trigger("*/1 * * * * *")
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        import apscheduler, apscheduler.util
        assert apscheduler.__version__.startswith("3."), apscheduler.__version__
        assert type(trigger) is CronTrigger
        assert callable(asyncio.get_event_loop) and asyncio.iscoroutinefunction is not None
        async def job(): pass
        assert apscheduler.util.iscoroutinefunction(job)  # the one use of asyncio's: same
        fired = []
        scheduler = BackgroundScheduler()
        scheduler.add_job(lambda: fired.append(1), trigger)
        scheduler.start()
        for _ in range(50):
            if fired:
                break
            time.sleep(0.1)
        scheduler.shutdown(wait=False)
        assert fired, "the trigger never fired"
        """
    )


def test_with_the_scheduler_loaded_first_the_trigger_is_imported_plainly() -> None:
    run(
        """
        import sys
        from keysyncd.commands.scheduler import Scheduler
        real = sys.modules["apscheduler"]
        from keysyncd.core.schedule import cron_trigger
        from apscheduler.triggers.cron import CronTrigger
        assert type(cron_trigger("0 0 * * *")) is CronTrigger
        assert sys.modules["apscheduler"] is real and "asyncio" in sys.modules
        """
    )
