"""Attack 3 on keysyncd revoke for JWS (issue 22, items 3-5), on the real OpenSSH fleet and
keystone's own JWS code (tests/keystone_jws.py). Each test is a finding (A1-A4), fixed
since."""

from __future__ import annotations

import json

import pytest

from keysyncd.io.remote.jwsfleet import JwsFleet
from tests.integration.test_revoke_jws import (
    REPO,
    accepted,
    cli,
    journal,
    names,
    ready,
    revoke,
    tokens,
)
from tests.jws_world import World

__all__ = ["ready"]  # the fixture: a JWS fleet, every node in sync


@pytest.fixture
def symmetric(fleet, tmp_path):  # test_revoke.ready: a Fernet fleet
    from tests.integration.test_revoke import fleet_config, keys_of
    from tests.integration.test_rotate import run

    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    assert sorted(keys_of(config.parent / "keys")) == [0, 1, 2]
    return fleet, config


def state_path(world: World):
    return world.path.parent / "state" / "repositories" / f"{REPO}.json"


def test_all_force_kills_the_tokens_of_the_previous_pairs_too(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    every = names(world)
    oldest = tokens(world)  # signed with the pairs a backup taken now would hold
    assert cli(world, "rotate", "--repo", REPO, "--force") == 0
    for token in oldest.values():  # kept for their retention: still valid, as they should be
        assert accepted(world, token) == every
    capsys.readouterr()
    assert revoke(world, "--all", "--reason", "backup stolen", "--force") == 0
    assert "every JWS token dies" in capsys.readouterr().out
    for token in tokens(world).values():
        assert accepted(world, token) == every
    for name, token in oldest.items():  # "every JWS token dies": these must too
        assert accepted(world, token) == [], name


def test_all_with_node_is_a_usage_error_and_changes_nothing(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    state = journal(world)
    code = revoke(world, "--all", "--node", "node1", "--reason", "node1 leaked", "--force")
    for name in ("node2", "node3"):  # the operator named node1 alone
        assert accepted(world, before[name]) == every
    assert journal(world)["revoked"] == state["revoked"]
    assert code == 2


@pytest.mark.parametrize("nodes,more", [([{"a": 1}], []), ([], [1]), ([], ["not-a-digest"])])
def test_a_damaged_revocation_record_is_a_one_line_state_error_and_writes_nothing(
    ready: World, capsys: pytest.CaptureFixture[str], nodes: list, more: list
) -> None:
    """A3 (fixed): the journal's revocation.nodes/more were str()-coerced, never checked: sync
    crashed with an internal error after writing to the nodes. Now a damaged state file, named
    with its field (exit 2, as every damaged local file), and nothing is written."""
    world = ready
    document = json.loads(state_path(world).read_text())
    digest = document["jws"]["signing"]["node2"]["public_digest"]
    document["revocation"] = {
        "digest": digest, "reason": "x", "started_at": 1.0, "forced": False,
        "nodes": nodes, "more": more,
    }  # fmt: skip
    state_path(world).write_text(json.dumps(document))
    privates = {name: world.private_digest(name) for name in names(world)}
    held = {n: sorted(p.name for p in world.public(n).iterdir()) for n in names(world)}
    capsys.readouterr()
    code = cli(world, "sync", "--repo", REPO)
    said = capsys.readouterr().err
    assert "internal error" not in said
    assert "'revocation." in said  # names the damaged field
    assert code == 2
    assert {name: world.private_digest(name) for name in names(world)} == privates
    assert {n: sorted(p.name for p in world.public(n).iterdir()) for n in names(world)} == held


def test_a_revocation_naming_a_node_no_longer_configured_finishes_for_the_others(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A3 (fixed): a node the journal names that the config no longer has (removed, or a
    damaged journal) is no one's: the revocation of node2's pair finishes, no internal error."""
    world = ready
    document = json.loads(state_path(world).read_text())
    digest = document["jws"]["signing"]["node2"]["public_digest"]
    document["revocation"] = {
        "digest": digest, "reason": "x", "started_at": 1.0, "forced": False,
        "nodes": ["ghost", "node2"], "more": [],
    }  # fmt: skip
    state_path(world).write_text(json.dumps(document))
    old = world.private_digest("node2")
    capsys.readouterr()
    code = cli(world, "sync", "--repo", REPO)
    assert "internal error" not in capsys.readouterr().err
    assert code == 0
    assert world.private_digest("node2") != old
    assert json.loads(state_path(world).read_text())["revocation"] is None


class Kill(BaseException):
    """kill -9 (nothing catches it)."""


def test_killed_after_phase_2_the_next_run_keeps_the_new_pair(
    ready: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = ready
    phase2 = JwsFleet.phase2
    calls: list[int] = []

    def killed(self: JwsFleet, public: object, private: dict) -> None:
        calls.append(1)
        if len(calls) == 2:  # the removal: node2's new private key is in place
            raise Kill()
        phase2(self, public, private)

    monkeypatch.setattr(JwsFleet, "phase2", killed)
    with pytest.raises(Kill):
        revoke(world, "--node", "node2", "--reason", "leak")
    monkeypatch.undo()
    installed = world.private_digest("node2")
    assert cli(world, "sync", "--repo", REPO) == 0
    assert journal(world)["revocation"] is None
    assert world.private_digest("node2") == installed  # finished, not rotated once more


def test_symmetric_all_with_node_is_a_usage_error_and_changes_nothing(
    symmetric: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.test_revoke import keys_of
    from tests.integration.test_revoke import revoke as revoke_symmetric

    fleet, config = symmetric
    before = {node.name: keys_of(node.directory) for node in fleet.nodes}
    code = revoke_symmetric(config, "--all", "--node", "node1", "--reason", "x", "--force")
    assert {node.name: keys_of(node.directory) for node in fleet.nodes} == before
    assert code == 2
