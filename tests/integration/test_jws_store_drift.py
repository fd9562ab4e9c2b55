"""The local check of a ``jws`` repository runs in the read-only shell of every kind
(``keysyncd.actions.readonly.check_local``), as Fernet's does: an invalid key store is
reported at every check (counted once), the periodic check of the nodes then pushes and
reads nothing, and once the store is valid again the check says nothing and clears the
journal's problems. Against a real OpenSSH fleet and the controller's real store."""

from __future__ import annotations

import json
from typing import Any

from keysyncd.actions import operations
from keysyncd.core.vocabulary import Action, Outcome
from tests.jws_world import World, act

NODES = ("node1", "node2", "node3")


def journal(world: World) -> dict[str, Any]:
    path = world.path.parent / "state" / "repositories" / "fernet-tokens.json"
    return dict(json.loads(path.read_text()))


def test_an_invalid_jws_store_is_reported_at_every_check_and_nothing_is_pushed(
    world: World,
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.check_local) is None, "a valid store: nothing to say"
    junk = world.store / "public" / "junk.pem"
    junk.write_text("not a public key\n")
    held = {name: sorted(p.name for p in world.public(name).iterdir()) for name in NODES}

    for _ in range(2):  # reported every time, until fixed
        invalid = act(world, operations.check_local)
        assert invalid is not None and invalid.report is not None
        assert invalid.outcome == Outcome.FAILED and invalid.report.action == Action.DRIFT
        local = invalid.report.details["local"]
        assert local["valid"] is False and any("junk.pem" in p for p in local["problems"])
        assert any("junk.pem" in m for m in invalid.messages)
        assert act(world, operations.check_fleet) is None, "the nodes are left alone"
    state = journal(world)
    assert state["counters"]["drift:local_invalid"] == 1, "one event, not one per check"
    assert any("junk.pem" in p for p in state["local_problems"])
    assert {name: sorted(p.name for p in world.public(name).iterdir()) for name in NODES} == held

    junk.unlink()
    assert act(world, operations.check_local) is None, "valid again: nothing to report"
    assert journal(world)["local_problems"] == []
    checked = act(world, operations.check_fleet)
    assert checked is not None and checked.outcome == Outcome.OK, checked and checked.messages
