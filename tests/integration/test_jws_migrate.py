"""JWS fleets keysyncd did not make, and changes of algorithm, on a real OpenSSH fleet:
a fleet made by ``keystone-manage create_jws_keypair`` (0644 private keys) converges in one
sync after adopt; an algorithm change is a planned migration done by the next rotation;
an init that fails on a node says so (and nothing else) for that node."""

from __future__ import annotations

import os
import stat

import jwt
import pytest
import yaml

from keysyncd.actions import operations
from keysyncd.actions.context import Run
from keysyncd.commands.cli import main
from keysyncd.core.jwskeys import algorithm_of_public, generate_pair, private_algorithm
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.lock import exclusive
from tests.jws_world import World, act
from tests.keystone_jws import sign, validate

NODES = ("node1", "node2", "node3")


def keystone_made(world: World) -> None:
    """Make every node as an operator does with keystone-manage create_jws_keypair: it
    writes private.pem and public.pem with open() (umask 022: 0644 each); every node's
    public.pem is then copied into every node's public directory."""
    publics = {}
    old = os.umask(0o022)
    try:
        for name in NODES:
            private, public = generate_pair("ES256")
            world.private(name).mkdir(mode=0o700)
            world.public(name).mkdir(mode=0o700)
            with open(world.private(name) / "private.pem", "wb") as handle:
                handle.write(private)
            publics[f"{name}.pem"] = public
        for name in NODES:
            for file_name, public in publics.items():
                with open(world.public(name) / file_name, "wb") as handle:
                    handle.write(public)
    finally:
        os.umask(old)
    assert stat.S_IMODE((world.private("node1") / "private.pem").stat().st_mode) == 0o644


def every_token_valid_everywhere(world: World, algorithm: str = "ES256") -> None:
    for signer in NODES:
        token = sign(str(world.private(signer)), signer, algorithm)
        for name in NODES:
            assert validate(token, str(world.public(name)), algorithm)["sub"] == signer


def test_a_keystone_made_fleet_converges_in_one_sync_after_adopt(world: World) -> None:
    """The 0644 private keys get new pairs and the 0644 public keys fresh 0600 copies, in
    the first sync (the public keys' mode does not stop the gate: keystone validates with
    them as they are); tokens signed before stay valid everywhere."""
    keystone_made(world)
    every_token_valid_everywhere(world)
    before = {name: sign(str(world.private(name)), name) for name in NODES}
    assert act(world, operations.adopt, "node1").what == "3 public keys"
    result = act(world, operations.sync, None, False, False)
    assert result.outcome == "ok", (result.outcome, result.messages, result.nodes)
    assert any(
        m.startswith(
            "private.pem had a wrong mode or owner (others may have read it) on "
            "node1, node2, node3: a new pair"
        )
        for m in result.messages
    ), result.messages
    assert not any("not keysyncd's" in m for m in result.messages), result.messages
    assert {n: node.status for n, node in result.nodes.items()} == dict.fromkeys(
        NODES, "updated"
    ), result.nodes
    for name in NODES:
        key = (world.private(name) / "private.pem").lstat()
        assert stat.S_ISREG(key.st_mode) and stat.S_IMODE(key.st_mode) == 0o600
        assert key.st_uid == os.getuid()
    for name in NODES:
        for entry in os.scandir(world.public(name)):
            assert stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode) == 0o600
        for signer, token in before.items():  # the adopted public keys stay (retiring)
            assert validate(token, str(world.public(name)))["sub"] == signer
    checked = act(world, operations.verify, None)
    assert checked.outcome == "ok", checked.nodes
    assert {n: node.status for n, node in checked.nodes.items()} == dict.fromkeys(NODES, "in_sync")
    every_token_valid_everywhere(world)


def test_an_init_that_fails_on_a_node_says_so_and_claims_nothing_there(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """node2 has no base directory: init says it failed there and why, that no private key
    is installed anywhere (none is until every node holds every public key) and what to do;
    no line claims a pair for node2 or for every node. Once fixed, one sync finishes."""
    world.fleet.node("node2").directory.rmdir()
    capsys.readouterr()
    assert main(["-c", str(world.path), "init"]) == 1
    out = capsys.readouterr().out
    assert "initialised" not in out, out
    assert "fernet-tokens: init failed on node2: No such file while creating " in out, out
    assert "no private key installed on node1, node3: none is, until every node" in out, out
    assert "'keysyncd sync --repo fernet-tokens' installs them" in out, out
    lines = [line for line in out.splitlines() if "node2" in line]
    assert all("fail" in line for line in lines), lines
    assert not (world.private("node1") / "private.pem").exists()
    world.fleet.node("node2").directory.mkdir(mode=0o700)
    assert act(world, operations.sync, None, False, False).outcome == "ok"
    every_token_valid_everywhere(world)


def test_an_init_that_succeeds_says_so_once(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(world.path), "init"]) == 0
    out = capsys.readouterr().out
    assert out.count("fernet-tokens: initialised a key pair for each of 3 nodes") == 1, out
    assert "failed" not in out and "no private key" not in out, out


