"""keysyncd revoke (issue 22) on a real OpenSSH fleet, judged by keystone's own Fernet code
(tests/keystone_compat.py: what keystone on a node loads from its directory): tokens made with
the revoked key are rejected on every node as soon as revoke exits 0, tokens made with every
other key validate on every node before and after; a node down; the revoked key never pushed
again."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cryptography.fernet import Fernet, InvalidToken

from keysyncd.actions import operations
from keysyncd.actions.context import Run
from keysyncd.config import load_config
from keysyncd.core.keyring import digest_of
from keysyncd.core.vocabulary import Trigger
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_rotate import reports, run
from tests.keystone_compat import multifernet

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "report.schema.json").read_text())


def revoke(config: Path, *args: str) -> int:
    """Run ``keysyncd revoke --repo fernet-tokens ARGS``; return its exit code."""
    return run(config, "revoke", "--repo", "fernet-tokens", *args)


def keys_of(directory: Path) -> dict[int, bytes]:
    """Return the key files of ``directory`` by index."""
    return {int(p.name): p.read_bytes() for p in directory.iterdir() if p.name.isdigit()}


def tokens_by_key(config: Path) -> dict[bytes, bytes]:
    """Return, for every key the controller holds, a token made with it (as keystone on a
    node whose primary it is would make one)."""
    return {key: Fernet(key).encrypt(b"user") for key in keys_of(config.parent / "keys").values()}


def journal(config: Path) -> dict:
    """Return the repository's journal as saved in state_dir."""
    path = config.parent / "state" / "repositories" / "fernet-tokens.json"
    return json.loads(path.read_text())


def accepted(fleet: Fleet, token: bytes) -> list[str]:
    """Return the nodes whose keystone accepts ``token``."""
    good = []
    for node in fleet.nodes:
        try:
            multifernet(str(node.directory)).decrypt(token)
        except InvalidToken:
            continue
        good.append(node.name)
    return good


@pytest.fixture
def ready(fleet: Fleet, tmp_path: Path) -> tuple[Fleet, Path]:
    """A fleet holding {0, 1, 2} (2 primary, 1 secondary), every node in sync."""
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0
    assert sorted(keys_of(config.parent / "keys")) == [0, 1, 2]
    return fleet, config


@pytest.mark.parametrize(("index", "role"), [(0, "staged"), (2, "primary"), (1, "secondary")])
def test_tokens_of_the_revoked_key_die_everywhere_and_no_other_token_does(
    ready: tuple[Fleet, Path], index: int, role: str
) -> None:
    fleet, config = ready
    tokens = tokens_by_key(config)
    every = [node.name for node in fleet.nodes]
    for token in tokens.values():
        assert accepted(fleet, token) == every
    leaked = keys_of(config.parent / "keys")[index]
    assert revoke(config, "--index", str(index), "--reason", "pasted in a ticket") == 0
    assert accepted(fleet, tokens[leaked]) == []
    for key, token in tokens.items():
        if key != leaked:
            assert accepted(fleet, token) == every, f"a token of another key died ({role})"
    for place in [config.parent / "keys", *(node.directory for node in fleet.nodes)]:
        assert leaked not in keys_of(place).values()
        assert 0 in keys_of(place)  # keystone still has a staged key and a primary
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["outcome"] == "ok"
    details = report["details"]["revoke"]
    assert details["revoked"] == [digest_of(leaked)] and details["role"] == role
    assert details["reason"] == "pasted in a ticket" and details["still_held_by"] == []
    if role == "staged":
        assert details["tokens"] == {"issued_from_at": None, "issued_until_at": None}
    else:
        assert details["tokens"]["issued_from_at"] is not None
    assert leaked.decode() not in json.dumps(report)  # digests only
    assert leaked.decode() not in json.dumps(journal(config))
    assert journal(config)["revoked"][0]["digest"] == digest_of(leaked)
    assert run(config, "status") == 0
    assert run(config, "rotate") == 0  # finished: nothing blocks the next rotation


