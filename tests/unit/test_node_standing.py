"""Issue 24 item 3: ``status`` tells the current truth. A node is judged against the
controller's current generation (verified before the controller changed: ``stale``), its
line shows the last check and the last time it was in sync, and every sentence about a node
is grammatical. Whole lines are compared, never fragments.

Item 2's pure part too: a dry run predicts the real run's outcome, and its exit code follows.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from keysyncd.actions.context import DRY_RUN, ActionResult
from keysyncd.commands import views as viewlines
from keysyncd.core.journal import NodeRecord, RepositoryState
from keysyncd.core.nodes import nodes_in_sync, stale_because, standing
from keysyncd.core.times import rfc3339
from keysyncd.core.vocabulary import GOOD, STALE, NodeStatus, Outcome, outcome_after_push
from keysyncd.io.local.state import load_state
from tests.keystone_compat import fernet_rotate
from tests.local_cli import cli, edit_state, write_config

T1, T2 = 1_765_000_000.0, 1_765_003_600.0  # 2025-12-06T05:46:40Z and an hour later
NODE_STATUSES = [*NodeStatus, STALE]


def test_a_good_check_of_an_earlier_generation_is_stale() -> None:
    current = NodeRecord("in_sync", checked_at=T1, last_verified_at=T1, generation=4)
    earlier = NodeRecord("updated", checked_at=T1, last_verified_at=T1, generation=3)
    assert standing(current, 4) == "in_sync"
    assert standing(earlier, 4) == STALE
    assert standing(current, 4, keys_changed=True) == STALE  # the disk moved on, unrecorded
    assert standing(NodeRecord("differs", generation=3), 4) == "differs"  # says more already
    assert standing(NodeRecord("failed", generation=3), 4) == "failed"
    assert standing(None, 4) is None and standing(NodeRecord(), 4) is None  # never checked
    assert STALE not in GOOD and STALE not in set(NodeStatus)  # shown, never produced
    assert stale_because(earlier, 4) == (
        "last verified holding generation 3; the controller is at generation 4"
    )
    assert stale_because(current, 4, keys_changed=True) == (
        "last verified holding generation 4; the controller's keys changed since (keysyncd "
        "records and pushes them on its next sync or check)"
    )


def test_nodes_in_sync_counts_only_nodes_at_the_current_generation() -> None:
    state = RepositoryState(
        "r",
        generation=4,
        nodes={
            "n1": NodeRecord("in_sync", generation=4),
            "n2": NodeRecord("in_sync", generation=3),
            "n3": NodeRecord("failed", generation=4),
        },
    )
    assert nodes_in_sync(state, ["n1", "n2", "n3", "n4"]) == 1


def test_a_node_line_shows_the_last_check_and_the_last_time_in_sync() -> None:
    stale = {
        "status": "stale",
        "checked_status": "in_sync",
        "checked_at": rfc3339(T2),
        "last_verified_at": rfc3339(T2),
        "stale": "last verified holding generation 3; the controller is at generation 4",
    }
    failed = {
        "status": "failed",
        "checked_at": rfc3339(T2),
        "last_verified_at": rfc3339(T1),
        "reason": "unreachable",
        "error": "connection refused",
    }
    differs = {"status": "differs", "checked_at": rfc3339(T2), "last_verified_at": None}
    assert viewlines.node_line("node1", stale) == (
        "  node node1: stale (last check 2025-12-06T06:46:40Z, last in sync "
        "2025-12-06T06:46:40Z): last verified holding generation 3; the controller is at "
        "generation 4"
    )
    assert viewlines.node_line("node2", failed) == (
        "  node node2: failed (last check 2025-12-06T06:46:40Z, last in sync "
        "2025-12-06T05:46:40Z): unreachable: connection refused"
    )
    assert viewlines.node_line("node3", differs) == (
        "  node node3: differs (last check 2025-12-06T06:46:40Z, last in sync -)"
    )
    assert viewlines.node_line("node4", {"status": None}) == "  node node4: never checked"


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        ("pending", "node n1 was not checked to the end (its action was interrupted)"),
        ("differs", "node n1 differs from the controller"),
        ("diverged", "node n1 has diverged: it holds newer or unrelated keys, left alone"),
        ("failed", "node n1 failed its last check: timeout"),
        ("skipped", "node n1 was skipped (backing off after failures)"),
        ("stale", "node n1 is stale: last verified holding generation 1; the controller is at 2"),
        (None, "node n1 was never checked"),
        ("made-up", "node n1 has status made-up"),  # a hand-edited journal still reads well
    ],
)
def test_every_node_attention_is_a_sentence(status: str | None, sentence: str) -> None:
    entry = {
        "status": status,
        "reason": "timeout",
        "stale": "last verified holding generation 1; the controller is at 2",
    }
    assert viewlines.node_attention("n1", entry) == sentence


def test_no_node_status_is_used_as_a_predicate_adjective() -> None:
    """``node node2 is differs``: every status an action records or status shows, outside
    GOOD, has its own phrase (a new NodeStatus without one fails here)."""
    wrong = re.compile(
        r"\bis (pending|differs|diverged|failed|skipped)\b|\bwas (differs|diverged)\b"
    )
    for status in NODE_STATUSES:
        if status in GOOD:
            continue
        assert status in viewlines.NODE_ATTENTION, status
        sentence = viewlines.node_attention("n1", {"status": status})
        assert not wrong.search(sentence), sentence


def test_a_dry_run_exits_as_the_real_run_would() -> None:
    fixable = [("in_sync", True), ("differs", True)]
    assert outcome_after_push(fixable) == Outcome.OK  # differs gets pushed
    assert outcome_after_push([("differs", True), ("failed", True)]) == Outcome.PARTIAL
    assert outcome_after_push([("diverged", True)]) == Outcome.FAILED  # left alone
    # a node no push can fix (a directory above it keystone cannot pass) fails the real run
    assert outcome_after_push([("in_sync", True), ("differs", False)]) == Outcome.PARTIAL
    assert ActionResult("r", DRY_RUN, None, would=Outcome.OK).ok
    assert not ActionResult("r", DRY_RUN, None, would=Outcome.PARTIAL).ok
    assert not ActionResult("r", DRY_RUN, None, would=Outcome.DEFERRED).ok
    assert ActionResult("r", DRY_RUN, None).ok  # a dry run that predicts nothing


def status_lines(out: str, start: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(start)]


def test_status_judges_each_node_against_the_current_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node verified at generation 1 while the controller is at 1: in_sync, exit 0. The
    journal says the controller moved on (a rotation the node missed): stale, exit 1. The
    keys on disk changed outside keysyncd, not yet recorded: every node stale."""
    config = write_config(tmp_path)
    assert cli(capsys, "-c", str(config), "init")[0] == 0
    config = write_config(
        tmp_path,
        [{"name": "ctl1", "host": "192.0.2.11"}, {"name": "ctl2", "host": "192.0.2.12"}],
        known_hosts=str(tmp_path / "kh"),
    )
    now = time.time()
    good = NodeRecord("in_sync", checked_at=now, last_verified_at=now - 60, generation=1)
    older = NodeRecord("updated", checked_at=now, last_verified_at=now, generation=0)
    edit_state(config, nodes={"ctl1": good, "ctl2": older})
    code, out, _ = cli(capsys, "-c", str(config), "status")
    assert code == 1
    assert status_lines(out, "  node ") == [
        f"  node ctl1: in_sync (last check {rfc3339(now)}, last in sync {rfc3339(now - 60)})",
        f"  node ctl2: stale (last check {rfc3339(now)}, last in sync {rfc3339(now)}): last "
        "verified holding generation 0; the controller is at generation 1",
    ]
    assert status_lines(out, "ATTENTION") == [
        "ATTENTION: fernet-tokens: node ctl2 is stale: last verified holding generation 0; "
        "the controller is at generation 1"
    ]
    edit_state(config, nodes={"ctl1": good, "ctl2": good})
    assert cli(capsys, "-c", str(config), "status")[0] == 0

    fernet_rotate(str(tmp_path / "keys"), 5)  # keystone-manage fernet_rotate, by hand
    code, out, _ = cli(capsys, "-c", str(config), "--json", "status")
    assert code == 1
    document = json.loads(out)
    nodes = document["repositories"][0]["nodes"]
    assert {name: (n["status"], n["checked_status"]) for name, n in nodes.items()} == {
        "ctl1": ("stale", "in_sync"),
        "ctl2": ("stale", "in_sync"),
    }
    changed = (
        "last verified holding generation 1; the controller's keys changed since (keysyncd "
        "records and pushes them on its next sync or check)"
    )
    assert document["attention"] == [
        f"fernet-tokens: node ctl1 is stale: {changed}",
        f"fernet-tokens: node ctl2 is stale: {changed}",
    ]
    assert load_state(config.parent / "state", "fernet-tokens").generation == 1  # only looked
