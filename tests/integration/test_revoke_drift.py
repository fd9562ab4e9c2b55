"""Drift repair never leaves a revoked key on a node (issue 22, item 4): a node that shows a
revoked key again (restored from a backup, copied back) is repaired by the daemon's periodic
check, as the daemon calls it (``operations.check_fleet``), and the report says so; judged by
keystone's own Fernet code (tests/keystone_compat.py) on a real OpenSSH fleet."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.fernet import Fernet

from keysyncd.actions import operations
from keysyncd.actions.context import ActionResult, Run
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Trigger
from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import accepted, keys_of, ready, revoke
from tests.integration.test_rotate import reports

__all__ = ["ready"]  # the fixture: a fleet holding {0, 1, 2}, every node in sync


def daemon_check(config: Path) -> ActionResult | None:
    """Run the daemon's periodic check of the nodes of the one repository; return its result."""
    loaded = load_config(config)
    return operations.check_fleet(Run(loaded, loaded.repositories[0], Trigger.CRON))


def test_drift_repair_removes_a_revoked_key_a_node_shows_again_and_reports_it(
    ready: tuple[Fleet, Path],
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    forged = Fernet(leaked).encrypt(b"user")
    others = [Fernet(key).encrypt(b"user") for key in keys_of(config.parent / "keys").values()]
    others = [token for token in others if token != forged]
    assert revoke(config, "--index", "1", "--reason", "leak") == 0
    every = [node.name for node in fleet.nodes]
    kept = [t for t in others if accepted(fleet, t) == every]
    assert accepted(fleet, forged) == []
    # node1 gets it back under its old name; node2 above the primary (keystone there would
    # sign with it): neither is a divergence to leave alone
    (fleet.nodes[0].directory / "1").write_bytes(leaked)
    (fleet.nodes[1].directory / "9").write_bytes(leaked)
    (fleet.nodes[1].directory / "9").chmod(0o600)
    assert accepted(fleet, forged) == ["node1", "node2"]
    result = daemon_check(config)
    assert result is not None and result.ok and result.report is not None
    assert result.report.action == "drift"
    assert accepted(fleet, forged) == []
    assert "1" not in {p.name for p in fleet.nodes[0].directory.iterdir()}
    assert "9" not in {p.name for p in fleet.nodes[1].directory.iterdir()}
    for token in kept:  # every other token still validates everywhere
        assert accepted(fleet, token) == every
    document = reports(config, "drift")[-1]
    # below the primary a key the controller lacks is removed unread (whatever it holds: a
    # read lets a hostile node stall); above it, it is read, and named revoked
    assert document["nodes"]["node1"]["status"] == "repaired"
    assert document["nodes"]["node1"]["changes"] == {"extra": [1]}
    node2 = document["nodes"]["node2"]
    assert node2["status"] == "repaired"
    assert node2["changes"] == {"extra": [9], "revoked": [9]}
    said = [m for m in document["messages"] if m.startswith("drift on node2:")]
    assert said == ["drift on node2: extra key 9, revoked, held again: key 9"]
    assert document["nodes"]["node3"]["status"] == "in_sync"
    state = config.parent / "state" / "repositories" / "fernet-tokens.json"
    assert json.loads(state.read_text())["counters"]["drift:revoked"] == 1
