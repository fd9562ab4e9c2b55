"""Drift and audit with the real daemon against a real fleet: watch, verify, repair, metrics.

Every wait is on observable state (reports, key files, the log, metrics), bounded, and its
bound is a failure bound only (``tests/e2e/waiting.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.fleet import Fleet
from tests.e2e.controller import KEYSTONE_ROTATE, Controller, files_of, metrics_over_http, parse

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "report.schema.json").read_text())


def epoch(value: str) -> float:
    """Return epoch seconds for a report time (``2026-11-22T20:00:00.123456Z``)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_keystone_rotate_on_the_controller_reaches_every_node(controller: Controller) -> None:
    before = len(controller.reports())
    root = str(Path(__file__).parents[2])
    subprocess.run(
        [sys.executable, "-c", KEYSTONE_ROTATE.format(root=root, keys=str(controller.keys))],
        check=True,
    )
    controller.wait(controller.in_sync, "the operator's rotation to reach every node")
    watch = controller.wait(
        lambda: [r for r in controller.reports_since(before) if r["trigger"] == "watch"],
        "a watch report",
    )
    assert watch[0]["action"] == "sync" and watch[0]["outcome"] == "ok"
    assert watch[0]["generation"] == 2  # init was generation 1
    assert "changed outside keysyncd" in watch[0]["messages"][0]


@pytest.mark.parametrize("damage", [b"", b"this is junk, not a key"])
def test_invalid_local_key_is_never_pushed_and_fixing_resumes(
    controller: Controller, damage: bytes
) -> None:
    nodes_before = {n.name: files_of(n.directory) for n in controller.fleet.nodes}
    good = (controller.keys / "1").read_bytes()
    before = len(controller.reports())
    (controller.keys / "1").write_bytes(damage)
    problem = "empty key" if not damage else "malformed key"

    def failed_drift() -> list[dict[str, Any]]:
        return [
            r
            for r in controller.reports_since(before)
            if r["action"] == "drift" and r["outcome"] == "failed"
        ]

    reports = controller.wait(failed_drift, "a drift report")
    assert any(f"{controller.keys / '1'}: {problem}" in m for m in reports[0]["messages"])
    message = f"{controller.keys / '1'}: {problem}"
    controller.wait(lambda: message in controller.log.read_text(), "the problem in the log")
    # and it keeps being reported by the periodic check, never pushed
    controller.wait(lambda: failed_drift()[1:], "a second drift report")
    assert {n.name: files_of(n.directory) for n in controller.fleet.nodes} == nodes_before
    (controller.keys / "1").write_bytes(good)  # fixed
    root = str(Path(__file__).parents[2])
    subprocess.run(
        [sys.executable, "-c", KEYSTONE_ROTATE.format(root=root, keys=str(controller.keys))],
        check=True,
    )
    controller.wait(controller.in_sync, "syncs to resume after the fix")


@pytest.mark.parametrize("change", ["deleted", "modified", "added"])
def test_remote_drift_is_detected_and_repaired(controller: Controller, change: str) -> None:
    victim = controller.fleet.node("node2").directory
    retired = (controller.keys / "1").read_bytes()
    if change == "added":  # rotate until key 1 is retired, so that it can come back
        for _ in range(2):
            # a property about time: a demoted key may go only once token_expiration (1 s)
            # has passed since its rotation was confirmed; a longer wait changes nothing
            time.sleep(1.1)
            assert main(["-c", str(controller.config), "rotate", "--wait", "30"]) == 0
        assert not (controller.keys / "1").exists()
    before = len(controller.reports())
    if change == "deleted":
        (victim / "0").unlink()
        expected = {"missing": [0]}
    elif change == "modified":
        (victim / "0").write_bytes((controller.keys / "1").read_bytes()[::-1])
        expected = {"changed": [0]}
    else:  # an old key restored from a backup on the node
        (victim / "1").write_bytes(retired)
        expected = {"extra": [1]}
    drift = controller.wait(
        lambda: [r for r in controller.reports_since(before) if r["action"] == "drift"],
        "the drift to be detected",
    )
    node = drift[0]["nodes"]["node2"]
    assert node["status"] == "repaired"
    assert {k: v for k, v in node["changes"].items() if v} == expected
    assert drift[0]["nodes"]["node1"]["status"] == "in_sync"
    assert controller.in_sync()


def test_node_down_backs_off_then_is_repaired_and_lag_resets(controller: Controller) -> None:
    controller.fleet.stop_node("node3")
    before = len(controller.reports())
    assert main(["-c", str(controller.config), "rotate", "--force", "--wait", "30"]) == 1

    def skipped() -> list[dict[str, Any]]:
        return [
            r
            for r in controller.reports_since(before)
            if r["nodes"].get("node3", {}).get("status") == "skipped"
        ]

    backing_off = controller.wait(skipped, "a report showing node3 in backoff")
    assert "backing off after" in backing_off[0]["nodes"]["node3"]["error"]
    key = (("node", "node3"), ("repository", "fernet-tokens"))
    metrics = metrics_over_http(controller.port)
    assert metrics["keysyncd_node_up"][key] == 0
    assert metrics["keysyncd_node_generations_behind"][key] >= 1
    controller.fleet.start_node("node3")
    controller.wait(controller.in_sync, "node3 to be repaired after it returns")
    controller.wait(
        lambda: metrics_over_http(controller.port)["keysyncd_node_generations_behind"][key] == 0,
        "the lag metric to reset",
    )
    assert metrics_over_http(controller.port)["keysyncd_node_up"][key] == 1


