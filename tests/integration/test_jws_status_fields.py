"""JWS ``status`` and ``plan`` on par with Fernet's (issue 20, item 2), on real fleets: both
kinds build their status through one function (``keysyncd.actions.inspect.common_status``),
so ``status --json`` has the same fields for each, and the JWS ones are filled: the last
action, what waits on a node that is down, a failed hook blocking the next rotation. ``plan``
shows every JWS pair's lifecycle: each node's pair now, the pair each rotation makes, and
when the replaced public keys retire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from keysyncd.core.journal import HookBlock
from keysyncd.io.local.state import load_state, save_state
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import RETENTION, World, act


def status(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Return the exit code and the one repository's ``status --json``."""
    capsys.readouterr()
    code = main(["-c", str(path), "status", "--json"])
    document = json.loads(capsys.readouterr().out)
    (repository,) = document["repositories"]
    return code, {**repository, "attention": document["attention"]}


@pytest.fixture
def fernet(make_fleet: Callable[..., Fleet], tmp_path: Path) -> World:
    """A Fernet repository on a 2-node fleet of its own, initialised and rotated."""
    fleet = make_fleet(2)
    world = World(fleet, fleet_config(fleet, tmp_path / "fernet"))
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.rotate, False, False).outcome == "ok"
    return world


def test_status_of_each_kind_has_the_same_fields_and_jws_fills_them(
    world: World, fernet: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.rotate, False, False).outcome == "ok"
    fernet_code, symmetric = status(fernet.path, capsys)
    code, jws = status(world.path, capsys)
    assert (code, fernet_code) == (0, 0), (jws["attention"], symmetric["attention"])
    assert set(jws) == set(symmetric)
    assert {k for node in jws["nodes"].values() for k in node} == {
        k for node in symmetric["nodes"].values() for k in node
    }
    assert jws["last_action"]["action"] == "rotate" and jws["last_action"]["outcome"] == "ok"
    assert jws["last_action"]["report"] and jws["last_action"]["at"].endswith("Z")
    assert jws["last_rotation_at"] and jws["next_rotation_at"] and jws["generation"] >= 2
    assert jws["algorithm"] == "ES256" and symmetric["algorithm"] is None
    assert {key["node"] for key in jws["keys"] if key["role"] == "signing"} == {
        "node1", "node2", "node3"
    }  # fmt: skip
    assert {entry["status"] for entry in jws["nodes"].values()} == {"in_sync"}
    assert jws["rotation_blocked_by"] is None and jws["warnings"] == []
    assert jws["clock"]["trusted"] is True


def test_jws_status_warns_of_a_node_down_and_of_a_blocking_hook(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    world.fleet.stop_node("node3")
    try:
        assert act(world, operations.rotate, False, False).outcome == "deferred"
        code, down = status(world.path, capsys)
    finally:
        world.fleet.start_node("node3")
    assert code == 1
    assert down["last_action"]["action"] == "rotate"
    assert down["last_action"]["outcome"] == "deferred"
    assert down["nodes"]["node3"]["status"] == "failed"
    assert any("node node3 failed its last check" in reason for reason in down["attention"])
    (waiting,) = [w for w in down["warnings"] if w.startswith("new key pairs wait")]
    assert "node1, node2, node3" in waiting
    assert {key["node"] for key in down["keys"] if key["role"] == "waiting"} == {
        "node1", "node2", "node3"
    }  # fmt: skip

    # an after_rotate that failed, as the journal keeps it: the next rotation waits for it
    config = world.config
    state = load_state(config.state_dir, config.repositories[0].name)
    save_state(config.state_dir, replace(state, hook_block=HookBlock(("/bin/false",), 1, 1.0)))
    code, blocked = status(world.path, capsys)
    assert code == 1
    assert blocked["rotation_blocked_by"] == {
        "hook": ["/bin/false"],
        "status": 1,
        "outcome": "exited with status 1",
        "at": "1970-01-01T00:00:01Z",
    }
    assert "fernet-tokens: rotation blocked by a failed after_rotate hook" in blocked["attention"]


def test_jws_plan_shows_each_pair_s_lifecycle(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.rotate, False, False).outcome == "ok"
    capsys.readouterr()
    assert main(["-c", str(world.path), "plan", "--json"]) == 0
    (plan,) = json.loads(capsys.readouterr().out)["repositories"]
    rotations = plan["rotations"]
    assert len(rotations) >= 3
    lives = plan["keys"]
    assert set(lives[0]) == {"node", "key", "staged_at", "signing_at", "replaced_at", "retired_at"}
    for node in ("node1", "node2", "node3"):
        own = [life for life in lives if life["node"] == node]
        # the pair replaced by the rotation just made, retiring; the one signing now; one
        # new pair per planned rotation
        assert len(own) == 2 + len(rotations), own
        replaced, signing, *planned = own
        assert replaced["replaced_at"] and replaced["signing_at"] is None
        assert signing["signing_at"] < rotations[0] == signing["replaced_at"]  # RFC 3339 sorts
        # RETENTION (2 s) after the next rotation the replaced key goes at the one after
        assert signing["retired_at"] == rotations[1]
        assert replaced["retired_at"] == rotations[0]
        assert [life["staged_at"] for life in planned] == rotations
        assert [life["signing_at"] for life in planned] == rotations
        assert all(life["key"].startswith(f"{node}-") for life in own)
    assert plan["warnings"] == []
    assert main(["-c", str(world.path), "plan"]) == 0
    text = capsys.readouterr().out.splitlines()
    header = next(line for line in text if line.strip().startswith("node"))
    assert header.split() == ["node", "key", "staged", "signing", "replaced", "retired"]
    assert f"{RETENTION}s after the node was verified signing" in "\n".join(text)
