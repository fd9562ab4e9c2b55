"""The daemon's lifecycle: schedule, signals, systemd notify, reload, graceful stop. Handlers
and cron jobs only record requests; the main thread runs every action, as the CLI does."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any

from keysyncd.actions.operations import watched_path
from keysyncd.commands.daemonjobs import LOCK_WAIT, DaemonJobs
from keysyncd.commands.exits import Exit
from keysyncd.commands.scheduler import Job, Scheduler
from keysyncd.config import Config
from keysyncd.core.nodes import nodes_in_sync
from keysyncd.core.schedule import missed_rotation
from keysyncd.core.text import plural
from keysyncd.core.times import rfc3339_of
from keysyncd.errors import ConfigError, KeysyncError
from keysyncd.io.local.fsutil import atomic_write
from keysyncd.io.local.hooktrust import load_trusted_config
from keysyncd.io.local.state import load_state
from keysyncd.io.runtime.children import Notifier, daemon_file, terminate_children
from keysyncd.io.runtime.metrics import serve_metrics
from keysyncd.io.runtime.watch import WATCH_JOBS, RepositoryWatcher

log = logging.getLogger("keysyncd.commands.daemon")
STOP_TIMEOUT = 30.0  # after SIGTERM, the current step gets this long before a hard exit
CHILD_GRACE = 2.0  # at a hard exit, hook processes get this long between SIGTERM and SIGKILL
# The longest a stop may take: the current step (a running hook's group is ended at once,
# keysyncd.io.runtime.hooks.GROUP_GRACE), then the hard exit ending what is left. The shipped unit's
# TimeoutStopSec (keysyncd.io.runtime.children.UNIT_TIMEOUT_STOP_SEC) stays above it.
STOP_BUDGET = STOP_TIMEOUT + 2 * CHILD_GRACE


class Daemon(DaemonJobs):
    """``keysyncd run``: see the module docstring."""

    def __init__(self, config_path: Path, config: Config, notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier or Notifier()
        self.queue: deque[Job] = deque()
        self.queue_lock = threading.Lock()
        self.wakeup = threading.Event()
        self.signals: deque[int] = deque()
        self.stopping = threading.Event()
        self.exit_code = Exit.DONE  # SIGINT makes it Exit.INTERRUPTED (the exit-code table)
        self.heartbeat = time.monotonic()
        self.job_deadline = 0.0  # while a job runs: until when silence is still healthy
        self.started_at = time.time()
        self.last_error: str | None = None
        self.last_job: dict[str, Any] | None = None
        self.scheduler = Scheduler(self.enqueue)
        self.watcher: RepositoryWatcher | None = None
        self.watch_failures: dict[str, str] = {}
        self.metrics_server: Any = None
        self.reload_failures = 0  # invalid or unsafe configs rejected (a metric)

    def enqueue(self, job: Job) -> None:
        """Queue ``job`` unless the same job is already waiting (coalescing, like cron)."""
        with self.queue_lock:
            if job not in self.queue:
                self.queue.append(job)
        self.wakeup.set()

    def _handle_signal(self, number: int, frame: FrameType | None) -> None:
        # Only record it: the work happens in the main loop, never inside a handler.
        self.signals.append(number)
        if number in (signal.SIGTERM, signal.SIGINT):
            # systemd stops with SIGTERM (a clean stop, 0); Ctrl-C is an interruption (130)
            if number == signal.SIGINT:
                self.exit_code = Exit.INTERRUPTED
            self.stopping.set()
        self.wakeup.set()

    def install_signals(self) -> None:
        """Route SIGUSR1/2, SIGHUP, SIGTERM and SIGINT to the handler."""
        handled = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
        for number in handled:
            signal.signal(number, self._handle_signal)

    def run(self) -> int:
        """Run until SIGTERM (return 0) or SIGINT (return 130)."""
        self.install_signals()
        self.scheduler.apply(self.config)
        self.scheduler.start()
        self._start_watcher()
        try:
            self.metrics_server = serve_metrics(lambda: self.config)
        except KeysyncError as error:
            log.error("%s", error)
            self.last_error = str(error)
        self._catch_up()
        self._write_info()
        self.notifier.send("READY=1", f"STATUS={self._status()}", f"MAINPID={os.getpid()}")
        log.info("started; %s", self._status())
        watchdog = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        watchdog.start()
        try:
            while not self.stopping.is_set():
                self._drain_signals()
                if self.watcher is not None and self.watcher.lost:
                    self._start_watcher()  # its observer died; the check it asked for runs
                job = self._next_job()
                if job is not None and not self.stopping.is_set():
                    self._execute(job)
                    self._write_info()
                    self.notifier.send(f"STATUS={self._status()}")
                self.heartbeat = time.monotonic()
        finally:
            self._shut_down()
        return int(self.exit_code)

    def _shut_down(self) -> None:
        """Tell systemd, stop the scheduler, watch and metrics, remove the daemon file."""
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        log.info("stopping")
        self.scheduler.shutdown()
        if self.watcher is not None:
            self.watcher.stop()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        with contextlib.suppress(OSError):
            daemon_file(self.config.state_dir).unlink()

    def _next_job(self) -> Job | None:
        self.wakeup.wait(timeout=1.0)
        with self.queue_lock:
            self.wakeup.clear()
            if self.queue:
                if len(self.queue) > 1:
                    self.wakeup.set()
                return self.queue.popleft()
        return None

    def _drain_signals(self) -> None:
        while self.signals:
            number = self.signals.popleft()
            if number == signal.SIGUSR1:
                log.info("SIGUSR1: rotating every repository now")
                for repository in self.config.repositories:
                    self.enqueue(Job("rotate", repository.name, "signal"))
            elif number == signal.SIGUSR2:
                log.info("SIGUSR2: sync and verify now")
                for repository in self.config.repositories:
                    self.enqueue(Job("sync", repository.name, "signal"))
            elif number == signal.SIGHUP:
                self.reload()

    def reload(self) -> None:
        """Re-read the config; keep the old one if the new one is invalid or unsafe."""
        self.notifier.send("RELOADING=1", "STATUS=reloading configuration")
        try:
            config = load_trusted_config(self.config_path)
        except ConfigError as error:
            for problem in error.problems:
                log.error("reload rejected: %s", problem)
            log.error("keeping the previous configuration")
            self.reload_failures += 1
            self.last_error = "reload rejected: invalid or unsafe configuration"
        else:
            self.config = config
            self.scheduler.apply(config)
            self._start_watcher()
            log.info(
                "configuration reloaded: %s, %s",
                plural(len(config.repositories), "repository"),
                plural(len(config.nodes), "node"),
            )
        self._write_info()
        self.notifier.send("READY=1", f"STATUS={self._status()}")

    def _start_watcher(self) -> None:
        """(Re)start the local watch; failures are logged and the periodic verify covers them."""
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if not self.config.drift.watch_local:
            return
        self.watcher = RepositoryWatcher(
            lambda name: self.enqueue(Job("watch", name, "watch")),
            lambda name, what: self.enqueue(Job(WATCH_JOBS[what], name, "watch")),
        )
        directories = {r.name: watched_path(self.config, r) for r in self.config.repositories}
        self.watch_failures = self.watcher.start(directories)
        for name, failure in self.watch_failures.items():
            log.error(
                "%s: local watch unavailable, relying on the periodic verify: %s", name, failure
            )
            self.last_error = f"watch {name}: {failure}"
            self.enqueue(Job("watch_failed", name, "watch"))

    def _catch_up(self) -> None:
        """Queue one rotation per repository whose scheduled time passed while we were down."""
        now = time.time()
        for repository in self.config.repositories:
            try:
                state = load_state(self.config.state_dir, repository.name)
            except KeysyncError as error:
                log.error("%s: %s", repository.name, error)
                continue
            last = state.last_rotation_at
            if missed_rotation(repository.schedule, repository.timezone, last, now):
                said = "%s: a scheduled rotation was missed while stopped; catching up once"
                log.info(said, repository.name)
                self.enqueue(Job("rotate", repository.name, "cron"))

    def _watchdog(self) -> None:
        """Ping systemd's watchdog while the main loop makes progress; stop pinging if stuck."""
        interval = self.notifier.watchdog_interval()
        stop_deadline: float | None = None
        last_ping = 0.0
        while True:
            time.sleep(min(interval or 0.5, 0.5))
            now = time.monotonic()
            if self.stopping.is_set():
                stop_deadline = stop_deadline or now + STOP_TIMEOUT
                if now > stop_deadline:
                    log.error("the current step did not finish within %ss; exiting", STOP_TIMEOUT)
                    try:
                        terminate_children(CHILD_GRACE)  # a stuck hook must not outlive us
                    finally:
                        # safe at any instant: the journal and apply order (rule 4)
                        os._exit(int(self.exit_code))
            # a main loop that stopped making progress stops the pings, so systemd restarts us
            fresh = now - self.heartbeat < 2 * (interval or 1.0) + LOCK_WAIT
            healthy = fresh or now < self.job_deadline
            if interval and healthy and now - last_ping >= interval:
                self.notifier.send("WATCHDOG=1")
                last_ping = now

    def _status(self) -> str:
        nexts = self.scheduler.next_rotations()
        parts = [f"next rotation {name} {rfc3339_of(at)}" for name, at in sorted(nexts.items())]
        in_sync, total = self._nodes_in_sync()
        if total:
            parts.append(f"nodes in sync {in_sync}/{total}")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts) or "idle"

    def _nodes_in_sync(self) -> tuple[int, int]:
        in_sync = total = 0
        names = [node.name for node in self.config.nodes]
        for repository in self.config.repositories:
            with contextlib.suppress(KeysyncError):
                in_sync += nodes_in_sync(load_state(self.config.state_dir, repository.name), names)
                total += len(names)
        return in_sync, total

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "config": str(self.config_path),
            "next_rotation": {k: rfc3339_of(v) for k, v in self.scheduler.next_rotations().items()},
            "last_job": self.last_job,
            "last_error": self.last_error,
            "config_reload_failures": self.reload_failures,
        }
        try:
            self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(daemon_file(self.config.state_dir), json.dumps(info).encode(), 0o644)
        except OSError as error:
            log.warning("cannot write %s: %s", daemon_file(self.config.state_dir), error)
