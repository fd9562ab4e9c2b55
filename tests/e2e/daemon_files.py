"""What the end-to-end daemon tests write and read: config, reports, state, key files, the lock."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keysyncd.core.schedule import cron_trigger, next_fire_times
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.e2e.daemon_harness import FAR_SCHEDULE, DaemonProcess, keysyncd
from tests.keystone_compat import load_keys, multifernet

# --- config, reports, keys -------------------------------------------------------------------


def write_config(
    fleet: Fleet, root: Path, *, ssh: dict[str, Any] | None = None, **repository: Any
) -> Path:
    """Write the controller config for every node of ``fleet`` (now); return its path.

    ``ssh`` overrides fields of the ssh section, ``repository`` those of the repository.
    The SSH timeouts are failure bounds only (no node is slow unless a test makes it so,
    and then it sets its own); keys are retired after one second (token_expiration 1) so
    frequent rotations keep the repositories small; local drift watching and periodic
    verifies are off so that only the test triggers actions.
    """
    connection = {
        "user": fleet.user,
        "identity_file": str(fleet.client_key),
        "known_hosts": str(fleet.known_hosts),
        "connect_timeout": 10,
        "operation_timeout": 10,
        "concurrency": 16,
        **(ssh or {}),
    }
    overrides = {"schedule": FAR_SCHEDULE, "token_expiration": 1, "allow_expired_window": 0}
    return fleet_config(
        fleet,
        root,
        repository={**overrides, **repository},
        ssh=connection,
        drift={"watch_local": False, "verify_interval": 3600},
    )


def init(config: Path) -> None:
    """Run ``keysyncd init`` (keys 0 and 1 on the controller and every node)."""
    result = keysyncd(config, "init")
    assert result.returncode == 0, result.stdout + result.stderr


def started_daemon(
    fleet: Fleet, root: Path, daemons: Callable[..., DaemonProcess]
) -> tuple[Path, DaemonProcess]:
    """Write and init a config for ``fleet`` under ``root``, start its daemon with the
    ``daemons`` fixture; return (config, daemon) once the daemon said READY=1."""
    config = write_config(fleet, root)
    init(config)
    daemon = daemons(config)
    daemon.wait_ready()
    return config, daemon


def report_dir(config: Path) -> Path:
    return config.parent / "reports"


def state_dir(config: Path) -> Path:
    return config.parent / "state"


def reports(
    config: Path, action: str | None = None, trigger: str | None = None
) -> list[dict[str, Any]]:
    """Return the reports (of ``action`` by ``trigger``), oldest first."""
    found = []
    directory = report_dir(config)
    names = sorted(os.listdir(directory)) if directory.is_dir() else []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        try:
            document = json.loads((directory / name).read_text())
        except FileNotFoundError:  # pruned by retention meanwhile
            continue
        if (action is None or document.get("action") == action) and (
            trigger is None or document.get("trigger") == trigger
        ):
            # report schema 2 writes RFC 3339 times; the timing checks here compare seconds
            times = {key: epoch(document[key]) for key in ("started_at", "ended_at")}
            found.append({**document, **times})
    return sorted(found, key=lambda document: document["started_at"])


def epoch(value: str) -> float:
    """Return epoch seconds for a report time (``2026-11-22T20:00:00.123456Z``)."""
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def key_files(directory: Path) -> dict[int, bytes]:
    """Return {index: content} of the files keystone would load as keys."""
    return {int(p.name): p.read_bytes() for p in directory.iterdir() if p.name.isdigit()}


def assert_valid(where: str, directory: Path) -> None:
    """Assert keystone's loader accepts ``directory`` and it holds a staged key and a primary."""
    keys = key_files(directory)
    assert 0 in keys, f"{where}: no staged key 0 ({sorted(keys)})"
    assert max(keys) > 0, f"{where}: no primary ({sorted(keys)})"
    assert all(keys.values()), f"{where}: an empty key file"
    assert len(load_keys(str(directory))) == len(keys), f"{where}: keystone skipped a key"
    multifernet(str(directory))  # raises ValueError on a malformed key


def assert_nodes_match(fleet: Fleet, config: Path) -> None:
    """Assert every node holds exactly the controller's keys."""
    controller = key_files(config.parent / "keys")
    for node in fleet.nodes:
        assert key_files(node.directory) == controller, f"{node.name} differs from controller"
        assert_valid(node.name, node.directory)


def next_fire(schedule: str) -> str:
    """Return the next fire time of ``schedule`` as the daemon prints it."""
    when = next_fire_times(cron_trigger(schedule), datetime.now(UTC), 1)[0]
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_holder(config: Path) -> dict[str, Any] | None:
    """Return who holds the keysyncd lock (the lock file's record), or None."""
    try:
        text = (state_dir(config) / "lock").read_text()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None
