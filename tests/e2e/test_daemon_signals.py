"""The daemon and systemd end to end: notify, watchdog, reload, SIGINT, SIGUSR1, SIGUSR2.

How the daemon is started, watched and stopped: ``tests/e2e/daemon_harness.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import (
    assert_nodes_match,
    init,
    key_files,
    next_fire,
    reports,
    started_daemon,
    state_dir,
    write_config,
)
from tests.e2e.daemon_harness import (
    FAR_SCHEDULE,
    REPOSITORY,
    STOP_BOUND,
    WATCHDOG_USEC,
    DaemonProcess,
    wait_until,
)

pytestmark = pytest.mark.fleet


# --- 2. systemd notify -----------------------------------------------------------------------

# WatchdogSec=1: systemd kills a service that stays silent for 1 s; the daemon pings every
# 0.5 s. Gaps are measured between the kernel's send times of the pings, so only the
# daemon's own wake-up delay counts: tens of milliseconds on a loaded 2-core machine,
# against a 0.5 s margin. The lower bound (half the interval) says it does not flood.
PINGS = 4


def test_notify_ready_status_watchdog_reload_and_stopping(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """READY=1 with STATUS and MAINPID, WATCHDOG=1 pings, RELOADING=1/READY=1, STOPPING=1."""
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config)
    ready = daemon.wait_ready()
    notify = daemon.notify
    assert ready.fields.get("MAINPID") == str(daemon.pid)
    status = ready.fields.get("STATUS") or ""
    assert f"next rotation {REPOSITORY} {next_fire(FAR_SCHEDULE)}" in status, ready
    first = notify.find("READY", "1")
    assert first is not None
    pings = [first]
    for _ in range(PINGS):
        pings.append(notify.wait("WATCHDOG", "1", pings[-1] + 1, daemon=daemon))
    times = [notify.messages[index].at for index in pings[1:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    interval = WATCHDOG_USEC / 2e6
    print(f"timing: WATCHDOG=1 gaps {[round(gap, 3) for gap in gaps]} s")
    assert all(interval / 2 < gap < 2 * interval for gap in gaps), (
        f"WATCHDOG=1 gaps {[round(gap, 3) for gap in gaps]} s; WatchdogSec=1 needs < 1 s"
    )

    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    reloading = notify.wait("RELOADING", "1", mark, daemon=daemon)
    again = notify.wait("READY", "1", reloading, daemon=daemon)
    assert "next rotation" in notify.messages[again].fields.get("STATUS", "")

    mark = len(notify.messages)
    assert daemon.stop() == 0
    notify.wait("STOPPING", "1", mark)


def test_sigint_stops_like_sigterm_and_exits_130(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Ctrl-C (a real SIGINT to the running daemon): the same graceful stop, exit 130.

    The exit-code table says 130 for an interruption; SIGTERM (systemd's stop) stays 0.
    """
    config, daemon = started_daemon(fleet, tmp_path / "ctl", daemons)
    mark = len(daemon.notify.messages)
    daemon.send(signal.SIGINT)
    try:
        code = daemon.proc.wait(STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"daemon did not exit within {STOP_BOUND:g}s of SIGINT:\n{daemon.stderr()}")
    assert code == 130, daemon.stderr()
    daemon.notify.wait("STOPPING", "1", mark)
    assert "Traceback" not in daemon.stderr()
    assert not (state_dir(config) / "daemon.json").exists(), "a graceful stop cleans up"


# --- 3. signals (and --log-format json) ------------------------------------------------------

# SIGUSR1 means "rotate now": its rotation starts (report started_at, the daemon's clock)
# within this long of the signal. Idle it is milliseconds (the handler wakes the worker);
# the margin covers a loaded 2-core machine many times over, and it is far below any
# schedule, so only the signal can have started it.
PROMPT = 5.0


