"""The daemon's jobs: run as the CLI's, under the same lock; the outcome logged, remembered."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from keysyncd.actions.context import Run
from keysyncd.actions.drift import report_watch_failure
from keysyncd.actions.operations import JOBS, RepositoryRun, Step, each_repository
from keysyncd.commands.scheduler import Job
from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.vocabulary import Outcome, Trigger, job_name
from keysyncd.errors import KeysyncError
from keysyncd.io.local.lock import exclusive
from keysyncd.io.remote.preflight import check_local_files

log = logging.getLogger("keysyncd.commands.daemon")  # one logger for the daemon's lines
LOCK_WAIT = 60.0  # a CLI action holding the lock delays a daemon job, up to this long


class DaemonJobs:
    """Running one job for the daemon (``daemon.Daemon``, which sets these attributes)."""

    config: Config
    stopping: threading.Event  # set: the current step is cancelled
    heartbeat: float  # the monotonic time the main loop last made progress
    job_deadline: float  # while a job runs: until when silence is still healthy
    last_error: str | None
    last_job: dict[str, Any] | None
    watch_failures: dict[str, str]  # repository -> why its local watch is unavailable

    def _execute(self, job: Job) -> None:
        """Run ``job`` on its repositories, each on its own, under the lock; record the end."""
        repositories = (
            [self.config.repository(job.repository)] if job.repository else self.config.repositories
        )
        started = time.time()
        # A job may legitimately go quiet (a hook, a node at its timeouts) for this long;
        # only past it does the watchdog conclude that the main loop is stuck.
        ssh = self.config.ssh.operation_timeout
        budget = sum(3 * r.hooks.timeout + 8 * ssh + 60 for r in repositories)
        self.job_deadline = time.monotonic() + LOCK_WAIT + budget
        outcome: str = Outcome.OK
        name = job_name(job.action, job.trigger)
        try:
            check_local_files(self.config, ssh=True)  # unsafe files stop the job before it acts
            with exclusive(self.config.state_dir, name, LOCK_WAIT, cancel=self.stopping):
                runs = each_repository(repositories, self._run_of(job), self._step(job))
            outcome = self._record(job, runs)
        except KeysyncError as error:
            outcome = Outcome.FAILED
            self.last_error = f"{name}: {error}"
            log.error("%s failed: %s", name, error)
        self.job_deadline = 0.0
        what = {"action": job.action, "trigger": job.trigger, "outcome": outcome}
        self.last_job = {**what, "started_at": started, "ended_at": time.time()}

    def _run_of(self, job: Job) -> Callable[[RepositoryConfig], Run]:
        trigger = Trigger(job.trigger)
        return lambda repository: Run(
            self.config, repository, trigger, progress=self._progress, cancel=self.stopping
        )

    def _step(self, job: Job) -> Step:
        if job.action == "watch_failed":
            return lambda run: [
                report_watch_failure(
                    run, self.watch_failures.get(run.repository.name, "local watch unavailable")
                )
            ]
        if job.action not in JOBS:
            raise KeysyncError(f"unknown daemon job {job.action!r}")
        return JOBS[job.action]

    def _record(self, job: Job, runs: list[RepositoryRun]) -> str:
        """Log each repository's outcome; return the job's (the first that is not ok)."""
        name = job_name(job.action, job.trigger)
        for run in runs:
            for result in run.results:
                for message in result.messages:
                    log.info("%s: %s", run.repository, message)
            if run.error is not None:
                log.error("%s of %s: %s", name, run.repository, run.error)
            if run.results or run.error is not None:
                log.info("%s of %s: %s", name, run.repository, run.outcome)
            if not run.ok:
                self.last_error = f"{name} of {run.summary()}"
        return next((run.outcome for run in runs if not run.ok), Outcome.OK)

    def _progress(self, phase: str, node: str, done: int, total: int) -> None:
        self.heartbeat = time.monotonic()
