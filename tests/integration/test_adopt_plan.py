"""adopt in the action shell, for every kind: its report records the plan (``details.plan``,
what ``details.adopt`` says was taken), and ``adopt --dry-run`` prints exactly that plan,
writing nothing anywhere (the controller; the nodes: not even a clock probe) and taking no
lock. Real OpenSSH fleet."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.jwskeys import generate_pair
from keysyncd.io.local.lock import exclusive
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_adopt_trust import (
    PLANTED,
    adopt_reports,
    keystone_fleet,
    valid_report,
)
from tests.integration.test_attack_dry_run import snapshot
from tests.jws_world import World
from tests.keystone_compat import fernet_rotate, fernet_setup


def adopt(capsys: pytest.CaptureFixture[str], config: Path, *options: str) -> str:
    """Run ``adopt --from node1`` with ``options``; return what it printed."""
    capsys.readouterr()
    assert main(["-c", str(config), "adopt", "--from", "node1", *options]) == 0
    return capsys.readouterr().out


def dry_then_real(
    capsys: pytest.CaptureFixture[str], config: Path, nodes: list[Path]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Run ``adopt --dry-run`` (text, then JSON) while another process holds the lock, check
    it wrote nothing anywhere, then the real adopt; return the dry run's text, the plan it
    printed and the real adopt's report (checked against the schema)."""
    roots = [config.parent, *nodes]
    with exclusive(load_config(config).state_dir, "another keysyncd"):
        before = snapshot(*roots)
        text = adopt(capsys, config, "--dry-run")
        (dry,) = json.loads(adopt(capsys, config, "--dry-run", "--json"))["repositories"]
        assert snapshot(*roots) == before
    assert adopt_reports(config.parent) == []
    (real,) = json.loads(adopt(capsys, config, "--json"))["repositories"]
    assert real == dry  # what was adopted, and how the nodes differ: as the dry run said
    (report,) = adopt_reports(config.parent)
    return text, dry["details"], valid_report(report)


def test_fernet_adopt_dry_run_prints_the_plan_its_report_records(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = fleet.node("node1").directory
    fernet_setup(str(source))
    fernet_rotate(str(source))
    for key in os.listdir(source):  # node2 holds the same keys; node3 none
        (fleet.node("node2").directory / key).write_bytes((source / key).read_bytes())
        (fleet.node("node2").directory / key).chmod(0o600)
    config = fleet_config(fleet, tmp_path / "ctl")
    nodes = [node.directory for node in fleet.nodes]

    text, plan, report = dry_then_real(capsys, config, nodes)

    assert text.splitlines()[0] == (
        "fernet-tokens: would adopt keys [0, 1, 2] (1 other node differs) from node1; "
        "dry run: nothing changed"
    )
    assert "node node3's keys differ from node node1's" in text, text
    assert plan["adopted"] == [0, 1, 2] and list(plan["differing_nodes"]) == ["node3"]
    assert sorted(plan["differing_nodes"]["node3"]["missing"]) == [0, 1, 2]
    assert report["details"]["plan"] == report["details"]["adopt"] == plan
    assert report["messages"][0] == "adopted keys [0, 1, 2] from node node1; 1 other node differs"
    assert report["outcome"] == "ok" and report["action"] == "adopt"
    assert sorted(os.listdir(tmp_path / "ctl" / "keys")) == ["0", "1", "2"]


def test_jws_adopt_dry_run_prints_the_plan_its_report_records(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    keystone_fleet(world)
    (world.public("node1") / PLANTED).write_bytes(generate_pair("ES256")[1])
    nodes = [node.directory for node in world.fleet.nodes]

    text, plan, report = dry_then_real(capsys, world.path, nodes)

    assert text.splitlines()[0] == (
        "fernet-tokens: would adopt 4 public keys (1 not adopted) from node1; "
        "dry run: nothing changed"
    )
    assert ascii(PLANTED) in text and "\x1b" not in text
    assert sorted(plan["adopted"]) == ["'node1.pem'", "'node2.pem'", "'node3.pem'", "'old.pem'"]
    assert [refused["name"] for refused in plan["not_adopted"]] == [ascii(PLANTED)]
    assert report["details"]["plan"] == report["details"]["adopt"] == plan
    assert report["messages"][0].startswith("adopted 4 public keys from node node1 and the ")
    assert report["outcome"] == "ok" and report["details"]["clock"]["trusted"] is True
    assert len(os.listdir(world.store / "public")) == 4
