"""Credentials are never lost (issue 19, item 1), on a real OpenSSH fleet, with keystone's own
Fernet scheme: a credential is encrypted with a node's primary (keystone's credential
provider builds a MultiFernet from the keys its loader loads and encrypts with the first),
the sequence runs, and then the credential must decrypt with the keys keystone loads on every
node and on the controller.

The after_rotate hook is a real migration: it re-encrypts every stored credential with the
primary of one node, as ``keystone-manage credential_migrate`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.faults import unmount
from keysyncd.testing.fleet import Fleet
from tests.integration.test_after_rotate import read_only
from tests.keystone_compat import multifernet

SECRET = b"the ec2 secret of a user"

# keystone-manage credential_migrate, in small: every credential re-encrypted with the
# primary of the node whose repository it is given (keystone's loader, transcribed)
MIGRATE = """
import json, os, sys
from cryptography.fernet import Fernet, MultiFernet
store, repo = sys.argv[1], sys.argv[2]
if os.path.exists(store + ".fail"):
    sys.exit(3)
keys = {}
for name in os.listdir(repo):
    try:
        index = int(name)
    except ValueError:
        continue
    path = os.path.join(repo, name)
    if os.path.isfile(path):
        with open(path) as key_file:
            key = key_file.read()
        if key:
            keys[index] = key
crypto = MultiFernet([Fernet(keys[i]) for i in sorted(keys, reverse=True)])
with open(store) as stored:
    credentials = json.load(stored)
migrated = {name: crypto.rotate(token.encode()).decode() for name, token in credentials.items()}
with open(store + ".tmp", "w") as out:
    json.dump(migrated, out)
os.replace(store + ".tmp", store)
with open(store + ".log", "a") as log:
    log.write("migrated with %d keys\\n" % len(keys))
"""


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


def journal(config: Path) -> dict:
    return json.loads((config.parent / "state" / "repositories" / "creds.json").read_text())


class Credentials:
    """keystone's credential table, in a file: name -> Fernet token."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("{}")

    def create(self, name: str, repo: Path) -> None:
        """Encrypt SECRET as keystone on the node holding ``repo`` does (its primary)."""
        stored = json.loads(self.path.read_text())
        stored[name] = multifernet(str(repo)).encrypt(SECRET).decode()
        self.path.write_text(json.dumps(stored))

    def assert_readable(self, fleet: Fleet, config: Path, where: str) -> None:
        """Every credential decrypts with the keys keystone loads on every node and on the
        controller."""
        stored = json.loads(self.path.read_text())
        places = {node.name: node.directory for node in fleet.nodes}
        places["controller"] = config.parent / "keys"
        for place, repo in places.items():
            crypto = multifernet(str(repo))
            for name, token in stored.items():
                assert crypto.decrypt(token.encode()) == SECRET, f"{where}: {name} on {place}"

    def migrations(self) -> int:
        log = self.path.with_name(self.path.name + ".log")
        return len(log.read_text().splitlines()) if log.exists() else 0


def credential_config(fleet: Fleet, root: Path, store: Path | None, **fields: object) -> Path:
    """A credential repository (named ``creds``) whose after_rotate migrates ``store`` with
    node1's keys (None: no hook)."""
    repository: dict[str, object] = {"name": "creds", "kind": "credential", **fields}
    if store is not None:
        script = root.parent / "migrate.py"
        script.write_text(MIGRATE)
        script.chmod(0o700)
        node1 = str(fleet.node("node1").directory)
        repository["hooks"] = {
            "timeout": 30,
            "after_rotate": [[sys.executable, str(script), str(store), node1]],
        }
    config = fleet_config(fleet, root, repository)
    document = yaml.safe_load(config.read_text())
    if "max_active_keys" not in fields:
        document["repositories"][0].pop("max_active_keys")  # keystone's 3, the default
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return config


def set_before_rotate(config: Path, argv: list[str] | None) -> None:
    document = yaml.safe_load(config.read_text())
    hooks = document["repositories"][0]["hooks"]
    if argv is None:
        hooks.pop("before_rotate", None)
    else:
        hooks["before_rotate"] = [argv]
    config.write_text(yaml.safe_dump(document, sort_keys=False))


def test_a_push_failing_after_the_gate_leaves_the_migration_pending_and_loses_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    """(a) A node passes the gate, then its push fails: after_rotate does not run, the
    migration is pending (status exit 1), and it runs once every node holds the new primary,
    before any key it needs is retired. Five rotations later every credential decrypts."""
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert run(config, "init") == 0
    credentials.create("made-on-node1", fleet.node("node1").directory)
    node2 = fleet.node("node2").directory
    set_before_rotate(config, [read_only(tmp_path, node2)])  # the gate still verifies node2
    try:
        assert run(config, "rotate") == 1
    finally:
        unmount(node2)
    assert credentials.migrations() == 0, "after_rotate ran although node2 lacks the primary"
    assert journal(config)["hook_block"]["problem"].startswith("has not run yet")
    assert run(config, "status") == 1, "a pending migration is a state to act on"
    # keystone on node3 keeps making credentials with the new primary meanwhile
    credentials.create("made-on-node3", fleet.node("node3").directory)
    set_before_rotate(config, None)
    for number in range(5):
        assert run(config, "rotate") == 0, f"rotation {number}"
        credentials.assert_readable(fleet, config, f"after rotation {number}")
        assert journal(config)["hook_block"] is None
    # the pending migration ran first, then one per rotation
    assert credentials.migrations() == 6
    assert run(config, "status") == 0


