"""keysyncd revoke of credential keys (issue 22) on a real OpenSSH fleet: a leaked credential
key is deleted only after the after_rotate migration (keystone-manage credential_migrate, in
small: tests/integration/test_credential_migration.py) succeeded with the new primary; a
failing or missing migration stops the revocation before anything is deleted, and --force
deletes anyway, saying that credentials still encrypted with it are lost."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from keysyncd.core.keyring import digest_of
from keysyncd.testing.fleet import Fleet
from tests.integration.test_credential_migration import (
    Credentials,
    credential_config,
    journal,
    run,
)
from tests.integration.test_revoke import SCHEMA, keys_of
from tests.integration.test_rotate import reports


def revoke(config: Path, *args: str) -> int:
    return run(config, "revoke", "--repo", "creds", *args)


def places(fleet: Fleet, config: Path) -> dict[str, Path]:
    found = {node.name: node.directory for node in fleet.nodes}
    found["controller"] = config.parent / "keys"
    return found


def test_a_failing_migration_deletes_nothing_and_its_success_finishes_the_revocation(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "credentials.json"
    credentials = Credentials(store)
    config = credential_config(fleet, tmp_path / "ctl", store)
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0  # {0, 1, 2}, migrated to 2
    credentials.create("alice", fleet.node("node1").directory)  # encrypted with primary 2
    leaked = keys_of(config.parent / "keys")[2]
    store.with_name(store.name + ".fail").write_text("")  # the migration fails from now
    capsys.readouterr()
    assert revoke(config, "--index", "2", "--reason", "credential key in a ticket") == 1
    said = capsys.readouterr().out
    assert "credential_migrate" in said and "not deleted" in said
    for place, directory in places(fleet, config).items():
        assert leaked in keys_of(directory).values(), place  # nothing deleted anywhere
    credentials.assert_readable(fleet, config, "after the failed migration")
    assert journal(config)["revocation"]["digest"] == digest_of(leaked)
    assert run(config, "status") == 1
    assert run(config, "rotate") == 1  # blocked while the revocation is unfinished
    # the migration works again: revoke (without a key) finishes the revocation
    store.with_name(store.name + ".fail").unlink()
    assert revoke(config) == 0
    for place, directory in places(fleet, config).items():
        assert leaked not in keys_of(directory).values(), place
    credentials.assert_readable(fleet, config, "after the revocation")  # migrated, not lost
    assert journal(config)["revocation"] is None
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["details"]["revoke"]["credentials_lost"] is False
    assert run(config, "status") == 0


def test_without_a_migration_hook_only_force_deletes_and_says_credentials_are_lost(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = credential_config(fleet, tmp_path / "ctl", None)
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    leaked = keys_of(config.parent / "keys")[1]
    capsys.readouterr()
    assert revoke(config, "--key", digest_of(leaked)[:10], "--reason", "leak") == 1
    assert "no after_rotate hook" in capsys.readouterr().out
    assert all(leaked in keys_of(d).values() for d in places(fleet, config).values())
    assert revoke(config, "--force") == 0  # finishes the one under way, forced
    assert all(leaked not in keys_of(d).values() for d in places(fleet, config).values())
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["forced"] is True and report["details"]["revoke"]["credentials_lost"] is True
    assert any("credentials still encrypted with it are lost" in m for m in report["messages"])
    assert json.dumps(report).find(leaked.decode()) == -1
