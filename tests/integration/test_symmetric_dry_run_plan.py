"""``sync --dry-run`` and ``init --dry-run`` of a Fernet or credential repository print the
plan the real run then executes and records (``details.plan`` of its report): the dry run
takes the real run's steps up to the plan, writing nothing. Against a real OpenSSH fleet:
a sync with a retirement due (the plan retires it), then one with nothing to retire, and
``sync --node`` (which never retires on the controller)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_node_scope import RETENTION
from tests.integration.test_rotate import reports


def shown_plan(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    """Return the plan a dry run prints (``--json``)."""
    capsys.readouterr()
    assert main(["-c", str(config), "--json", *args, "--dry-run"]) == 0
    [repository] = json.loads(capsys.readouterr().out)["repositories"]
    [result] = repository["results"]
    assert result["outcome"] == "dry-run" and result["plan"] is not None, result
    return result["plan"]


def recorded_plan(config: Path, action: str, *args: str) -> dict:
    """Run the real action; return the plan its report records."""
    assert main(["-c", str(config), action, *args]) == 0
    return reports(config, action)[-1]["details"]["plan"]


@pytest.mark.parametrize("kind", ["fernet", "credential"])
def test_init_and_sync_dry_runs_print_the_plan_that_runs(
    fleet: Fleet, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = {"kind": kind, **RETENTION} if kind == "fernet" else {"kind": kind}
    config = fleet_config(fleet, tmp_path / "ctl", repository=repository)
    keys = tmp_path / "ctl" / "keys"
    shown = shown_plan(config, capsys, "init")
    assert not keys.exists() or not os.listdir(keys), "a dry run wrote keys"
    assert (
        recorded_plan(config, "init") == shown == {"retired": [], "kept": [], "resulting": [0, 1]}
    )
    assert main(["-c", str(config), "rotate"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    time.sleep(3.2)  # fernet: key 1's retention ran out; credential: never migrated, kept
    (fleet.node("node2").directory / "0").unlink()  # node2 drifted: something to push
    # fernet: sync --node leaves key 1 to the fleet, the first whole sync retires it;
    # credential: key 1 is kept until a migration past it succeeded (none is configured)
    retiring = [1] if kind == "fernet" else []
    for scope, retired in ((["--node", "node2"], []), ([], retiring), ([], [])):
        shown = shown_plan(config, capsys, "sync", *scope)
        assert recorded_plan(config, "sync", *scope) == shown, scope
        assert shown["retired"] == retired, (scope, shown)
    left = ["0", "2", "3"] if kind == "fernet" else ["0", "1", "2", "3"]
    assert sorted(os.listdir(keys)) == left
