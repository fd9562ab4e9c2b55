"""Attack 4: the give-way of a revocation waiting only for nodes (revocation.succeeds), for
every kind and --all; each finding fixed since (1-4), the rest held up."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from keysyncd.core.keyring import digest_of
from keysyncd.testing.fleet import Fleet
from tests.integration.test_revoke import accepted, journal, keys_of, ready, revoke
from tests.integration.test_revoke_jws import accepted as jws_accepted
from tests.integration.test_revoke_jws import journal as jws_journal
from tests.integration.test_revoke_jws import ready as jws_ready
from tests.integration.test_revoke_jws import revoke as jws_revoke
from tests.integration.test_revoke_jws import (
    signing_digest,
    tokens,
)
from tests.jws_world import World

__all__ = ["jws_ready", "ready"]  # the fixtures, imported


def test_a_jws_revocation_waiting_for_a_dead_node_gives_way_to_a_second_leak(
    jws_ready: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = jws_ready
    before = tokens(world)
    world.fleet.stop_node("node2")  # compromised and off the network
    assert jws_revoke(world, "--node", "node2", "--reason", "host compromised", "--force") == 1
    assert jws_journal(world)["revocation"] is not None  # waits only for node2 to answer
    # node1's pair leaks too: node2 never answering must not keep node1's key valid
    leaked = signing_digest(world, "node1")
    code = jws_revoke(world, "--node", "node1", "--reason", "second leak", "--force")
    assert code != 2, capsys.readouterr().err
    # rejected on every node that answers; node2 (down) still holds the old public key on its
    # disk until it answers, and the next sync removes it there
    assert jws_accepted(world, before["node1"]) == ["node2"]
    assert leaked in {k["digest"] for k in jws_journal(world)["revoked"]}


def test_a_gate_refusal_of_the_second_revocation_restores_the_first_exactly(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    token = Fernet(keys[1]).encrypt(b"user")
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "backup copied") == 1
    first = journal(config)
    # a leaked primary needs the gate, which node3 (down) refuses: nothing changes, and the
    # first revocation (waiting for node3) must be back exactly as it was
    primary = max(keys_of(config.parent / "keys"))
    assert revoke(config, "--index", str(primary), "--reason", "second") == 1
    after = journal(config)
    assert after["revocation"] == first["revocation"]
    assert after["revoked"] == first["revoked"]
    fleet.start_node("node3")
    from tests.integration.test_rotate import run

    assert run(config, "sync") == 0
    assert accepted(fleet, token) == []
    assert journal(config)["revocation"] is None
    assert digest_of(keys[1]) in {k["digest"] for k in journal(config)["revoked"]}


def test_a_dry_run_shows_the_revoked_key_the_real_action_removes(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.integration.test_rotate import run

    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leak") == 0
    (fleet.nodes[1].directory / "9").write_bytes(leaked)  # copied back above the primary
    (fleet.nodes[1].directory / "9").chmod(0o600)
    capsys.readouterr()
    run(config, "rotate", "--dry-run", "--json")
    preview = capsys.readouterr().out
    revoke(config, "--index", "0", "--reason", "x", "--dry-run", "--json")
    preview2 = capsys.readouterr().out
    assert run(config, "sync") == 0
    assert "9" not in {p.name for p in fleet.nodes[1].directory.iterdir()}
    for shown in (preview, preview2):
        (result,) = json.loads(shown)["repositories"][0]["results"]
        node2 = result["preview"]["node2"]
        assert node2.get("revoked") == [9], node2  # the real action removes it (above)
        assert node2.get("changed") == result["preview"]["node1"].get("changed"), node2


def test_revoke_all_is_not_held_hostage_by_a_revocation_waiting_for_a_dead_node(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    tokens = {i: Fernet(k).encrypt(b"user") for i, k in keys.items()}
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "backup copied") == 1
    assert journal(config)["revocation"] is not None  # waits only for node3
    capsys.readouterr()
    # then the whole repository leaks: the emergency hammer must not wait for node3
    code = revoke(config, "--all", "--force", "--reason", "controller compromised")
    assert code != 2, capsys.readouterr().err
    for token in tokens.values():
        assert accepted(fleet, token) in ([], ["node3"])


def test_a_refused_second_revocation_does_not_say_it_took_the_first_ones_place(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "backup copied") == 1
    primary = max(keys_of(config.parent / "keys"))
    capsys.readouterr()
    assert revoke(config, "--index", str(primary), "--reason", "second") == 1
    said = capsys.readouterr()
    assert "nothing changed" in said.out + said.err
    assert "takes its place" not in said.out + said.err


def test_a_credential_revocation_waiting_for_its_migration_never_gives_way(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.test_credential_migration import (
        Credentials,
        credential_config,
    )
    from tests.integration.test_credential_migration import journal as cjournal
    from tests.integration.test_credential_migration import run as crun

    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert crun(config, "init") == 0
    assert crun(config, "rotate") == 0
    credentials.create("alice", fleet.node("node1").directory)
    keys = keys_of(config.parent / "keys")
    leaked = keys[2]
    store.with_name(store.name + ".fail").write_text("")
    assert crun(config, "revoke", "--repo", "creds", "--index", "2", "--reason", "a") == 1
    first = cjournal(config)["revocation"]
    assert first["digest"] == digest_of(leaked)
    # a second leak: refused while the first key still encrypts credentials
    assert crun(config, "revoke", "--repo", "creds", "--index", "0", "--reason", "b") == 2
    assert cjournal(config)["revocation"] == first
    credentials.assert_readable(fleet, config, "after the refusal")
    # gone by hand from the controller: a loss, never a reason to give way
    index = next(i for i, k in keys_of(config.parent / "keys").items() if k == leaked)
    (config.parent / "keys" / str(index)).unlink()
    assert crun(config, "revoke", "--repo", "creds", "--index", "0", "--reason", "b") != 0
    assert cjournal(config)["revocation"] == first
    assert all(leaked in keys_of(n.directory).values() for n in fleet.nodes)  # nothing pushed


def test_after_give_way_the_first_key_never_comes_back_to_the_node_that_was_down(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.test_revoke_drift import daemon_check
    from tests.integration.test_rotate import run

    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    first, second = Fernet(keys[1]).encrypt(b"u"), Fernet(keys[0]).encrypt(b"u")
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "a") == 1
    assert revoke(config, "--index", "0", "--reason", "b") == 1  # gives way
    assert run(config, "status") == 1
    assert accepted(fleet, first) == ["node3"] and accepted(fleet, second) == ["node3"]
    fleet.start_node("node3")
    assert run(config, "sync", "--node", "node3") in (0, 1)
    assert accepted(fleet, first) == [] and accepted(fleet, second) == []
    daemon_check(config)
    assert accepted(fleet, first) == [] and accepted(fleet, second) == []
    assert run(config, "sync") == 0
    assert journal(config)["revocation"] is None
    assert run(config, "status") == 0
    assert {digest_of(keys[1]), digest_of(keys[0])} <= {
        k["digest"] for k in journal(config)["revoked"]
    }


def test_kill_9_once_the_second_revocation_is_journaled_over_the_first(
    ready: tuple[Fleet, Path],
) -> None:
    import signal
    import time

    from tests.integration.test_rotate import run
    from tests.revoking import start

    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    first, second = digest_of(keys[1]), digest_of(keys[2])
    tokens = {i: Fernet(k).encrypt(b"u") for i, k in keys.items()}
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "a") == 1
    process = start(config, "--index", "2", "--reason", "b", "--force")
    began = time.monotonic()
    while time.monotonic() - began < 30 and process.poll() is None:
        try:
            if journal(config)["revocation"]["digest"] == second:
                break
        except (ValueError, KeyError, TypeError):
            pass
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    from tests.integration.test_revoke_kill import assert_loadable

    for directory in [config.parent / "keys", *(n.directory for n in fleet.nodes)]:
        assert_loadable(directory)
    revoked = {k["digest"] for k in journal(config)["revoked"]}
    assert first in revoked
    assert run(config, "status") == 1  # node3 still may hold both
    fleet.start_node("node3")
    assert run(config, "sync") == 0
    assert journal(config)["revocation"] is None
    assert accepted(fleet, tokens[1]) == []
    if second in {k["digest"] for k in journal(config)["revoked"]}:
        assert accepted(fleet, tokens[2]) == []
    assert accepted(fleet, tokens[0]) == [n.name for n in fleet.nodes]
    assert run(config, "status") == 0
