"""Hostile review of keysyncd revoke (issue 22): each test is a finding, fixed since unless
marked xfail(strict) (F10: open, see the README's "When a key leaks"). Real OpenSSH
fleet, keystone's own loader (tests/keystone_compat.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from keysyncd.errors import RepositoryError
from keysyncd.testing.fleet import Fleet
from tests.integration.test_credential_migration import SECRET, Credentials, credential_config
from tests.integration.test_credential_migration import run as crun
from tests.integration.test_revoke import accepted, keys_of, ready, revoke

__all__ = ["ready"]  # the fixture, imported
from tests.integration.test_rotate import run
from tests.keystone_compat import multifernet


def places(fleet: Fleet, config: Path) -> dict[str, Path]:
    found = {node.name: node.directory for node in fleet.nodes}
    found["controller"] = config.parent / "keys"
    return found


def put_key(directory: Path, index: int, material: bytes) -> None:
    path = directory / str(index)
    path.write_bytes(material)
    path.chmod(0o600)


def test_revoking_another_key_never_pushes_an_earlier_revoked_key_restored_from_a_backup(
    ready: tuple[Fleet, Path],
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leaked") == 0
    assert all(leaked not in keys_of(d).values() for d in places(fleet, config).values())
    put_key(config.parent / "keys", 1, leaked)  # a backup restored on the controller
    assert run(config, "sync") != 0  # sync refuses it, as documented
    token = Fernet(leaked).encrypt(b"forged by whoever holds the leak")
    assert accepted(fleet, token) == []
    revoke(config, "--index", "0", "--reason", "staged key leaked too")
    assert accepted(fleet, token) == [], "the revoked key is back on the nodes"


def test_a_credential_key_waiting_for_its_migration_is_never_deleted_without_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert crun(config, "init") == 0
    assert crun(config, "rotate") == 0  # {0, 1, 2}, migrated to 2
    credentials.create("alice", fleet.node("node1").directory)  # encrypted with primary 2
    store.with_name(store.name + ".fail").write_text("")  # the migration fails
    assert crun(config, "revoke", "--repo", "creds", "--index", "2", "--reason", "leak") == 1
    assert journal_creds(config)["revocation"] is not None
    # the operator "helps" by deleting the leaked file on the controller (it was revoked)
    (config.parent / "keys" / "2").unlink()
    assert crun(config, "sync") != 0  # no --force anywhere: refused, "restore them"
    readable_on_nodes(credentials, fleet, "after a sync, migration never succeeded")


def readable_on_nodes(credentials: Credentials, fleet: Fleet, where: str) -> None:
    """Every credential decrypts with the keys keystone loads on every node (the controller's
    copy of the key was deleted by the test itself)."""
    stored = json.loads(credentials.path.read_text())
    for node in fleet.nodes:
        crypto = multifernet(str(node.directory))
        for name, token in stored.items():
            assert crypto.decrypt(token.encode()) == SECRET, f"{where}: {name} on {node.name}"


def journal_creds(config: Path) -> dict:
    return json.loads((config.parent / "state" / "repositories" / "creds.json").read_text())


def test_revoke_never_exits_0_while_the_leaked_key_is_still_loaded(
    ready: tuple[Fleet, Path],
) -> None:
    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    # the primary's content also at 0 (e.g. a hand copy): a valid keystone repository
    put_key(config.parent / "keys", 0, keys[2])
    assert run(config, "sync") == 0
    leaked = keys[2]
    token = Fernet(leaked).encrypt(b"user")
    code = revoke(config, "--index", "2", "--reason", "primary leaked")
    if code == 0:
        assert accepted(fleet, token) == [], "revoke exited 0, the leaked key still validates"


def primary_material(directory: Path) -> bytes:
    """The key keystone on this node signs with (its loader: highest index)."""
    keys = keys_of(directory)
    return keys[max(keys)]


def test_the_daemons_local_watch_never_pushes_a_revoked_key_restored_on_the_controller(
    fleet: Fleet, tmp_path: Path
) -> None:
    from keysyncd.actions import operations
    from keysyncd.actions.context import Run
    from keysyncd.config import load_config
    from keysyncd.core.vocabulary import Trigger
    from keysyncd.testing.config import fleet_config

    config = fleet_config(fleet, tmp_path / "ctl", drift={"on_local_change": "sync"})
    assert run(config, "init") == 0 and run(config, "rotate") == 0
    leaked = keys_of(config.parent / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leaked") == 0
    put_key(config.parent / "keys", 1, leaked)  # restored from a backup
    loaded = load_config(config)
    operations.check_local(Run(loaded, loaded.repositories[0], Trigger.WATCH))
    assert accepted(fleet, Fernet(leaked).encrypt(b"forged")) == []


def test_drift_repair_removes_a_revoked_key_a_node_shows_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    from keysyncd.actions import operations
    from keysyncd.actions.context import Run
    from keysyncd.config import load_config
    from keysyncd.core.vocabulary import Trigger
    from keysyncd.testing.config import fleet_config

    config = fleet_config(fleet, tmp_path / "ctl", drift={"on_remote_drift": "repair"})
    assert run(config, "init") == 0 and run(config, "rotate") == 0
    leaked = keys_of(config.parent / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leaked") == 0
    put_key(fleet.node("node2").directory, 9, leaked)  # keystone on node2 signs with it
    loaded = load_config(config)
    operations.check_fleet(Run(loaded, loaded.repositories[0], Trigger.CRON))
    assert accepted(fleet, Fernet(leaked).encrypt(b"forged")) == []


def test_force_past_a_down_node_does_not_silently_skip_a_working_migration(
    fleet: Fleet, tmp_path: Path
) -> None:
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert crun(config, "init") == 0 and crun(config, "rotate") == 0
    credentials.create("alice", fleet.node("node1").directory)  # encrypted with primary 2
    fleet.stop_node("node3")
    crun(config, "revoke", "--repo", "creds", "--index", "2", "--reason", "leak", "--force")
    fleet.start_node("node3")
    crun(config, "sync")
    credentials.assert_readable(fleet, config, "revoke --force past a down node")


def test_a_dead_node_does_not_keep_a_second_leaked_key_valid_everywhere(
    ready: tuple[Fleet, Path],
) -> None:
    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    fleet.stop_node("node3")  # dead for the day
    assert revoke(config, "--index", "0", "--reason", "backup copied: all keys leaked") == 1
    revoke(config, "--index", "2", "--reason", "backup copied: all keys leaked", "--force")
    token = Fernet(keys[2]).encrypt(b"forged with the leaked primary")
    assert accepted(fleet, token) == ["node3"], "the leaked primary validates on live nodes"


def test_a_pasted_key_is_never_echoed(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = ready
    material = keys_of(config.parent / "keys")[1].decode()
    capsys.readouterr()
    assert revoke(config, "--key", material, "--reason", "pasted the key") == 2
    said = capsys.readouterr()
    assert material.lower()[:16] not in (said.out + said.err).lower()


@pytest.mark.xfail(
    strict=True,
    reason="F10: the revoked set lives only in the controller's state file and no node marker "
    "(SPEC rule 7) exists: a controller restored from a pre-revocation backup (state_dir and "
    "keys) pushes the leaked key back to every node, sync exit 0",
)
def test_a_controller_restored_from_a_backup_never_pushes_the_revoked_key(
    ready: tuple[Fleet, Path],
) -> None:
    import shutil

    fleet, config = ready
    root = config.parent
    shutil.copytree(root / "keys", root / "keys.bak", symlinks=True)
    shutil.copytree(root / "state", root / "state.bak", symlinks=True)
    leaked = keys_of(root / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leak") == 0
    shutil.rmtree(root / "keys")
    shutil.rmtree(root / "state")
    (root / "keys.bak").rename(root / "keys")
    (root / "state.bak").rename(root / "state")
    for command in (["sync"], ["rotate"], ["sync", "--force"]):
        run(config, *command)
        assert accepted(fleet, Fernet(leaked).encrypt(b"forged")) == [], command


class Killed(BaseException):
    """keysyncd dies here (as in test_revoke_crash)."""


def test_the_daemons_check_never_deletes_an_unmigrated_credential_key(
    fleet: Fleet, tmp_path: Path
) -> None:
    from keysyncd.actions import operations
    from keysyncd.actions.context import Run
    from keysyncd.config import load_config
    from keysyncd.core.vocabulary import Trigger

    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert crun(config, "init") == 0 and crun(config, "rotate") == 0
    credentials.create("alice", fleet.node("node1").directory)
    store.with_name(store.name + ".fail").write_text("")
    assert crun(config, "revoke", "--repo", "creds", "--index", "2", "--reason", "leak") == 1
    (config.parent / "keys" / "2").unlink()  # a hand, a restore, a config-management run
    loaded = load_config(config)
    with pytest.raises(RepositoryError, match="restore them"):  # the daemon reports it
        operations.JOBS["check"](Run(loaded, loaded.repositories[0], Trigger.CRON))
    readable_on_nodes(credentials, fleet, "after the daemon's periodic check")


def test_drift_repair_keeps_working_while_a_credential_revocation_waits(
    fleet: Fleet, tmp_path: Path
) -> None:
    from keysyncd.actions import operations
    from keysyncd.actions.context import Run
    from keysyncd.config import load_config
    from keysyncd.core.vocabulary import Trigger

    store = tmp_path / "credentials.json"
    Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    document = config.read_text() + "drift:\n  on_remote_drift: repair\n"
    config.write_text(document)
    assert crun(config, "init") == 0 and crun(config, "rotate") == 0
    store.with_name(store.name + ".fail").write_text("")
    assert crun(config, "revoke", "--repo", "creds", "--index", "2", "--reason", "leak") == 1
    assert 3 in keys_of(fleet.node("node2").directory)  # the new primary
    (fleet.node("node2").directory / "3").unlink()  # node2 drifts: it lost the new primary
    loaded = load_config(config)
    repository = loaded.repositories[0]
    try:
        operations.check_fleet(Run(loaded, repository, Trigger.CRON))
    except Exception as error:
        print("check_fleet raised:", error)
    assert 3 in sorted(keys_of(fleet.node("node2").directory)), "node2 lacks the primary"
