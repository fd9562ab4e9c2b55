"""keysyncd revoke for JWS key pairs (issue 22, item 3) on a real OpenSSH fleet, judged by
keystone's own JWS token code (tests/keystone_jws.py: keystone signs with private.pem and
validates by trying every file of its public directory): tokens signed with the revoked
node's old private key are rejected on every node once revoke exits 0; tokens signed by every
other node validate everywhere before and after; a node down; a dry run; --all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from keysyncd.actions import operations
from keysyncd.actions.context import Run
from keysyncd.commands.cli import main
from keysyncd.core.vocabulary import Trigger
from tests.jws_world import World, act
from tests.keystone_jws import sign, validate

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "report.schema.json").read_text())
REPO = "fernet-tokens"  # the one repository jws_world configures (kind jws)


def cli(world: World, *args: str) -> int:
    """Run ``keysyncd ARGS`` with the world's config; return the exit code."""
    return main(["-c", str(world.path), *args])


def revoke(world: World, *args: str) -> int:
    return cli(world, "revoke", "--repo", REPO, *args)


def names(world: World) -> list[str]:
    return [node.name for node in world.fleet.nodes]


def tokens(world: World) -> dict[str, str]:
    """Return a token signed now by keystone on each node, with the private key it holds."""
    return {name: sign(str(world.private(name)), name) for name in names(world)}


def accepted(world: World, token: str) -> list[str]:
    """Return the nodes whose keystone accepts ``token``."""
    good = []
    for name in names(world):
        try:
            validate(token, str(world.public(name)))
        except LookupError:
            continue
        good.append(name)
    return good


def journal(world: World) -> dict:
    path = world.path.parent / "state" / "repositories" / f"{REPO}.json"
    return json.loads(path.read_text())


def public_digests(world: World, node: str) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in world.public(node).iterdir()}


def signing_digest(world: World, node: str) -> str:
    return str(journal(world)["jws"]["signing"][node]["public_digest"])


def last_report(world: World) -> dict:
    found = sorted((world.path.parent / "reports").glob("*-revoke-*.json"))
    document = json.loads(found[-1].read_text())
    jsonschema.validate(document, SCHEMA)
    return document


@pytest.fixture
def ready(world: World) -> World:
    assert act(world, operations.init, False).outcome == "ok"
    return world


