"""``rotate --dry-run`` prints exactly the plan the real rotation executes, for every kind:
the plan is one value made by the kind's one planner; the dry run shows it (``plan`` in
``--json``), the real run records it (``details.plan`` of its report). Against a real
OpenSSH fleet, twice in a row (the second rotation keeps or retires the first's keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.integration.test_rotate import reports
from tests.jws_world import World


def dry_run_plan(config: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "rotate", "--dry-run"]) == 0
    [repository] = json.loads(capsys.readouterr().out)["repositories"]
    [result] = repository["results"]
    assert result["outcome"] == "dry-run" and result["plan"] is not None, result
    return result["plan"]


def rotated_plan(config: Path) -> dict:
    assert main(["-c", str(config), "rotate"]) == 0
    return reports(config, "rotate")[-1]["details"]["plan"]


def assert_the_dry_run_prints_the_plan_that_runs(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> list[dict]:
    plans = []
    for _ in range(2):
        shown = dry_run_plan(config, capsys)
        assert rotated_plan(config) == shown
        plans.append(shown)
    return plans


@pytest.mark.parametrize("kind", ["fernet", "credential"])
def test_a_symmetric_dry_run_prints_the_plan_that_runs(
    fleet: Fleet, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl", repository={"kind": kind})
    assert main(["-c", str(config), "init"]) == 0
    first, second = assert_the_dry_run_prints_the_plan_that_runs(config, capsys)
    assert (first["new_primary"], second["new_primary"]) == (2, 3)


def test_a_jws_dry_run_prints_the_plan_that_runs(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(world.path), "init"]) == 0
    plans = assert_the_dry_run_prints_the_plan_that_runs(world.path, capsys)
    for plan in plans:
        assert plan["rotate"] is True
        assert plan["new_pairs"] == ["node1", "node2", "node3"]
