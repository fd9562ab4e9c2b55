"""Faults only whole machines have, end to end, with the daemon rotating every few seconds.

A controller and three nodes, each a Debian machine booting systemd (keysyncd.testing.
containers). keysyncd runs on the controller under the SHIPPED unit and its real systemd,
on a cron schedule of a few seconds. The faults: a network partition across a scheduled
rotation, a node frozen in the middle of a push, a node crashed and booted again, a node
with a new host key. After each, every node's directory passes keystone's loader logic
(run inside the node) and holds exactly the controller's keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from keysyncd.testing.containers import ContainerFleet
from keysyncd.testing.containers_controller import Controller, base_config

pytestmark = pytest.mark.docker

SCHEDULE = "*/5 * * * * *"  # every 5 s
ROTATION_WAIT = 40.0  # several scheduled rotations, with room for a busy 2-core machine


@pytest.fixture
def rotating(make_container_fleet: Callable[..., ContainerFleet]) -> Iterator[Controller]:
    """Return the controller of a 3-node fleet, initialised, its daemon rotating every 5 s."""
    fleet = make_container_fleet(3)
    controller = Controller(fleet)
    controller.install(base_config(fleet, SCHEDULE))
    code, out, err = controller.cli("init", "--wait", "30")
    assert code == 0, out + err
    controller.systemctl("start", "keysyncd.service")
    controller.assert_converged()
    yield controller
    controller.systemctl("stop", "keysyncd.service", check=False)


def reports_since(controller: Controller, since: float, **fields: str) -> list[dict[str, Any]]:
    """Return the reports started at or after ``since`` whose fields equal ``fields``."""
    return [
        report
        for report in controller.reports()
        if epoch(report["started_at"]) >= since
        and all(report.get(k) == v for k, v in fields.items())
    ]


def wait_report(controller: Controller, since: float, what: str, **fields: str) -> dict[str, Any]:
    """Return the first report since ``since`` with ``fields`` (bounded wait)."""
    found = controller.wait_for(
        lambda: reports_since(controller, since, **fields), ROTATION_WAIT, what
    )
    return found[0]


def just_rotated(controller: Controller) -> dict[int, str]:
    """Return the keys every node holds right after a scheduled rotation: the next is seconds away.

    A fault injected now cannot race a rotation that had already passed its gate.
    """
    wait_report(controller, time.time(), "a scheduled rotation", action="rotate", outcome="ok")
    return controller.assert_converged()


def deferred_twice(controller: Controller, since: float, node: str) -> dict[str, Any]:
    """Return the first rotation deferred for ``node`` since ``since``; assert that nothing
    was promoted anywhere until the next deferred one, and return the node's outcome."""
    first = wait_report(controller, since, f"a rotation deferred by {node}",
                        action="rotate", outcome="deferred")  # fmt: skip
    keys = controller.repository_keys()
    healthy = [n.name for n in controller.fleet.nodes if n.name != node]
    held = {name: controller.repository_keys(name) for name in healthy}
    wait_report(controller, epoch(first["ended_at"]), "the next deferred rotation",
                action="rotate", outcome="deferred")  # fmt: skip
    assert controller.repository_keys() == keys, "a key was promoted while a node was out"
    assert {name: controller.repository_keys(name) for name in healthy} == held
    assert not reports_since(controller, since, action="rotate", outcome="ok")
    outcome: dict[str, Any] = first["nodes"][node]
    assert outcome["status"] == "failed", first["nodes"]
    return outcome


def test_a_partitioned_node_defers_the_rotation_then_converges_after_heal(
    rotating: Controller,
) -> None:
    fleet, controller = rotating.fleet, rotating
    before = just_rotated(controller)
    fleet.partition("node2")
    outcome = deferred_twice(controller, time.time(), "node2")
    assert outcome["reason"] in ("unreachable", "timeout"), outcome
    assert controller.repository_keys() == before

    fleet.heal("node2")
    healed = time.time()
    rotated = wait_report(controller, healed, "a rotation after heal", action="rotate",
                          outcome="ok")  # fmt: skip
    assert rotated["nodes"]["node2"]["status"] in ("in_sync", "updated"), rotated["nodes"]
    after = controller.assert_converged()
    assert max(after) > max(before), "the next rotation did not promote a new key"


def test_a_node_paused_in_the_middle_of_a_push_times_out_and_converges_after_resume(
    rotating: Controller,
) -> None:
    fleet, controller = rotating.fleet, rotating
    before = just_rotated(controller)
    armed = time.time()
    sessions = controller.freeze_on_push("node2", ROTATION_WAIT)
    fleet.pause("node2")  # the whole machine now, its SFTP session already mid-push
    try:
        report = wait_report(controller, armed, "the rotation with node2 frozen",
                             action="rotate", outcome="partial")  # fmt: skip
        nodes = report["nodes"]
        assert nodes["node2"]["status"] == "failed", nodes
        assert nodes["node2"]["reason"] == "timeout", nodes
        for name in ("node1", "node3"):
            assert nodes[name]["status"] in ("updated", "in_sync"), nodes
        promoted = controller.repository_keys()
        assert max(promoted) > max(before)
        for name in ("node1", "node3"):
            assert controller.repository_keys(name) == promoted
    finally:
        fleet.resume("node2")
        fleet.exec("node2", "kill", "-CONT", *sessions, check=False)
    controller.assert_converged()


def test_a_crashed_node_keeps_its_keys_and_converges_after_boot(rotating: Controller) -> None:
    fleet, controller = rotating.fleet, rotating
    before = just_rotated(controller)
    fleet.crash("node3")
    outcome = deferred_twice(controller, time.time(), "node3")
    assert outcome["reason"] in ("unreachable", "timeout"), outcome
    assert controller.repository_keys() == before

    fleet.boot("node3", wait=False)
    survived = controller.wait_for(
        lambda: _keys_or_none(controller, "node3"), 30, "node3's file system after boot"
    )
    assert survived == before, "node3 lost keys in the crash"
    fleet.wait_booted("node3")
    booted = time.time()
    wait_report(controller, booted, "a rotation after boot", action="rotate", outcome="ok")
    after = controller.assert_converged()
    assert max(after) > max(before)


def _keys_or_none(controller: Controller, machine: str) -> dict[int, str] | None:
    try:
        return controller.repository_keys(machine)
    except Exception:  # the machine is still starting: exec is not possible yet
        return None


def test_a_rekeyed_node_is_refused_until_the_operator_updates_known_hosts(
    rotating: Controller,
) -> None:
    fleet, controller = rotating.fleet, rotating
    before = just_rotated(controller)
    fleet.rekey_node("node1")
    outcome = deferred_twice(controller, time.time(), "node1")
    assert outcome["reason"] == "host_key", outcome
    assert controller.repository_keys() == before
    assert controller.repository_keys("node1") == before, "something was written to node1"

    fleet.accept_host_key("node1")  # the operator verified the new key out of band
    controller.write_known_hosts()
    controller.systemctl("reload", "keysyncd.service")
    accepted = time.time()
    wait_report(controller, accepted, "a rotation after known_hosts was updated",
                action="rotate", outcome="ok")  # fmt: skip
    after = controller.assert_converged()
    assert max(after) > max(before)


def epoch(value: str) -> float:
    """Return epoch seconds for a report time (schema 2: ``2026-11-22T20:00:00.123456Z``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
