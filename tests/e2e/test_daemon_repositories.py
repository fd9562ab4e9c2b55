"""The running daemon and its repositories end to end.

The lock against the CLI, status, a broken repository beside good ones, a JWS repository.

How the daemon is started, watched and stopped: ``tests/e2e/daemon_harness.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_files import (
    assert_nodes_match,
    init,
    lock_holder,
    next_fire,
    reports,
    started_daemon,
    state_dir,
    write_config,
)
from tests.e2e.daemon_harness import FAR_SCHEDULE, REPOSITORY, DaemonProcess, keysyncd, wait_until
from tests.e2e.waiting import HeldHook

pytestmark = pytest.mark.fleet


# --- 7. one writer: the CLI is refused while the daemon rotates ------------------------------


def test_cli_rotate_is_refused_while_the_daemon_rotates(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """``keysyncd rotate`` during the daemon's rotation exits 1 and names the daemon.

    The daemon's rotation is held in its before_rotate hook until the CLI has been refused.
    """
    hook = HeldHook.at(tmp_path / "hook")
    config = write_config(fleet, tmp_path / "ctl", hooks={"before_rotate": [hook.command]})
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    try:
        daemon.send(signal.SIGUSR1)
        hook.wait_started(
            "the daemon's before_rotate hook", gone=daemon.gone, context=daemon.context
        )
        holder = lock_holder(config)
        assert holder is not None and holder["pid"] == daemon.pid, holder
        result = keysyncd(config, "rotate")
    finally:
        hook.let_go()
    assert result.returncode == 1, result.stdout + result.stderr
    expected = f"another keysyncd holds the lock: PID {daemon.pid} (rotate (signal)) since "
    assert expected in result.stderr, result.stderr
    done = wait_until(lambda: reports(config, "rotate"), "the daemon's rotation", daemon)
    assert daemon.stop() == 0
    assert [(r["trigger"], r["outcome"]) for r in done] == [("signal", "ok")]
    assert len(reports(config, "rotate")) == 1, "the refused CLI rotation left a report"
    assert_nodes_match(fleet, config)


# --- 8. status -------------------------------------------------------------------------------


def test_status_shows_the_running_daemon_then_not_running(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """``status`` (and --json): the daemon's PID, next rotation, last outcome; then not running."""
    config, daemon = started_daemon(fleet, tmp_path / "ctl", daemons)
    daemon.send(signal.SIGUSR1)
    wait_until(lambda: reports(config, "rotate"), "the rotation", daemon)
    info_path = state_dir(config) / "daemon.json"
    wait_until(
        lambda: info_path.exists() and json.loads(info_path.read_text())["last_job"],
        "daemon.json to record the rotation",
        daemon,
    )
    expected_next = next_fire(FAR_SCHEDULE)

    text = keysyncd(config, "status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"daemon: running as PID {daemon.pid}" in text.stdout, text.stdout
    assert f"next rotation of {REPOSITORY}: {expected_next}" in text.stdout, text.stdout
    assert "last action: rotate (signal) ok" in text.stdout, text.stdout

    machine = keysyncd(config, "status", "--json")
    assert machine.returncode == 0, machine.stdout + machine.stderr
    info = json.loads(machine.stdout)["daemon"]
    assert info["pid"] == daemon.pid
    assert info["next_rotation"] == {REPOSITORY: expected_next}
    assert (info["last_job"]["action"], info["last_job"]["trigger"]) == ("rotate", "signal")
    assert info["last_job"]["outcome"] == "ok"

    assert daemon.stop() == 0
    stopped = keysyncd(config, "status")
    assert "daemon: not running" in stopped.stdout, stopped.stdout
    assert json.loads(keysyncd(config, "status", "--json").stdout)["daemon"] is None


# --- each repository on its own ---------------------------------------------------------------


def test_one_broken_repository_never_stops_the_others(
    tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """Two repositories, the first broken (an empty staged key): on the daemon's schedule the
    second rotates every time, and the periodic check covers both, each on its own."""
    root = tmp_path / "ctl"
    root.mkdir()
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(root / "state"),
                "report_dir": str(root / "reports"),
                "repositories": [
                    {
                        "name": name,
                        "kind": kind,
                        "path": str(root / name),
                        "schedule": "*/2 * * * * *",
                        "token_expiration": 1,
                        "allow_expired_window": 0,
                    }
                    for name, kind in (
                        ("fernet-tokens", "fernet"),
                        ("credential-keys", "credential"),
                    )
                ],
                "drift": {"watch_local": False, "verify_interval": 2},
            }
        )
    )
    init(config)
    (root / "fernet-tokens" / "0").write_bytes(b"")
    daemon = daemons(config)
    daemon.wait_ready()

    def by_repository(name: str, action: str) -> list[dict[str, Any]]:
        return [r for r in reports(config, action, "cron") if r["repository"] == name]

    rotated = wait_until(
        lambda: (found := by_repository("credential-keys", "rotate"))[1:] and found,
        "two rotations of the second repository",
        daemon,
    )
    checked = wait_until(
        lambda: by_repository("fernet-tokens", "drift"), "the broken one reported", daemon
    )
    assert daemon.stop() == 0
    assert all(report["outcome"] == "ok" for report in rotated), rotated
    assert checked[0]["outcome"] == "failed" and "empty key" in " ".join(checked[0]["messages"])
    assert by_repository("fernet-tokens", "rotate") == [], "the broken one is never rotated"
    assert sorted(p.name for p in (root / "fernet-tokens").iterdir()) == ["0", "1"]
    log = daemon.stderr_path.read_text()
    assert re.search(r"rotate \(cron\) of fernet-tokens: failed", log), log[-2000:]


