"""The judgement of the controller's clock (keysyncd.core.clock) and its journal, pure and
on disk: the tolerance, the step back, the median, what an untrusted clock records."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from keysyncd.core import clock
from keysyncd.core.journal import LastAction, RepositoryState
from keysyncd.core.nodes import checked
from keysyncd.core.policy import KeyHistory
from keysyncd.core.report import NodeOutcome
from keysyncd.io.local.state import load_state, save_state, state_path

NOW = 1_800_000_000.0
MAX_SKEW = 300.0


def test_a_clock_within_the_tolerance_of_the_nodes_median_is_trusted() -> None:
    check = clock.judge(NOW, NOW - 10, [12.0, -3.0, 299.0], MAX_SKEW)
    assert check.trusted and check.skew == 12.0 and check.observed == 3


@pytest.mark.parametrize(
    ("skews", "words"),
    [
        ([86400.0, 86401.0, 86399.0], "86400s ahead of the median clock of 3 nodes"),
        ([-301.0], "301s behind the median clock of 1 node"),
    ],
)
def test_a_clock_beyond_the_tolerance_is_not_trusted(skews: list[float], words: str) -> None:
    check = clock.judge(NOW, NOW - 10, skews, MAX_SKEW)
    assert not check.trusted
    assert check.reason is not None and words in check.reason
    assert check.describe().startswith("clock not trusted: ")


def test_one_node_with_a_wrong_clock_neither_blocks_nor_excuses() -> None:
    assert clock.judge(NOW, None, [0.5, 1.0, 86400.0], MAX_SKEW).trusted
    assert not clock.judge(NOW, None, [86400.0, 86400.0, 0.0], MAX_SKEW).trusted


def test_a_clock_behind_the_journal_stepped_back() -> None:
    assert clock.judge(NOW, NOW + clock.SLACK, [], MAX_SKEW).trusted
    stepped = clock.judge(NOW, NOW + 60, [0.0], MAX_SKEW)
    assert not stepped.trusted and stepped.reason is not None
    assert "60s behind the latest time keysyncd recorded" in stepped.reason


def test_only_a_trusted_clock_advances_the_latest_time() -> None:
    state = RepositoryState(name="r", latest_time=NOW)
    ahead = clock.judge(NOW + 86400, clock.latest_recorded(state), [86400.0], MAX_SKEW)
    after = clock.recorded(state, ahead)
    assert after.latest_time == NOW, "a day-ahead clock must not look like the truth later"
    assert after.clock is not None and after.clock.untrusted == ahead.reason
    fine = clock.judge(NOW + 60, clock.latest_recorded(after), [0.2], MAX_SKEW)
    assert clock.recorded(after, fine).latest_time == NOW + 60
    assert clock.current(clock.recorded(after, fine), NOW + 61, MAX_SKEW).trusted


def test_without_a_latest_time_every_recorded_time_stands_in() -> None:
    state = RepositoryState(
        name="r",
        history={1: KeyHistory(created_at=NOW - 5, promoted_at=NOW + 30)},
        last_action=LastAction("sync", "ok", NOW + 10, "id"),
    )
    assert clock.latest_recorded(state) == NOW + 30
    assert clock.latest_recorded(replace(state, latest_time=NOW)) == NOW
    assert clock.latest_recorded(RepositoryState(name="r")) is None


def test_an_untrusted_clock_confirms_no_demotion() -> None:
    """A confirmation times a retirement: a clock behind the nodes would time it early."""
    state = RepositoryState(
        name="r",
        generation=2,
        history={1: KeyHistory(created_at=1.0, promoted_at=2.0, demoted_at=NOW - 100)},
    )
    nodes = {"n1": NodeOutcome(status="in_sync")}
    untrusted = clock.judge(NOW, None, [-3600.0], MAX_SKEW)
    assert checked(state, nodes, ["n1"], NOW, untrusted).history[1].confirmed_at is None
    trusted = clock.judge(NOW, None, [0.0], MAX_SKEW)
    assert checked(state, nodes, ["n1"], NOW, trusted).history[1].confirmed_at == NOW


def test_the_journal_keeps_the_clock_and_survives_a_damaged_clock_field(tmp_path: Path) -> None:
    state = clock.recorded(
        RepositoryState(name="r", last_rotation_at=NOW - 50),
        clock.judge(NOW, NOW - 50, [1.5], MAX_SKEW),
    )
    save_state(tmp_path, state)
    assert load_state(tmp_path, "r") == state
    path = state_path(tmp_path, "r")
    document = json.loads(path.read_text())
    document["latest_time"] = "yesterday"
    document["clock"] = {"checked_at": float("nan")}
    path.write_text(json.dumps(document))
    damaged = load_state(tmp_path, "r")
    assert damaged.latest_time is None and damaged.clock is None
    assert clock.latest_recorded(damaged) == NOW - 50, "the journal's other times stand in"
