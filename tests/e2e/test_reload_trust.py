"""The daemon's reload (real ``keysyncd run``, real SIGHUP, real 3-node fleet) refuses a new
config that is unsafe, as it refuses an invalid one: the reason is logged, the previous
config is kept (the next sync still reaches every node it names), and each rejection is
counted in ``keysyncd_config_reload_failures_total`` (read from the metrics textfile the
daemon writes at every commit)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import init, reports, write_config
from tests.e2e.daemon_harness import DaemonProcess, wait_until

pytestmark = pytest.mark.fleet


def reload(daemon: DaemonProcess) -> None:
    """Send SIGHUP and wait until the daemon says it is ready again."""
    notify = daemon.notify
    mark = len(notify.messages)
    daemon.send(signal.SIGHUP)
    notify.wait("READY", "1", notify.wait("RELOADING", "1", mark, daemon=daemon), daemon=daemon)


def sync_reaches(config: Path, daemon: DaemonProcess, count: int) -> set[str]:
    """SIGUSR2, wait for the ``count``-th sync report; return the nodes it names."""
    daemon.send(signal.SIGUSR2)
    syncs = wait_until(
        lambda: reports(config, "sync", "signal")[count - 1 :], f"sync {count}", daemon
    )
    assert syncs[-1]["outcome"] == "ok", syncs[-1]
    return set(syncs[-1]["nodes"])


def counted(textfile: Path, daemon: DaemonProcess, count: int) -> None:
    """Wait until the textfile (rewritten at each commit, just after its report) counts
    ``count`` rejected reloads."""
    wanted = f"keysyncd_config_reload_failures_total {count:.1f}"
    wait_until(lambda: wanted in textfile.read_text().splitlines(), wanted, daemon)


def test_reload_keeps_the_old_config_when_the_new_one_is_unsafe_and_counts_it(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    config = write_config(fleet, tmp_path / "ctl")
    textfile = tmp_path / "ctl" / "metrics" / "keysyncd.prom"
    document = yaml.safe_load(config.read_text())
    document["metrics"] = {"textfile": str(textfile)}
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    init(config)
    everyone = {node.name for node in fleet.nodes}
    daemon = daemons(config)
    daemon.wait_ready()

    # 1. a valid config (one node fewer), but a file anyone may write
    smaller = {**document, "nodes": document["nodes"][:1]}
    config.write_text(yaml.safe_dump(smaller, sort_keys=False))
    config.chmod(0o666)
    reload(daemon)
    unsafe = f"config file {config} is unsafe: writable by group or others (mode 0666)"
    wait_until(lambda: f"reload rejected: {unsafe}" in daemon.stderr(), "rejection", daemon)
    assert sync_reaches(config, daemon, 1) == everyone, "the previous config was kept"
    counted(textfile, daemon, 1)

    # 2. a safe file naming a hook anyone may write
    hook = tmp_path / "migrate"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o777)
    smaller["repositories"][0]["hooks"] = {"after_rotate": [str(hook)]}
    config.write_text(yaml.safe_dump(smaller, sort_keys=False))
    config.chmod(0o644)
    reload(daemon)
    wait_until(lambda: f"hook program {hook} is unsafe" in daemon.stderr(), "hook", daemon)
    assert sync_reaches(config, daemon, 2) == everyone
    counted(textfile, daemon, 2)

    # 3. an invalid config counts alike; then a safe, valid one is taken
    config.write_text("repositories: 7\n")
    reload(daemon)
    wait_until(lambda: "At 'repositories'" in daemon.stderr(), "invalid", daemon)
    hook.chmod(0o755)
    config.write_text(yaml.safe_dump(smaller, sort_keys=False))
    reload(daemon)
    wait_until(lambda: "configuration reloaded" in daemon.stderr(), "reloaded", daemon)
    assert sync_reaches(config, daemon, 3) == {fleet.nodes[0].name}
    counted(textfile, daemon, 3)
    assert daemon.stop() == 0
    assert os.stat(config).st_mode & 0o777 == 0o644