# --- 9. a jws repository under the daemon ----------------------------------------------------


def test_the_daemon_rotates_syncs_and_measures_a_jws_repository(
    fleet: Fleet, tmp_path: Path, daemons: Callable[..., DaemonProcess]
) -> None:
    """kind jws under the daemon: SIGUSR1 gives every node a new pair, public keys first;
    SIGUSR2 syncs and verifies; the metrics textfile describes the repository and its nodes."""
    config = write_config(fleet, tmp_path / "ctl", kind="jws")
    document = yaml.safe_load(config.read_text())
    document["repositories"][0].pop("max_active_keys")
    document["metrics"] = {"textfile": str(tmp_path / "ctl" / "metrics.prom")}
    config.write_text(yaml.safe_dump(document))
    init(config)
    private = {n.name: (n.directory / "private" / "private.pem").read_bytes() for n in fleet.nodes}
    first_public = {n.name: set(os.listdir(n.directory / "public")) for n in fleet.nodes}
    assert all(len(names) == 3 for names in first_public.values()), first_public

    daemon = daemons(config)
    daemon.wait_ready()
    daemon.send(signal.SIGUSR1)
    rotated = wait_until(lambda: reports(config, "rotate", "signal"), "the jws rotation", daemon)
    assert [r["outcome"] for r in rotated] == ["ok"], rotated
    assert set(rotated[0]["nodes"]) == {n.name for n in fleet.nodes}
    for node in fleet.nodes:
        assert (node.directory / "private" / "private.pem").read_bytes() != private[node.name]
        public = set(os.listdir(node.directory / "public"))
        assert first_public[node.name] < public, "old public keys kept while tokens may live"
    daemon.send(signal.SIGUSR2)
    synced = wait_until(lambda: reports(config, "sync", "signal"), "sync", daemon)
    verified = wait_until(lambda: reports(config, "verify", "signal"), "verify", daemon)
    assert [r["outcome"] for r in synced + verified] == ["ok", "ok"]
    textfile = tmp_path / "ctl" / "metrics.prom"
    metrics = wait_until(
        lambda: textfile.exists() and textfile.read_text(), "the metrics textfile", daemon
    )
    assert daemon.stop() == 0
    assert f'keysyncd_nodes_in_sync{{repository="{REPOSITORY}"}} 3.0' in metrics, metrics
    for node in fleet.nodes:
        assert f'keysyncd_node_up{{node="{node.name}",repository="{REPOSITORY}"}} 1.0' in metrics
