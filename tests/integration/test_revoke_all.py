"""keysyncd revoke --all of symmetric repositories (issue 22, item 2): a brand-new key set,
every token dies, said first (without --force: exit 2); judged by keystone's own Fernet code
(tests/keystone_compat.py) on a real OpenSSH fleet: every old token rejected on every node,
tokens of the new primary valid everywhere. Credential keys: the migration runs first; the
old keys go after it, and a failed one is said (credentials lost)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cryptography.fernet import Fernet

from keysyncd.core.keyring import digest_of
from keysyncd.testing.fleet import Fleet
from tests.integration import test_credential_migration as creds
from tests.integration.test_revoke import (
    SCHEMA,
    accepted,
    journal,
    keys_of,
    ready,
    revoke,
    tokens_by_key,
)
from tests.integration.test_rotate import reports, run

__all__ = ["ready"]  # the fixture: a fleet holding {0, 1, 2}, every node in sync


def test_all_needs_force_and_says_first_that_every_token_dies(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    before = {node.name: keys_of(node.directory) for node in fleet.nodes}
    capsys.readouterr()
    assert revoke(config, "--all", "--reason", "backup stolen") == 2
    said = capsys.readouterr().err
    assert "every token dies" in said and "--force" in said
    assert {node.name: keys_of(node.directory) for node in fleet.nodes} == before
    assert reports(config, "revoke") == []


def test_a_new_key_set_kills_every_old_token_everywhere_and_new_tokens_validate(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    every = [node.name for node in fleet.nodes]
    old = tokens_by_key(config)
    old_digests = {digest_of(key) for key in keys_of(config.parent / "keys").values()}
    capsys.readouterr()
    assert revoke(config, "--all", "--reason", "backup stolen", "--dry-run") == 0
    assert "every token dies" in capsys.readouterr().out
    assert tokens_by_key(config).keys() == old.keys()  # the dry run changed nothing
    assert revoke(config, "--all", "--reason", "backup stolen", "--force") == 0
    for token in old.values():
        assert accepted(fleet, token) == []
    keys = keys_of(config.parent / "keys")
    assert not {digest_of(key) for key in keys.values()} & old_digests
    primary = keys[max(keys)]
    assert accepted(fleet, Fernet(primary).encrypt(b"user")) == every
    for node in fleet.nodes:
        assert keys_of(node.directory) == keys
    state = journal(config)
    assert state["revocation"] is None
    assert old_digests <= {key["digest"] for key in state["revoked"]}
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["details"]["revoke"]["role"] == "all"
    assert set(report["details"]["revoke"]["revoked"]) == old_digests
    assert run(config, "status") == 0
    assert run(config, "rotate") == 0  # nothing blocks the next rotation


@pytest.mark.parametrize("failing", [False, True])
def test_credential_all_deletes_after_the_migration_and_says_when_credentials_are_lost(
    fleet: Fleet, tmp_path: Path, failing: bool
) -> None:
    store = tmp_path / "credentials.json"
    credentials = creds.Credentials(store)
    config = creds.credential_config(fleet, tmp_path / "ctl", store)
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    credentials.create("alice", fleet.node("node1").directory)
    old = {digest_of(key) for key in keys_of(config.parent / "keys").values()}
    if failing:
        store.with_name(store.name + ".fail").write_text("")
    assert run(config, "revoke", "--repo", "creds", "--all", "--reason", "x", "--force") == 0
    for directory in [config.parent / "keys", *(node.directory for node in fleet.nodes)]:
        assert not {digest_of(key) for key in keys_of(directory).values()} & old
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["details"]["revoke"]["credentials_lost"] is failing
    if not failing:  # migrated to the new primary first: nothing lost
        credentials.assert_readable(fleet, config, "after the new key set")
    assert json.loads(json.dumps(creds.journal(config)))["revocation"] is None


def test_a_node_down_is_named_and_the_next_sync_finishes_the_new_key_set(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    every = [node.name for node in fleet.nodes]
    old = tokens_by_key(config)
    fleet.stop_node("node3")
    capsys.readouterr()
    assert revoke(config, "--all", "--reason", "backup stolen", "--force") == 1
    assert "node3" in capsys.readouterr().out
    assert journal(config)["revocation"] is not None
    assert run(config, "status") == 1
    fleet.start_node("node3")
    assert run(config, "sync") == 0
    for token in old.values():
        assert accepted(fleet, token) == []
    keys = keys_of(config.parent / "keys")
    assert accepted(fleet, Fernet(keys[max(keys)]).encrypt(b"user")) == every
    assert journal(config)["revocation"] is None
    assert run(config, "status") == 0
