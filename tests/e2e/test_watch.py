"""The daemon's local watch survives a restore, with the real daemon against a real fleet.

The periodic check runs only once an hour here, so what is seen within seconds is seen by
the watch: the repository moved away (reported missing, ``status`` exit 1, nothing pushed),
copied back (reported as replaced, counted in the metrics), and then a change keysyncd did
not make to the new directory is detected and pushed by the re-armed watch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.e2e.controller import KEYSTONE_ROTATE, Controller, files_of, metrics_over_http

REPLACED = (("kind", "local_replaced"), ("repository", "fernet-tokens"))


@pytest.fixture
def controller(fleet: Fleet, tmp_path: Path) -> Iterator[Controller]:
    ctl = Controller(fleet, tmp_path / "ctl")
    fleet_config(  # as Controller's, but only the watch can see a local change in time
        fleet,
        ctl.root,
        repository={"schedule": "0 0 1 1 *", "token_expiration": 1},
        drift={"verify_interval": 3600, "on_remote_drift": "repair"},
        metrics={"listen": f"127.0.0.1:{ctl.port}"},
    )
    with ctl.running():
        yield ctl


def test_a_restored_repository_is_watched_again(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = {node.name: files_of(node.directory) for node in controller.fleet.nodes}
    moved = controller.keys.with_name("keys.moved")
    before = len(controller.reports())

    def watch_reports(outcome: str, text: str) -> list[dict[str, Any]]:
        return [
            r
            for r in controller.reports_since(before)
            if r["action"] == "drift" and r["trigger"] == "watch" and r["outcome"] == outcome
            if any(text in message for message in r["messages"])
        ]

    controller.keys.rename(moved)
    controller.wait(lambda: watch_reports("failed", "directory is missing"), "a missing report")
    capsys.readouterr()
    assert main(["-c", str(controller.config), "status"]) == 1
    assert "the repository directory is missing" in capsys.readouterr().out
    shutil.copytree(moved, controller.keys)  # the restore: same keys, a new directory
    controller.wait(lambda: watch_reports("ok", "was replaced"), "a replacement report")
    controller.wait(lambda: "was replaced" in controller.log.read_text(), "the log line")
    controller.wait(  # the journal is saved after the report: wait, do not race it
        lambda: metrics_over_http(controller.port)["keysyncd_drift_events_total"].get(REPLACED),
        "the replacement in the drift metric",
    )
    assert {node.name: files_of(node.directory) for node in controller.fleet.nodes} == nodes
    root = str(Path(__file__).parents[2])
    script = KEYSTONE_ROTATE.format(root=root, keys=str(controller.keys))
    subprocess.run([sys.executable, "-c", script], check=True)  # not keysyncd's change
    synced = controller.wait(
        lambda: [
            r
            for r in controller.reports_since(before)
            if r["trigger"] == "watch" and r["action"] == "sync"
        ],
        "the re-armed watch to push the change",
    )
    assert "changed outside keysyncd" in synced[0]["messages"][0]
    assert controller.in_sync()
