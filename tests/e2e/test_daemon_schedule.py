"""The daemon's schedule end to end.

It fires on time, never overlaps, coalesces missed fires and catches up a missed one once.

How the daemon is started, watched and stopped: ``tests/e2e/daemon_harness.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import assert_nodes_match, init, reports, state_dir, write_config
from tests.e2e.daemon_harness import FAR_SCHEDULE, REPOSITORY, DaemonProcess, wait_until

pytestmark = pytest.mark.fleet


# --- 1. cron schedule ------------------------------------------------------------------------

PERIOD = 5  # seconds between fires of the schedule below


# How late after its fire time a rotation may start (report started_at, the daemon's own
# clock, against the fire time). Between the two lie APScheduler's wake-up, the hand-off to
# the worker, the preflight and the lock: milliseconds idle; the worst seen with both cores
# busy and a load average of 12 was 0.66 s. Half the period still attributes each start to
# its own fire, which is what "on time" means for a schedule.
ON_TIME = PERIOD / 2


def test_seconds_schedule_rotates_on_time(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Every 5 s: each fire gives one rotation, triggered by cron, that starts on time."""
    config = write_config(fleet, tmp_path / "ctl", schedule=f"*/{PERIOD} * * * * *")
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    rotations = wait_until(
        lambda: (found := reports(config, "rotate"))[2:] and found, "three cron rotations", daemon
    )
    assert daemon.stop() == 0
    for report in rotations:
        assert report["trigger"] == "cron", report
        assert report["outcome"] == "ok", report
    lates = [report["started_at"] % PERIOD for report in rotations]  # fires: multiples of PERIOD
    print(f"timing: rotations started {[round(late, 3) for late in lates]} s after their fires")
    assert all(late < ON_TIME for late in lates), f"started late: {lates} s after the fire"
    slots = [int(report["started_at"] // PERIOD) for report in rotations]
    assert slots == list(range(slots[0], slots[0] + len(slots))), f"fires skipped: {slots}"
    assert_nodes_match(fleet, config)


def rotations_around_reload(log: str) -> tuple[int, int]:
    """Return how many rotations the daemon logged as done before and after its reload."""
    before, reloaded, after = log.partition("configuration reloaded")
    assert reloaded, f"no reload in the log:\n{log}"
    done = re.compile(rf"rotate \(cron\) of {REPOSITORY}: ")
    return len(done.findall(before)), len(done.findall(after))


def test_slow_rotations_never_overlap_and_missed_fires_coalesce(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """A rotation (2 s hook) longer than the period (1 s): back to back, never overlapping.

    Fires during a rotation collapse into one queued run: after the schedule is switched
    off (SIGHUP to a far schedule) at most that one run follows, not a backlog.
    """
    hook = 2.0  # the slowness under test, not a stand-in for an event: the hook just lasts
    config = write_config(
        fleet,
        tmp_path / "ctl",
        schedule="* * * * * *",
        hooks={"before_rotate": [f"sleep {hook:g}"]},
    )
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    wait_until(lambda: reports(config, "rotate")[2:], "3 rotations", daemon)
    write_config(
        fleet, tmp_path / "ctl", schedule=FAR_SCHEDULE, hooks={"before_rotate": [f"sleep {hook:g}"]}
    )
    mark = len(daemon.notify.messages)
    daemon.send(signal.SIGHUP)
    reloading = daemon.notify.wait("RELOADING", "1", mark, daemon=daemon)
    daemon.notify.wait("READY", "1", reloading, daemon=daemon)
    # The worker runs jobs one at a time in queue order: a sync asked for now runs after
    # whatever the old schedule had queued, so its report means that backlog has run.
    daemon.send(signal.SIGUSR2)
    wait_until(
        lambda: reports(config, "sync", "signal"), "the sync queued after the reload", daemon
    )
    assert daemon.stop() == 0
    rotations = reports(config, "rotate")
    assert all(r["trigger"] == "cron" and r["outcome"] == "ok" for r in rotations), rotations
    for before, after in itertools.pairwise(rotations):
        assert after["started_at"] >= before["ended_at"], f"overlap: {before} / {after}"
    assert all(r["ended_at"] - r["started_at"] >= hook for r in rotations), "hook did not run"
    ran, after_reload = rotations_around_reload(daemon.stderr())  # the daemon's own order
    assert ran + after_reload == len(rotations), (ran, after_reload, len(rotations))
    assert after_reload <= 1, f"{after_reload} runs after the reload: a backlog"
    # the 1 s schedule fired once per second boundary while those rotations ran
    fired = int(rotations[ran - 1]["ended_at"]) - int(rotations[0]["started_at"])
    assert ran <= fired / hook + 1, f"{ran} rotations in {fired} s cannot all last {hook} s"
    assert ran < fired, f"{fired} fires gave {ran} rotations: nothing was coalesced"
    assert_nodes_match(fleet, config)


# --- 6. catch-up after downtime --------------------------------------------------------------


def test_rotation_missed_while_down_is_caught_up_exactly_once(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Two scheduled times pass with no daemon: at start one catch-up rotation, no more.

    The schedule fires at two seconds of the minute just after ``init``; the daemon starts
    once both have passed, so its next regular fire is almost a minute away. Whether to
    catch up is decided before READY=1, and a sync asked for after READY=1 runs after
    everything queued at start: its report closes the window for a second catch-up.
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    journal = json.loads((state_dir(config) / "repositories" / f"{REPOSITORY}.json").read_text())
    last = int(journal["last_rotation_at"])
    schedule = f"{(last + 1) % 60},{(last + 2) % 60} * * * * *"
    write_config(fleet, tmp_path / "ctl", schedule=schedule)
    # waiting for time itself: both scheduled times must pass while no daemon runs
    wait_until(lambda: time.time() > last + 2.5, "the scheduled times to pass", timeout=10)
    after = datetime.fromtimestamp(last + 2.5, UTC)
    regular = next_fire_times(cron_trigger(schedule), after, 1)[0].timestamp()

    daemon = daemons(config)
    ready = daemon.wait_ready()
    assert "catching up once" in daemon.stderr(), daemon.stderr()
    daemon.send(signal.SIGUSR2)
    wait_until(lambda: reports(config, "sync", "signal"), "the sync queued after start", daemon)
    caught = reports(config, "rotate")
    assert [(r["trigger"], r["outcome"]) for r in caught] == [("cron", "ok")]
    # at start: after READY=1 (kernel send time), not at the next regular fire
    print(f"timing: catch-up started {caught[0]['started_at'] - ready.at:.3f} s after READY=1")
    assert ready.at <= caught[0]["started_at"] < regular, (ready.at, caught[0], regular)
    assert daemon.stop() == 0

    again = daemons(config)
    again.wait_ready()
    assert "catching up" not in again.stderr(), "a restart right after the catch-up caught up"
    again.send(signal.SIGUSR2)
    wait_until(lambda: reports(config, "sync", "signal")[1:], "the restart's sync", again)
    assert again.stop() == 0
    assert time.time() < regular, "the regular schedule may have fired: test too slow"
    assert len(reports(config, "rotate")) == 1, "caught up twice"
    assert_nodes_match(fleet, config)