def set_algorithm(world: World, algorithm: str) -> None:
    document = yaml.safe_load(world.path.read_text())
    document["repositories"][0]["algorithm"] = algorithm
    world.path.write_text(yaml.safe_dump(document))


def algorithms_on(world: World, name: str) -> tuple[str | None, list[str | None]]:
    """Return (the algorithm of the node's private.pem, those of its public keys)."""
    private = private_algorithm((world.private(name) / "private.pem").read_bytes())
    public = [algorithm_of_public(e.read_bytes()) for e in sorted(world.public(name).iterdir())]
    return private, public


def test_an_algorithm_change_is_a_migration_the_next_rotate_makes(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """ES256 -> ES384. keystone validates with one algorithm: an ES256 token is refused by
    a keystone set to ES384 (InvalidAlgorithmError), and a key of the other curve in the
    directory fails a token outright. So check-config, status and plan say so; sync, verify
    and a scheduled rotation keep ES256 (no dead end); the next 'keysyncd rotate' gives
    every node an ES384 pair and leaves only ES384 public keys, in one run."""
    config = ["-c", str(world.path)]
    assert act(world, operations.init, False).outcome == "ok"
    tokens = {name: sign(str(world.private(name)), name) for name in NODES}
    set_algorithm(world, "ES384")
    capsys.readouterr()
    main([*config, "check-config"])
    said = " ".join(capsys.readouterr())
    assert "algorithm changes ES256 -> ES384: the next 'keysyncd rotate'" in said, said
    assert "Every token signed with ES256 becomes invalid" in said, said
    assert "jws_algorithm = ES384" in said, said
    for command in (["status"], ["plan"]):
        main([*config, *command])
        shown = capsys.readouterr().out
        assert "WARNING: algorithm changes ES256 -> ES384" in shown, (command, shown)

    synced = act(world, operations.sync, None, False, False)
    assert synced.outcome == "ok", (synced.messages, synced.nodes)
    assert any("algorithm changes ES256 -> ES384" in m for m in synced.messages)
    assert act(world, operations.verify, None).outcome == "ok"
    scheduled = Run(world.config, world.config.repositories[0], Trigger.CRON)
    with exclusive(world.config.state_dir, "test"):
        assert operations.rotate(scheduled, False, False).outcome == "ok"
    for name in NODES:
        assert algorithms_on(world, name) == ("ES256", ["ES256"] * 6), name
    every_token_valid_everywhere(world, "ES256")

    rotated = act(world, operations.rotate, False, False)
    assert rotated.outcome == "ok", (rotated.messages, rotated.nodes)
    assert any(
        m.startswith("algorithm changed ES256 -> ES384: the ES256 public keys ")
        and "tokens signed with ES256 are no longer valid" in m
        for m in rotated.messages
    ), rotated.messages
    for name in NODES:
        assert algorithms_on(world, name) == ("ES384", ["ES384"] * 3), name
    assert sorted(os.listdir(world.store / "public")) == sorted(os.listdir(world.public("node1")))
    every_token_valid_everywhere(world, "ES384")
    for token in tokens.values():  # as check-config said: no longer valid
        for name in NODES:
            with pytest.raises(jwt.InvalidAlgorithmError):
                validate(token, str(world.public(name)), "ES384")
    assert act(world, operations.verify, None).outcome == "ok"
    main([*config, "check-config"])
    assert "algorithm changes" not in " ".join(capsys.readouterr())


def test_a_migration_forced_past_a_node_down_finishes_when_it_is_back(world: World) -> None:
    """node3 down at the migrating rotate --force: node1 and node2 move to EdDSA, node3
    keeps signing ES256 and its public key stays (the run says so); once node3 is back one
    sync gives it its EdDSA pair and removes every ES256 key. A dry run says it first."""
    assert act(world, operations.init, False).outcome == "ok"
    set_algorithm(world, "EdDSA")
    preview = act(world, operations.rotate, True, False)
    assert any(
        m.startswith("would give every node a EdDSA pair and remove the ES256 public keys")
        for m in preview.messages
    ), preview.messages
    world.fleet.stop_node("node3")
    forced = act(world, operations.rotate, False, True)
    assert any(
        m.startswith(
            "algorithm change ES256 -> EdDSA under way: still signing with ES256 on "
            "node3; the ES256 public keys stay until every node"
        )
        for m in forced.messages
    ), forced.messages
    assert not any(m.startswith("algorithm changed") for m in forced.messages)
    for name in ("node1", "node2"):
        private, public = algorithms_on(world, name)
        assert (private, sorted(public)) == ("EdDSA", ["ES256"] * 3 + ["EdDSA"] * 3), name
    world.fleet.start_node("node3")
    synced = act(world, operations.sync, None, False, False)
    assert synced.outcome == "ok", (synced.messages, synced.nodes)
    assert any(m.startswith("algorithm changed ES256 -> EdDSA") for m in synced.messages)
    for name in NODES:
        assert algorithms_on(world, name) == ("EdDSA", ["EdDSA"] * 3), name
    every_token_valid_everywhere(world, "EdDSA")
    assert act(world, operations.verify, None).outcome == "ok"
