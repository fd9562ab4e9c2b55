"""The periodic drift check of a ``jws`` repository backs off an unreachable node as it does
for Fernet (the one ``readonly.check_fleet``): against a real OpenSSH fleet, a node whose sshd
is stopped fails one check, and the next checks skip it ("backing off after ...") instead of
trying it every time, even once it is back, until its next attempt is due."""

from __future__ import annotations

import json

from keysyncd.actions import operations
from keysyncd.core.vocabulary import NodeStatus
from tests.integration.test_rotate import reports
from tests.jws_world import World, act


def journal(world: World) -> dict:
    path = world.path.parent / "state" / "repositories" / "fernet-tokens.json"
    return json.loads(path.read_text())


def test_jws_drift_backs_off_an_unreachable_node(world: World) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    world.fleet.stop_node("node3")
    first = act(world, operations.check_fleet)
    assert first is not None and first.report is not None
    assert first.nodes["node3"].status == NodeStatus.FAILED, first.nodes
    assert first.nodes["node3"].reason in ("unreachable", "timeout"), first.nodes
    record = journal(world)["nodes"]["node3"]
    assert record["failures"] == 1 and record["next_attempt_at"], record

    world.fleet.start_node("node3")  # back, but not due yet: not tried at every check
    for _ in range(2):
        later = act(world, operations.check_fleet)
        assert later is not None and later.report is not None
        skipped = later.nodes["node3"]
        assert skipped.status == NodeStatus.SKIPPED, later.nodes
        assert "backing off after 1 failed attempts" in (skipped.error or ""), skipped
        assert later.nodes["node1"].status == NodeStatus.IN_SYNC, later.nodes
        assert "node3" in later.report.details["backoff"]
    checks = [r for r in reports(world.path, "verify") if "node3" in r["nodes"]]
    assert [r["nodes"]["node3"]["status"] for r in checks] == ["failed", "skipped", "skipped"]
    assert journal(world)["nodes"]["node3"]["failures"] == 1, "a skipped node is not retried"
