"""Every action keysyncd can commit writes a report that validates against
schemas/report.schema.json: init, adopt, rotate, sync, verify, drift and migrate, on a real
fleet."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema

from keysyncd.actions import operations
from keysyncd.actions.context import Run
from keysyncd.commands.cli import main
from keysyncd.config import load_config
from keysyncd.core.vocabulary import Action, Trigger
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())


def written(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "reports").glob("*.json"))]


def test_a_report_of_every_action_validates_against_the_schema(
    fleet: Fleet, make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    first, second = tmp_path / "ctl", tmp_path / "other"
    config = fleet_config(fleet, first)
    revoke = ["revoke", "--repo", "fernet-tokens", "--index", "0", "--reason", "a leak"]
    for command in (["init"], ["sync"], ["verify"], ["rotate"], revoke):
        assert main(["-c", str(config), *command]) == 0, command
    (fleet.node("node1").directory / "0").unlink()  # drift on a node, found by the check
    loaded = load_config(config)
    drift = operations.check_fleet(Run(loaded, loaded.repositories[0], Trigger.CRON))
    assert drift is not None and drift.report is not None
    other = fleet_config(fleet, second)  # a second controller takes the fleet over
    assert main(["-c", str(other), "adopt", "--from", "node2"]) == 0
    credential = fleet_config(  # the operator confirms a credential migration
        make_fleet(1), tmp_path / "cred", {"name": "creds", "kind": "credential"}
    )
    for command in (["init"], ["confirm-migration", "--repo", "creds", "--primary", "1"]):
        assert main(["-c", str(credential), *command]) == 0, command
    documents = written(first) + written(second) + written(tmp_path / "cred")
    assert {document["action"] for document in documents} == {str(a) for a in Action}
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for document in documents:
        problems = [error.message for error in validator.iter_errors(document)]
        assert problems == [], (document["action"], problems)
