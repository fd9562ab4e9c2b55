"""APScheduler wiring only: a cron trigger per repository and the periodic check, each
handing a Job to the daemon's queue (one worker: actions never overlap)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from keysyncd.config import Config
from keysyncd.core.schedule import cron_trigger


@dataclass(frozen=True)
class Job:
    """A unit of daemon work: ``action`` (rotate, sync, verify) on one repository or all."""

    action: str
    repository: str | None
    trigger: str


class Scheduler:
    """Cron triggers per repository; ``enqueue`` receives a Job whenever one fires."""

    def __init__(self, enqueue: Callable[[Job], None]) -> None:
        self.enqueue = enqueue
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )

    def apply(self, config: Config) -> None:
        """Replace every job with the schedule of ``config`` (used at start and on reload)."""
        self.scheduler.remove_all_jobs()
        for repository in config.repositories:
            self.scheduler.add_job(
                self.enqueue,
                cron_trigger(repository.schedule, repository.timezone),
                args=[Job("rotate", repository.name, "cron")],
                id=f"rotate:{repository.name}",
                name=f"rotate {repository.name}",
            )
        # The periodic check covers the local repository too, even without nodes.
        self.scheduler.add_job(
            self.enqueue,
            IntervalTrigger(seconds=config.drift.verify_interval, timezone=UTC),
            args=[Job("check", None, "cron")],
            id="check",
            name="periodic verify of the local repository and every node",
        )

    def next_rotations(self) -> dict[str, datetime | None]:
        """Return each repository's next scheduled rotation."""
        jobs = self.scheduler.get_jobs()
        return {j.id.split(":", 1)[1]: j.next_run_time for j in jobs if j.id.startswith("rotate:")}

    def start(self) -> None:
        """Start firing jobs (in APScheduler's own thread)."""
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop firing jobs; does not wait for anything, jobs only enqueue."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