def test_a_revoked_nodes_old_tokens_die_everywhere_and_every_other_token_lives(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    for token in before.values():
        assert accepted(world, token) == every
    leaked = signing_digest(world, "node2")
    old_private = world.private_digest("node2")
    old_public = {p.name: p.read_bytes() for p in world.public("node1").iterdir()}
    assert revoke(world, "--node", "node2", "--reason", "private.pem in a ticket") == 0
    assert accepted(world, before["node2"]) == []  # rejected everywhere once revoke exits 0
    for name in ("node1", "node3"):
        assert accepted(world, before[name]) == every
    assert world.private_digest("node2") != old_private  # a new pair, installed
    after = tokens(world)
    for token in after.values():
        assert accepted(world, token) == every
    for name in every:
        assert leaked not in public_digests(world, name)
    state = journal(world)
    assert state["revocation"] is None
    assert leaked in {key["digest"] for key in state["revoked"]}
    report = last_report(world)
    assert report["details"]["revoke"]["revoked"] == [leaked]
    assert report["details"]["revoke"]["nodes"] == ["node2"]
    assert report["details"]["revoke"]["still_held_by"] == []
    assert cli(world, "status", "--repo", REPO) == 0
    # a node that shows it again (a backup restored) is repaired by the daemon's check
    for name, content in old_public.items():
        if hashlib.sha256(content).hexdigest() == leaked:
            (world.public("node1") / name).write_bytes(content)
    assert accepted(world, before["node2"]) == ["node1"]
    config = world.config
    checked = operations.check_fleet(Run(config, config.repositories[0], Trigger.CRON))
    assert checked is not None and checked.ok
    assert accepted(world, before["node2"]) == []
    assert cli(world, "sync", "--repo", REPO) == 0


def test_a_node_down_is_named_keeps_the_revocation_open_and_the_next_sync_finishes_it(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    world.fleet.stop_node("node3")
    capsys.readouterr()
    assert revoke(world, "--node", "node2", "--reason", "leak") == 1
    said = capsys.readouterr()
    assert "node3" in said.out + said.err
    # node2 still signs with its old key (its new private key waits for the gate): the old
    # public key stays on every node that answered, so its tokens are not cut off mid-way
    now = tokens(world)
    for name in ("node1", "node2"):
        assert {"node1", "node2"} <= set(accepted(world, now[name]))
    assert journal(world)["revocation"] is not None
    assert cli(world, "status", "--repo", REPO) == 1
    assert cli(world, "rotate", "--repo", REPO) != 0  # blocked until it is finished
    world.fleet.start_node("node3")
    assert cli(world, "sync", "--repo", REPO) == 0
    assert accepted(world, before["node2"]) == []
    for name in ("node1", "node3"):
        assert accepted(world, before[name]) == every
    for token in tokens(world).values():
        assert accepted(world, token) == every
    assert journal(world)["revocation"] is None
    assert cli(world, "status", "--repo", REPO) == 0


def test_a_dry_run_prints_the_plan_and_changes_nothing(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    held = {name: sorted(p.name for p in world.public(name).iterdir()) for name in names(world)}
    privates = {name: world.private_digest(name) for name in names(world)}
    state = journal(world)
    capsys.readouterr()
    assert revoke(world, "--node", "node1", "--reason", "leak", "--dry-run", "--json") == 0
    result = json.loads(capsys.readouterr().out)["repositories"][0]["results"][0]
    assert result["plan"]["revoke"]["nodes"] == ["node1"]
    assert result["plan"]["new_pairs"] == ["node1"]
    assert any("tokens signed by every other node stay valid" in m for m in result["messages"])
    assert {n: sorted(p.name for p in world.public(n).iterdir()) for n in names(world)} == held
    assert {name: world.private_digest(name) for name in names(world)} == privates
    assert journal(world) == state


def test_all_needs_force_says_what_dies_and_then_kills_every_token(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = ready
    every = names(world)
    before = tokens(world)
    capsys.readouterr()
    assert revoke(world, "--all", "--reason", "backup stolen") == 2
    assert "every JWS token dies" in capsys.readouterr().err
    assert revoke(world, "--all", "--reason", "backup stolen", "--force") == 0
    for token in before.values():
        assert accepted(world, token) == []
    for token in tokens(world).values():
        assert accepted(world, token) == every
    assert last_report(world)["details"]["revoke"]["role"] == "all"
    assert journal(world)["revocation"] is None


def test_force_removes_the_old_public_key_although_the_revoked_node_is_down(
    ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compromised node that does not answer: --force removes its old public key from every
    node that answers now; once it is back, the next sync installs its new pair."""
    world = ready
    every = names(world)
    before = tokens(world)
    leaked = signing_digest(world, "node2")
    world.fleet.stop_node("node2")
    capsys.readouterr()
    assert revoke(world, "--node", "node2", "--reason", "host compromised", "--force") == 1
    assert "node2" in capsys.readouterr().out
    for name in ("node1", "node3"):
        assert leaked not in public_digests(world, name)
        assert name not in accepted(world, before["node2"])
        assert set(accepted(world, before[name])) == set(every)
    assert cli(world, "status", "--repo", REPO) == 1
    assert journal(world)["revocation"] is not None  # node2 may still hold it: not finished
    world.fleet.start_node("node2")
    assert cli(world, "sync", "--repo", REPO) == 0
    assert accepted(world, before["node2"]) == []
    for token in tokens(world).values():  # node2 signs with its new pair, valid everywhere
        assert accepted(world, token) == every
    assert journal(world)["revocation"] is None
    assert cli(world, "status", "--repo", REPO) == 0
