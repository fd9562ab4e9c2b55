"""A replace loop of the repository directory must not flood the report history: every re-arm
would commit a 'replaced' drift report, and retention keeps only the newest keep_count. The
watch sends at most ALARM_BURST such alarms per repository in ALARM_WINDOW (the latest one
beyond is held), so 60 swaps in 15 s leave the real history (here keep_count 25) in place.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keysyncd.io.runtime.watch import ALARM_BURST
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.e2e.controller import Controller


@pytest.fixture
def controller(fleet: Fleet, tmp_path: Path) -> Iterator[Controller]:
    ctl = Controller(fleet, tmp_path / "ctl")
    fleet_config(
        fleet,
        ctl.root,
        repository={"schedule": "0 0 1 1 *", "token_expiration": 1},
        drift={"verify_interval": 3600, "on_remote_drift": "repair"},
        reports={"keep_count": 25},
    )
    with ctl.running():
        yield ctl


def test_a_replace_loop_does_not_erase_the_report_history(controller: Controller) -> None:
    [init] = [r for r in controller.reports() if r["action"] == "init"]
    keys = controller.keys
    spare = keys.with_name("keys.spare")
    shutil.copytree(keys, spare)  # same keys: nothing is ever invalid, only replaced
    parked = keys.with_name("keys.parked")
    for _ in range(60):  # bounded: 60 swaps, 0.25 s apart
        keys.rename(parked)
        spare.rename(keys)
        parked.rename(spare)
        time.sleep(0.25)
    time.sleep(2)
    ids = [r["id"] for r in controller.reports()]
    replaced = sum(1 for r in controller.reports() if "was replaced" in " ".join(r["messages"]))
    assert init["id"] in ids, f"the init report was pruned by {replaced} 'replaced' reports"
    assert 1 <= replaced <= ALARM_BURST, "the replacements are reported, within the burst"