def test_a_forced_rotation_past_a_node_down_keeps_every_key_until_the_migration_ran(
    fleet: Fleet, tmp_path: Path
) -> None:
    """(a) ``rotate --force`` with node3 down skips the migration; keystone on node3 goes on
    encrypting with the former primary. Nothing retires a key while node3 lacks the new
    primary: a second forced rotation is deferred, sync retires nothing; once node3 is back a
    sync runs the migration, and every credential decrypts through the rotations after."""
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert run(config, "init") == 0
    node3 = fleet.node("node3").directory
    credentials.create("before", fleet.node("node1").directory)
    fleet.stop_node("node3")
    assert run(config, "rotate", "--force") == 1
    assert credentials.migrations() == 0, "a migration must wait for node3"
    credentials.create("on-node3-while-down", node3)  # node3 still encrypts with key 1
    keys_before = sorted(p.name for p in (config.parent / "keys").iterdir())
    assert run(config, "rotate", "--force") == 1
    last = journal(config)
    assert last["last_action"]["outcome"] == "deferred"
    assert sorted(p.name for p in (config.parent / "keys").iterdir()) == keys_before
    assert run(config, "sync") == 1  # node3 still down: nothing retired, migration pending
    assert sorted(p.name for p in (config.parent / "keys").iterdir()) == keys_before
    assert credentials.migrations() == 0
    fleet.start_node("node3")
    assert run(config, "sync") == 0  # every node holds the primary: the migration runs
    assert credentials.migrations() == 1
    assert journal(config)["hook_block"] is None
    credentials.assert_readable(fleet, config, "after the migration")
    for number in range(4):
        assert run(config, "rotate") == 0
        credentials.assert_readable(fleet, config, f"after rotation {number}")


def test_a_failing_migration_never_lets_time_retire_a_credential_key(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(b) keystone's 3 keys are the only size accepted; with a failing migration and every
    token lifetime long past, neither sync nor rotate retires a key the credentials need,
    and fixing the hook lets the rotations go on with every credential readable."""
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    small = credential_config(fleet, tmp_path / "small", None, max_active_keys=2)
    assert run(small, "check-config") == 2
    assert "max_active_keys': must be 3 for kind credential" in capsys.readouterr().err
    config = credential_config(
        fleet, tmp_path / "ctl", store, token_expiration=1, allow_expired_window=0
    )
    assert run(config, "init") == 0
    credentials.create("first", fleet.node("node1").directory)
    assert run(config, "rotate") == 0  # migrated to key 2
    credentials.create("second", fleet.node("node2").directory)
    Path(f"{store}.fail").write_text("")
    assert run(config, "rotate") == 1  # key 3; its migration fails: partial, blocked
    credentials.create("third", fleet.node("node3").directory)
    time.sleep(2.5)  # every token of every key is long expired
    for _ in range(2):
        assert run(config, "sync") == 0
        assert run(config, "rotate") == 1  # blocked, retried, still failing
        credentials.assert_readable(fleet, config, "while the migration fails")
    held = sorted(int(p.name) for p in (config.parent / "keys").iterdir() if p.name.isdigit())
    assert held == [0, 2, 3], "key 2 holds unmigrated credentials: it must stay"
    Path(f"{store}.fail").unlink()
    for number in range(3):
        assert run(config, "rotate") == 0
        assert run(config, "sync") == 0
        credentials.assert_readable(fleet, config, f"after rotation {number}")


def test_without_a_hook_keys_retire_only_after_the_operator_confirms_a_migration(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No after_rotate: check-config says keys never retire on their own; rotations keep
    every key; confirm-migration refuses while a node lacks the keys and for a key that is
    not there; once confirmed, the next sync retires the keys below it."""
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", None, token_expiration=1)
    assert run(config, "check-config") == 0
    assert "no key is ever retired until you run keystone-manage credential_migrate" in (
        capsys.readouterr().err
    )
    assert run(config, "init") == 0
    credentials.create("first", fleet.node("node1").directory)
    for _ in range(3):
        assert run(config, "rotate") == 0
    time.sleep(1.5)
    assert run(config, "sync") == 0
    held = sorted(int(p.name) for p in (config.parent / "keys").iterdir() if p.name.isdigit())
    assert held == [0, 1, 2, 3, 4], "no migration was confirmed: every key stays"
    credentials.assert_readable(fleet, config, "before the migration")
    fleet.stop_node("node2")
    assert run(config, "confirm-migration", "--repo", "creds", "--primary", "4") == 1
    assert "node2 not verified holding the current keys" in capsys.readouterr().err
    fleet.start_node("node2")
    for wrong in ("9", "3"):  # no such key; an older key than the one every node holds
        assert run(config, "confirm-migration", "--repo", "creds", "--primary", wrong) == 1
        assert f"--primary {wrong} is not the current primary (4)" in capsys.readouterr().err
    # the operator migrates (credential_migrate on node1), then confirms it
    migrate = tmp_path / "migrate-by-hand.py"
    migrate.write_text(MIGRATE)
    node1 = str(fleet.node("node1").directory)
    subprocess.run([sys.executable, str(migrate), str(store), node1], check=True, timeout=60)
    assert run(config, "confirm-migration", "--repo", "creds", "--primary", "4") == 0
    assert run(config, "sync") == 0
    held = sorted(int(p.name) for p in (config.parent / "keys").iterdir() if p.name.isdigit())
    assert held == [0, 3, 4]
    credentials.assert_readable(fleet, config, "after the confirmed migration")
    for node in fleet.nodes:
        assert sorted(p.name for p in node.directory.iterdir() if p.name.isdigit()) == [
            "0",
            "3",
            "4",
        ]
