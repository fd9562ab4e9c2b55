"""Attacks on session 28's regate move (the shell calls ``Steps.regate`` only after a
before_rotate that succeeded): a before_rotate hook that fails after a hand changed a node.

Before 830f003 the JWS steps read every node again whenever a hook had run (``_gate_again``
in ``promote``), also when before_rotate failed; phase 2 (which still fixes wrong entries)
and the read-back then saw the node as it is. Now a failed before_rotate skips the re-read:
phase 2 plans from the view read before the hook, and ``verify`` keeps that view for every
node phase 2 did not write, so a node that lost a public key during the hook is reported and
journaled ``in_sync``.
"""

from __future__ import annotations

from pathlib import Path

from keysyncd.actions import operations
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_jws_hooks import rotate
from tests.integration.test_rotate import reports, run
from tests.jws_world import World, act
from tests.keystone_compat import multifernet


def test_a_node_changed_by_a_failing_before_rotate_is_not_reported_in_sync(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    victim = world.public("node2")
    gone = sorted(victim.iterdir())[0]
    # the hook (a hand, config management) removes a public key from node2, then fails
    set_hooks(
        world.path,
        before_rotate=[script(tmp_path / "hand", f'rm -f -- "{gone}"\nexit 1')],
    )
    assert rotate(world) == 1
    assert not gone.exists()
    report = reports(world.path, "rotate")[-1]
    assert report["outcome"] == "failed", report
    status = report["nodes"]["node2"]["status"]
    assert status != "in_sync", f"node2 lacks {gone.name} but the report says {status}"


def test_a_forced_rotation_still_pushes_to_a_node_that_drifted_during_before_rotate(
    fleet: Fleet, tmp_path: Path
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    victim = fleet.nodes[1].directory
    # a hand during the hook takes node2's primary (key 1); node2 stays reachable
    set_hooks(config, before_rotate=[script(tmp_path / "hand", f'rm -f "{victim}/1"')])
    code = run(config, "rotate", "--force")
    report = reports(config, "rotate")[-1]
    statuses = {name: node["status"] for name, node in report["nodes"].items()}
    assert statuses["node2"] in ("in_sync", "updated"), (code, statuses, report["messages"])
    for signer in fleet.nodes:
        token = multifernet(str(signer.directory)).encrypt(b"after a forced rotation")
        for reader in fleet.nodes:
            multifernet(str(reader.directory)).decrypt(token)  # keystone on reader accepts it
