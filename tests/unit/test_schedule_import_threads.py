"""The cron trigger imported while another thread runs (``keysyncd.core.schedule._alone``):
no asyncio stand-in and no deferred package then, since the other thread could import
``asyncio`` while the stand-in sits in ``sys.modules`` and keep it for good; the plain
import instead, so ``asyncio`` is the real one afterwards, in every thread. Each case runs
in a fresh interpreter (tests/unit/test_schedule_import.py: the single-threaded path)."""

from __future__ import annotations

from textwrap import dedent

from tests.unit.test_schedule_import import run

CHECK_REAL = """
    import inspect, sys
    assert "apscheduler" in sys.modules and "importlib.metadata" in sys.modules
    assert "__getattr__" not in vars(sys.modules["apscheduler"])  # its __init__ ran
    import asyncio, apscheduler.util
    assert asyncio.__spec__ is not None and callable(asyncio.get_event_loop), asyncio
    assert apscheduler.util.iscoroutinefunction is asyncio.iscoroutinefunction
"""


def run_then_check_real(code: str) -> None:
    """Run ``code``, then check APScheduler and asyncio are the real ones, in one fresh
    interpreter; fail with its output if anything fails."""
    run(dedent(code) + dedent(CHECK_REAL))


def test_with_a_second_thread_alive_the_trigger_is_imported_plainly() -> None:
    run_then_check_real(
        """
        import sys, threading
        from datetime import UTC, datetime
        release = threading.Event()
        other = threading.Thread(target=release.wait)
        other.start()
        from keysyncd.core.schedule import cron_trigger, next_fire_times
        trigger = cron_trigger("0 0 * * 1")
        first = next_fire_times(trigger, datetime(2026, 12, 1, tzinfo=UTC), 1)[0]
        assert first.weekday() == 0 and first.hour == 0, first
        assert "asyncio" in sys.modules, "the plain import loads the real asyncio"
        release.set()
        other.join()
        """
    )


def test_a_thread_started_without_the_threading_module_counts_too() -> None:
    run_then_check_real(
        """
        import _thread, sys, time
        assert "threading" not in sys.modules
        started, release = _thread.allocate_lock(), _thread.allocate_lock()
        started.acquire()
        release.acquire()
        def wait():
            started.release()
            release.acquire()
        _thread.start_new_thread(wait, ())
        started.acquire()  # the other thread runs Python code now
        from keysyncd.core.schedule import cron_trigger
        cron_trigger("*/5 * * * *")
        assert "asyncio" in sys.modules
        release.release()
        """
    )


def test_a_second_thread_importing_asyncio_meanwhile_gets_the_real_module() -> None:
    """The race the plain path prevents: the other thread imports ``asyncio`` while the
    trigger loads; both threads see the real asyncio afterwards."""
    run_then_check_real(
        """
        import sys, threading
        seen = []
        go = threading.Event()
        def other():
            go.wait()
            import asyncio
            seen.append(asyncio)
        thread = threading.Thread(target=other)
        thread.start()
        go.set()
        from keysyncd.core.schedule import cron_trigger
        cron_trigger("0 3 * * *")
        thread.join()
        import asyncio
        assert seen == [asyncio] and callable(asyncio.get_event_loop), seen
        """
    )


def test_threads_asking_the_deferred_package_at_once_all_get_its_names() -> None:
    """The trigger loaded alone, then threads ask the package for its version together:
    one runs its ``__init__``, the others wait for it instead of finding no name."""
    run(
        """
        import sys, threading
        from keysyncd.core.schedule import cron_trigger
        cron_trigger("0 0 * * *")
        assert "__getattr__" in vars(sys.modules["apscheduler"])  # deferred: no thread ran
        package, barrier, answers = sys.modules["apscheduler"], threading.Barrier(8), []
        def ask():
            barrier.wait()
            answers.append(package.version)
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 8 and len(set(answers)) == 1, answers
        assert answers[0].startswith("3."), answers
        assert "__getattr__" not in vars(package) and "asyncio" not in sys.modules
        """
    )
