"""adopt trusts nothing one node says alone (SPEC safety rule 14), on a real fleet.

A JWS public key planted in the adopt source's public directory (whose private half signs
tokens that node alone accepted) is named, not adopted, and removed from every node by the
next sync: a token forged with it is then rejected everywhere, as keystone judges
(tests/keystone_jws.py), while every node's own tokens validate everywhere. Fernet keys are
taken from the source, and every node whose keys differ is named.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jsonschema
import jwt
import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from keysyncd.core.jwskeys import generate_pair
from keysyncd.errors import KeysyncError
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import World, act
from tests.keystone_compat import fernet_rotate, fernet_setup
from tests.keystone_jws import sign, validate

NAMES = ("node1", "node2", "node3")
PLANTED = "planted\x1b[2J.pem"  # a node-provided name: shown escaped, never raw
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "report.schema.json").read_text()
)


def adopt_reports(root: Path) -> list[dict]:
    found = sorted((root / "reports").glob("*-adopt-*.json"))
    return [json.loads(path.read_text()) for path in found]


def valid_report(report: dict) -> dict:
    problems = [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)]
    assert problems == [], problems
    return report


def accepted_on(world: World, token: str) -> list[str]:
    """Return the nodes whose keystone accepts ``token``."""
    accepted = []
    for node in NAMES:
        try:
            validate(token, str(world.public(node)))
        except LookupError:  # keystone's TokenNotFound: no public key verifies it
            continue
        accepted.append(node)
    return accepted


def keystone_fleet(world: World) -> None:
    """Each node its own pair, every node holding every node's public key and one old key
    no node signs with any more (as a deployment distributes them by hand)."""
    pairs = {name: generate_pair("ES256") for name in NAMES}
    old = generate_pair("ES256")[1]
    for name in NAMES:
        world.private(name).mkdir(mode=0o700)
        world.public(name).mkdir(mode=0o700)
        (world.private(name) / "private.pem").write_bytes(pairs[name][0])
        (world.private(name) / "private.pem").chmod(0o600)  # no one else may have read it
        for other in NAMES:
            (world.public(name) / f"{other}.pem").write_bytes(pairs[other][1])
        (world.public(name) / "old.pem").write_bytes(old)


def test_a_public_key_planted_on_the_source_is_named_and_never_spread(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    keystone_fleet(world)
    evil_private, evil_public = generate_pair("ES256")
    (world.public("node1") / PLANTED).write_bytes(evil_public)
    (world.public("node1") / "half.pem").write_bytes(evil_public)  # on two nodes, not all
    (world.public("node2") / "half.pem").write_bytes(evil_public)
    forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 600}, evil_private, "ES256")
    assert accepted_on(world, forged) == ["node1", "node2"]  # what the plant buys today
    config = ["-c", str(world.path)]
    capsys.readouterr()

    assert main([*config, "adopt", "--from", "node1"]) == 0
    out = capsys.readouterr().out
    assert "not adopted" in out and ascii(PLANTED) in out and "'half.pem'" in out, out
    assert "\x1b" not in out
    (report,) = adopt_reports(world.path.parent)
    details = valid_report(report)["details"]["adopt"]
    why = "no node's private key matches it; not held by node3"  # node2 holds it as half.pem
    assert details["not_adopted"] == [
        {"name": "'half.pem'", "reason": why},
        {"name": ascii(PLANTED), "reason": why},
    ]
    assert sorted(details["adopted"]) == ["'node1.pem'", "'node2.pem'", "'node3.pem'", "'old.pem'"]
    assert any(ascii(PLANTED) in message for message in report["messages"]), report
    assert "\x1b" not in json.dumps(report, ensure_ascii=False)
    stored = {p.read_bytes() for p in (world.store / "public").iterdir()}
    assert evil_public not in stored  # not in the controller's expected set

    assert main([*config, "sync"]) == 0
    for node in NAMES:
        held = sorted(os.listdir(world.public(node)))
        assert held == ["node1.pem", "node2.pem", "node3.pem", "old.pem"], (node, held)
    assert accepted_on(world, forged) == []
    for node in NAMES:
        assert accepted_on(world, sign(str(world.private(node)), node)) == list(NAMES)
    assert act(world, operations.verify, None).outcome == "ok"


def test_jws_adopt_with_a_node_unreachable_adopts_nothing(world: World) -> None:
    """Whether every node holds a key cannot be established with a node down (nor that
    node's pair): adopt refuses and writes nothing."""
    keystone_fleet(world)
    (world.public("node1") / PLANTED).write_bytes(generate_pair("ES256")[1])
    world.fleet.stop_node("node3")
    with pytest.raises(KeysyncError, match="not every node answered: node3"):
        act(world, operations.adopt, "node1")
    assert not (world.store / "public").exists() or not os.listdir(world.store / "public")
    assert adopt_reports(world.path.parent) == []


def test_fernet_adopt_names_every_node_whose_keys_differ(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = fleet.node("node2").directory
    fernet_setup(str(source))
    fernet_rotate(str(source))
    for name in ("node1", "node3"):
        for key in os.listdir(source):
            (fleet.node(name).directory / key).write_bytes((source / key).read_bytes())
            (fleet.node(name).directory / key).chmod(0o600)
    fernet_rotate(str(fleet.node("node3").directory))  # node3 rotated on its own
    config = fleet_config(fleet, tmp_path / "ctl")
    capsys.readouterr()

    assert main(["-c", str(config), "adopt", "--from", "node2"]) == 0
    out = capsys.readouterr().out
    assert "node node3's keys differ from node node2's" in out, out
    assert "node node1" not in out, out
    (report,) = adopt_reports(tmp_path / "ctl")
    details = valid_report(report)["details"]["adopt"]
    assert details["adopted"] == [0, 1, 2]
    (differs,) = details["differing_nodes"].items()
    assert differs[0] == "node3" and differs[1]["changed"] == [0] and differs[1]["extra"] == [3]
    assert "newer" in differs[1]["diverged"], differs
    assert any("node node3's keys differ" in message for message in report["messages"])
    assert sorted(os.listdir(tmp_path / "ctl" / "keys")) == ["0", "1", "2"]