def test_metrics_http_and_textfile_carry_the_state(controller: Controller) -> None:
    assert main(["-c", str(controller.config), "rotate", "--wait", "30"]) == 0
    controller.wait(lambda: (controller.root / "metrics.prom").exists(), "the textfile")
    state = json.loads(
        (controller.root / "state" / "repositories" / "fernet-tokens.json").read_text()
    )
    rotation = [r for r in controller.reports() if r["action"] == "rotate"][-1]
    started, ended = (epoch(rotation[key]) for key in ("started_at", "ended_at"))
    for metrics in (
        metrics_over_http(controller.port),
        parse((controller.root / "metrics.prom").read_text()),
    ):
        repo = (("repository", "fernet-tokens"),)
        assert metrics["keysyncd_generation"][repo] >= state["generation"]
        assert metrics["keysyncd_nodes"][repo] == 3
        assert metrics["keysyncd_nodes_in_sync"][repo] == 3
        roles = {dict(k)["role"] for k in metrics["keysyncd_key_age_seconds"]}
        assert roles == {"staged", "primary", "secondary"}
        last = metrics["keysyncd_last_success_timestamp_seconds"]
        # that rotation's own times, not a margin: 1 ms covers the reports' microseconds
        success = last[(("action", "rotate"), ("repository", "fernet-tokens"))]
        assert started - 1e-3 <= success <= ended + 1e-3, (success, rotation)
        assert sum(v for k, v in metrics["keysyncd_action_duration_seconds_count"].items()) >= 2
        for node in controller.fleet.nodes:
            key = (("node", node.name), ("repository", "fernet-tokens"))
            assert metrics["keysyncd_node_up"][key] == 1
            assert metrics["keysyncd_node_last_verified_timestamp_seconds"][key] > 0


def test_reports_validate_and_the_chain_detects_tampering(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert main(["-c", str(controller.config), "rotate", "--wait", "30"]) == 0
    controller.stop()
    reports = controller.reports()
    assert len(reports) >= 4  # init and three rotations, maybe verify reports too
    for report in reports:
        jsonschema.validate(report, SCHEMA)
    config = str(controller.config)
    assert main(["-c", config, "report", "verify-chain"]) == 0
    paths = sorted((controller.root / "reports").glob("*.json"))
    middle = paths[len(paths) // 2]
    original = middle.read_text()
    middle.write_text(original.replace('"outcome": "ok"', '"outcome": "partial"'))
    capsys.readouterr()
    assert main(["-c", config, "report", "verify-chain"]) == 1
    assert f"report {middle.stem} was modified" in capsys.readouterr().out
    middle.write_text(original)
    assert main(["-c", config, "report", "verify-chain"]) == 0
    shutil.move(middle, controller.root / "deleted.json")
    capsys.readouterr()
    assert main(["-c", config, "report", "verify-chain"]) == 1
    assert f"report {middle.stem} (before" in capsys.readouterr().out


def test_no_key_material_in_reports_metrics_or_logs(controller: Controller) -> None:
    seen: set[bytes] = set()
    for _ in range(3):
        seen |= set(files_of(controller.keys).values())
        assert main(["-c", str(controller.config), "rotate", "--wait", "30"]) == 0
    seen |= set(files_of(controller.keys).values())
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{controller.port}/metrics", timeout=5)
    haystack = metrics.read() + (controller.root / "metrics.prom").read_bytes()
    controller.stop()
    haystack += controller.log.read_bytes()
    for path in (controller.root / "reports").glob("*.json"):
        haystack += path.read_bytes()
    for path in (controller.root / "state").rglob("*"):
        if path.is_file():
            haystack += path.read_bytes()
    assert len(seen) >= 5
    for key in seen:
        assert key.strip() not in haystack


KEYSTONE_SETUP = (
    "import sys; sys.path.insert(0, {root!r});"
    "from tests.keystone_compat import fernet_setup; fernet_setup({keys!r}, 3)"
)


def test_watch_failure_is_reported_and_the_periodic_verify_still_covers(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The daemon starts before the repository exists: the watch cannot be set up."""
    controller = Controller(fleet, tmp_path / "ctl")
    controller.start()
    try:
        failed = controller.wait(
            lambda: [
                r
                for r in controller.reports()
                if r["action"] == "drift" and r["trigger"] == "watch"
            ],
            "a report that the local watch is unavailable",
        )
        assert failed[0]["outcome"] == "failed"
        assert "local watch unavailable" in failed[0]["messages"][0]
        assert "watch unavailable" in controller.log.read_text()
        root = str(Path(__file__).parents[2])
        setup = KEYSTONE_SETUP.format(root=root, keys=str(controller.keys))
        subprocess.run([sys.executable, "-c", setup], check=True)  # the operator bootstraps
        controller.wait(controller.in_sync, "the periodic verify to push it")
        # the report is written right after the push
        controller.wait(
            lambda: [
                r for r in controller.reports() if r["trigger"] == "cron" and r["action"] == "sync"
            ],
            "the verify's sync report",
        )
    finally:
        controller.stop()


def test_loosened_permissions_are_reported_and_block_pushes(controller: Controller) -> None:
    before = len(controller.reports())
    nodes_before = {n.name: files_of(n.directory) for n in controller.fleet.nodes}
    (controller.keys / "0").chmod(0o644)  # world-readable: an invalid state (SPEC section 4)
    reports = controller.wait(
        lambda: [
            r
            for r in controller.reports_since(before)
            if r["action"] == "drift" and r["outcome"] == "failed"
        ],
        "a drift report about the permissions",
    )
    assert any("lax permissions: mode 0644" in m for m in reports[0]["messages"])
    assert main(["-c", str(controller.config), "sync", "--wait", "30"]) == 1  # refused too
    assert {n.name: files_of(n.directory) for n in controller.fleet.nodes} == nodes_before
    (controller.keys / "0").chmod(0o600)
    assert main(["-c", str(controller.config), "sync", "--wait", "30"]) == 0