def test_a_digest_prefix_naming_no_key_is_a_usage_error(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = ready
    capsys.readouterr()
    assert revoke(config, "--key", "ffffffffffff0000", "--reason", "x") == 2
    assert "no key's sha256 starts with" in capsys.readouterr().err
    assert revoke(config, "--index", "1") == 2  # no --reason
    assert revoke(config, "--all", "--reason", "x") == 2
    assert reports(config, "revoke") == []


def test_a_leaked_secondary_on_a_node_that_is_down_goes_once_it_answers(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    keys = keys_of(config.parent / "keys")
    digest = digest_of(keys[1])
    token = Fernet(keys[1]).encrypt(b"user")
    fleet.stop_node("node3")
    capsys.readouterr()
    assert revoke(config, "--key", digest[:12], "--reason", "backup copied") == 1
    out = capsys.readouterr()
    assert "node3" in out.out + out.err
    assert accepted(fleet, token) == ["node3"]  # the others rejected it at once
    report = reports(config, "revoke")[-1]
    jsonschema.validate(report, SCHEMA)
    assert report["details"]["revoke"]["still_held_by"] == ["node3"]
    assert journal(config)["revocation"]["digest"] == digest  # unfinished until node3 answers
    capsys.readouterr()
    assert run(config, "status") == 1
    assert "the revocation of sha256:" in capsys.readouterr().out
    assert run(config, "rotate", "--force") == 1  # --force does not rotate past it either
    # a second leaked key is not held hostage by node3: the first revocation waits only for
    # nodes to answer (its key revoked for good, removed by any sync), so the second takes
    # its place in the journal (it too waits for node3: exit 1)
    staged, staged_token = digest_of(keys[0]), Fernet(keys[0]).encrypt(b"user")
    assert revoke(config, "--index", "0", "--reason", "another") == 1
    assert journal(config)["revocation"]["digest"] == staged
    assert {digest, staged} <= {key["digest"] for key in journal(config)["revoked"]}
    assert accepted(fleet, staged_token) == ["node3"]
    assert run(config, "rotate") == 1  # blocked while the revocation is unfinished
    assert sorted(keys_of(config.parent / "keys")) == [0, 2]
    fleet.start_node("node3")
    assert run(config, "sync") == 0
    assert accepted(fleet, token) == []
    assert accepted(fleet, staged_token) == []
    assert run(config, "status") == 0
    assert run(config, "rotate") == 0


def test_a_leaked_primary_is_not_promoted_past_a_node_that_is_down(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The staged key is promoted only once every node holds it (SPEC rule 1): without
    --force, a node down stops the revocation of a primary before anything changes."""
    fleet, config = ready
    before = {node.name: keys_of(node.directory) for node in fleet.nodes}
    fleet.stop_node("node2")
    capsys.readouterr()
    assert revoke(config, "--index", "2", "--reason", "leak") == 1
    assert "--force" in capsys.readouterr().out
    for node in fleet.nodes:
        if node.name != "node2":
            assert keys_of(node.directory) == before[node.name]
    assert sorted(keys_of(config.parent / "keys")) == [0, 1, 2]
    fleet.start_node("node2")
    assert journal(config)["revocation"] is None  # not begun: nothing blocks, nothing to finish
    assert revoke(config, "--index", "2", "--reason", "leak") == 0
    assert all(2 not in keys_of(node.directory) for node in fleet.nodes)


def test_a_revoked_key_is_never_pushed_again(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    token = Fernet(leaked).encrypt(b"user")
    assert revoke(config, "--index", "1", "--reason", "leak") == 0
    # a node shows it again (restored from a backup): the next sync removes it
    (fleet.nodes[0].directory / "1").write_bytes(leaked)
    assert accepted(fleet, token) == ["node1"]
    assert run(config, "sync") == 0
    assert accepted(fleet, token) == []
    # above the primary (keystone on node2 would sign with it): removed, never left alone as
    # a newer key set, and said
    (fleet.nodes[1].directory / "9").write_bytes(leaked)
    assert accepted(fleet, token) == ["node2"]
    capsys.readouterr()
    assert run(config, "sync") == 0
    assert "node node2 held revoked key sha256:" in capsys.readouterr().out
    assert accepted(fleet, token) == []
    assert "9" not in {p.name for p in fleet.nodes[1].directory.iterdir()}
    # the controller's repository shows it again: nothing is pushed
    (config.parent / "keys" / "1").write_bytes(leaked)
    (config.parent / "keys" / "1").chmod(0o600)
    capsys.readouterr()
    assert run(config, "sync") == 1
    assert "was revoked" in capsys.readouterr().err
    assert accepted(fleet, token) == []


def test_the_daemons_check_removes_the_key_from_a_node_back_up(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    fleet.stop_node("node2")
    assert revoke(config, "--index", "1", "--reason", "leak") == 1
    fleet.start_node("node2")
    loaded = load_config(config)
    result = operations.check_fleet(Run(loaded, loaded.repositories[0], Trigger.CRON))
    assert result is not None and result.ok and result.report is not None
    assert result.report.action == "revoke"
    assert accepted(fleet, Fernet(leaked).encrypt(b"user")) == []
    assert journal(config)["revocation"] is None


def test_a_dry_run_prints_the_plan_and_what_dies_and_changes_nothing(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    before = {node.name: keys_of(node.directory) for node in fleet.nodes}
    controller = keys_of(config.parent / "keys")
    state = journal(config)
    capsys.readouterr()
    assert revoke(config, "--index", "2", "--reason", "leak", "--dry-run", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    result = document["repositories"][0]["results"][0]
    assert result["plan"]["role"] == "primary" and result["plan"]["index"] == 2
    assert any("every token issued with it" in message for message in result["messages"])
    assert {node.name: keys_of(node.directory) for node in fleet.nodes} == before
    assert keys_of(config.parent / "keys") == controller
    assert journal(config) == state and reports(config, "revoke") == []


def test_adopt_never_takes_a_revoked_key(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    leaked = keys_of(config.parent / "keys")[1]
    assert revoke(config, "--index", "1", "--reason", "leak") == 0
    (fleet.nodes[0].directory / "1").write_bytes(leaked)  # node1 shows it again
    (config.parent / "keys").rename(config.parent / "keys.moved")
    capsys.readouterr()
    assert run(config, "adopt", "--from", "node1") == 1
    assert "was revoked" in capsys.readouterr().err
    assert not (config.parent / "keys").exists() or keys_of(config.parent / "keys") == {}


def test_the_metric_names_a_node_that_may_hold_a_revoked_key_until_it_is_gone(
    fleet: Fleet, tmp_path: Path
) -> None:
    textfile = tmp_path / "textfile" / "keysyncd.prom"
    textfile.parent.mkdir(mode=0o700)
    config = fleet_config(fleet, tmp_path / "ctl", metrics={"textfile": str(textfile)})
    assert run(config, "init") == 0
    assert run(config, "rotate") == 0

    def held(node: str) -> str:
        label = f'keysyncd_node_revoked_key_held{{node="{node}",repository="fernet-tokens"}}'
        [line] = [line for line in textfile.read_text().splitlines() if line.startswith(label)]
        return line.split()[-1]

    assert held("node3") == "0.0"
    fleet.stop_node("node3")
    assert revoke(config, "--index", "1", "--reason", "leak") == 1
    assert (held("node1"), held("node2"), held("node3")) == ("0.0", "0.0", "1.0")
    fleet.start_node("node3")
    assert run(config, "sync") == 0
    assert held("node3") == "0.0"
