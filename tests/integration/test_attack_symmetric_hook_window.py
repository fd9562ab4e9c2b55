"""Attacks on the window a before_rotate hook opens between the Fernet gate (every node
verified holding the staged key) and the promotion, on a real OpenSSH fleet, judged by
keystone's own key loading (tests/keystone_compat.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_rotate import reports, run
from tests.keystone_compat import multifernet


def test_a_staged_key_lost_during_before_rotate_is_not_promoted_past_that_node(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    victim = fleet.nodes[1].directory
    # during the hook node2 loses the staged key, and a directory takes the name the new
    # primary gets (phase 1 cannot put it there)
    set_hooks(
        config,
        before_rotate=[script(tmp_path / "hand", f'rm -f "{victim}/0" && mkdir "{victim}/2"')],
    )
    before = {node.name: sorted(p.name for p in node.directory.iterdir()) for node in fleet.nodes}
    capsys.readouterr()
    assert run(config, "rotate") == 1
    assert "rotation deferred, nothing changed" in capsys.readouterr().out
    report = reports(config, "rotate")[-1]
    assert report["outcome"] == "deferred", report
    assert report["nodes"]["node2"]["status"] != "in_sync"
    assert sorted(p.name for p in fleet.nodes[0].directory.iterdir()) == before["node1"]
    for signer in fleet.nodes:
        token = multifernet(str(signer.directory)).encrypt(b"attacker")
        for reader in fleet.nodes:
            multifernet(str(reader.directory)).decrypt(token)  # keystone on reader accepts it

    # once the hand's directory is gone, the next rotation heals node2 and rotates
    (victim / "2").rmdir()
    set_hooks(config)
    assert run(config, "rotate") == 0
    assert run(config, "verify") == 0
