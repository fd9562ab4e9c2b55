"""Attacks on APScheduler's lazy import (``keysyncd.core.schedule._cron_module``), each in a
fresh interpreter: the asyncio stand-in is process-wide while the trigger's modules load,
so another thread importing asyncio then gets it; two threads asking the half-initialised
package for a name at once."""

from __future__ import annotations

from tests.unit.test_schedule_import import run


def test_a_thread_importing_asyncio_meanwhile_gets_the_real_module() -> None:
    run(
        """
        import sys, threading
        seen = []

        def other():
            while sys.modules.get("asyncio") is None:
                pass  # wait for the window (deterministic: the stand-in is there)
            import asyncio
            seen.append(hasattr(asyncio, "get_event_loop"))

        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        from keysyncd.core.schedule import cron_trigger
        cron_trigger("0 0 * * *")
        thread.join(10)
        assert seen == [True], seen
        """
    )


def test_two_threads_asking_the_package_for_its_version_at_once_both_get_it() -> None:
    run(
        """
        import threading
        from keysyncd.core.schedule import cron_trigger
        cron_trigger("0 0 * * *")
        import apscheduler
        barrier, answers = threading.Barrier(8), []

        def ask():
            barrier.wait()
            try:
                answers.append(apscheduler.version)
            except Exception as error:
                answers.append(repr(error))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(set(answers)) == 1 and answers[0][0].isdigit(), answers
        """
    )