def test_sigusr1_rotates_and_sigusr2_syncs_and_verifies(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGUSR1: a rotation report (signal) started at once; SIGUSR2: a sync and a verify report.

    Also: ``--log-format json`` logs one JSON object per stderr line, and without
    $WATCHDOG_USEC the daemon sends no WATCHDOG=1.
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(config, "--log-format", "json", watchdog=False)
    ready = daemon.wait_ready()
    signalled = time.time()
    daemon.send(signal.SIGUSR1)
    rotated = wait_until(lambda: reports(config, "rotate", "signal"), "rotation", daemon)
    assert [r["outcome"] for r in rotated] == ["ok"]
    delay = rotated[0]["started_at"] - signalled
    print(f"timing: rotation started {delay:.3f} s after SIGUSR1")
    assert -0.001 <= delay < PROMPT, f"the rotation started {delay:.2f}s after SIGUSR1"
    assert_nodes_match(fleet, config)

    daemon.send(signal.SIGUSR2)
    synced = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)
    verified = wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)
    assert [r["outcome"] for r in synced + verified] == ["ok", "ok"]
    assert set(verified[0]["nodes"]) == {n.name for n in fleet.nodes}
    # An absence over time: give a watchdog the daemon should not run four of its 0.5 s
    # intervals after READY=1 (the actions above may take only a fraction of a second).
    silence = 4 * WATCHDOG_USEC / 2e6
    wait_until(lambda: time.time() > ready.at + silence, "a watchdog's pings to be due", daemon)
    mark = len(daemon.notify.messages)
    assert daemon.stop() == 0
    daemon.notify.wait("STOPPING", "1", mark)  # the last datagram: every one is in
    assert reports(config, "rotate", "cron") == []
    assert daemon.notify.find("WATCHDOG") is None

    lines = [line for line in daemon.stderr().splitlines() if line.strip()]
    assert lines, "the daemon logged nothing"
    documents = []
    for line in lines:
        try:
            documents.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert all({"time", "level", "logger", "message"} <= set(d) for d in documents), documents
    messages = [d["message"] for d in documents]
    assert any(m.startswith("SIGUSR1") for m in messages), messages
    assert any(m.startswith("SIGUSR2") for m in messages), messages


# --- 4. reload (and journald priority prefixes) ----------------------------------------------


def test_reload_adds_a_node_and_rejects_an_invalid_config(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """SIGHUP with a new node: the next sync pushes to it. SIGHUP with a broken config: every
    error is logged with its path and the daemon keeps working with the previous config.

    Run as under systemd, stderr connected to the journal ($JOURNAL_STREAM names it): stderr
    lines carry ``<N>`` priorities and no time (journald adds its own).
    """
    config = write_config(fleet, tmp_path / "ctl")
    init(config)
    daemon = daemons(
        config, env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"}, journal=True
    )
    daemon.wait_ready()
    notify = daemon.notify

    new_node = fleet.add_node()
    write_config(fleet, tmp_path / "ctl")
    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    notify.wait("READY", "1", notify.wait("RELOADING", "1", mark, daemon=daemon), daemon=daemon)
    daemon.send(signal.SIGUSR2)
    sync = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)[0]
    assert sync["outcome"] == "ok", sync
    assert sync["nodes"][new_node.name]["status"] == "updated", sync["nodes"]
    assert key_files(new_node.directory) == key_files(config.parent / "keys")
    wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)

    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["max_active_keys"] = 0
    document["repositories"][0]["no_such_option"] = True
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    notify.wait("READY", "1", notify.wait("RELOADING", "1", mark, daemon=daemon), daemon=daemon)
    for path in ("repositories[0].max_active_keys", "repositories[0].no_such_option"):
        wait_until(lambda path=path: f"At '{path}'" in daemon.stderr(), path, daemon)
    daemon.send(signal.SIGUSR2)
    syncs = wait_until(lambda: reports(config, "sync", "signal")[1:], "2nd sync", daemon)
    assert syncs[-1]["outcome"] == "ok", syncs[-1]
    assert set(syncs[-1]["nodes"]) == {n.name for n in fleet.nodes}, "old config not kept"
    assert daemon.stop() == 0

    log = daemon.stderr()
    rejected = [line for line in log.splitlines() if "reload rejected: At '" in line]
    assert any("At 'repositories[0].max_active_keys'" in line for line in rejected), log
    assert any("At 'repositories[0].no_such_option'" in line for line in rejected), log
    assert all(line.startswith("<3>keysyncd") for line in rejected), rejected
    for line in filter(None, log.splitlines()):
        assert re.match(r"<[0-7]>[\w.]+: ", line), f"no priority prefix (or a timestamp): {line!r}"
    assert re.search(r"^<6>keysyncd[\w.]*: started", log, re.MULTILINE), log
