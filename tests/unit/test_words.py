"""Words that say what happened (issue 24, item 4), compared as whole lines: what differs
before an action, what was done after it, a deferred rotation that changed nothing, one
node vocabulary, one time form, one digest prefix length, plurals, the periodic verify's
log line, and daemon log lines with and without the journal."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from keysyncd.actions.context import ActionResult
from keysyncd.actions.operations import RepositoryRun
from keysyncd.commands import render
from keysyncd.commands import views as viewlines
from keysyncd.commands.cli import main
from keysyncd.commands.daemon import Daemon
from keysyncd.commands.logs import daemon_formatter, to_journal
from keysyncd.commands.scheduler import Job
from keysyncd.core.changewords import describe_changes
from keysyncd.core.clock import ClockCheck
from keysyncd.core.journal import NodeRecord
from keysyncd.core.nodes import standing
from keysyncd.core.policy import RotationPlan
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import DIGEST_SHOWN, named, plural, short_digest
from keysyncd.core.vocabulary import Outcome, job_name
from keysyncd.testing.demo import snapshot
from tests.unit.test_cli_local import write_config

MOMENT = 1795377600.0  # 2026-11-22T20:00:00Z
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
DIGEST = "9f2c03ab77d1" + "e" * 52
PUSHED = {"missing": [6], "changed": [0], "extra": [1, 2]}
PLAN = RotationPlan(new_primary=9, demoted=8, retire=(7, 8), keep=(), resulting=(0, 9))


def result(outcome: str, **fields: Any) -> ActionResult:
    return ActionResult("fernet-tokens", outcome, None, **fields)


# --- what differs before, what was done after ----------------------------------------------


def test_a_node_line_after_a_push_says_what_was_done() -> None:
    nodes = {
        "node1": NodeOutcome("updated", duration=1.25, changes=PUSHED),
        "node2": NodeOutcome("repaired", duration=0.5, changes={"mode": [1, "directory"]}),
        "node3": NodeOutcome("in_sync", duration=0.25),
    }
    assert render.node_table(nodes) == [
        "  node1  updated     1.25s  added key 6, replaced key 0, removed keys 1 and 2",
        "  node2  repaired    0.50s  fixed mode and owner of key 1 and the directory",
        "  node3  in_sync     0.25s  ",
    ]


def test_a_node_line_before_an_action_says_what_differs() -> None:
    nodes = {"node1": NodeOutcome("differs", duration=0.5, changes=PUSHED)}
    assert render.node_table(nodes) == [
        "  node1  differs     0.50s  missing key 6, different key 0, extra keys 1 and 2"
    ]
    preview = {
        "node1": {"primary": 9, **PUSHED},
        "node2": {"primary": 9},
        "node3": {"missing": [3, 4, 5]},
        "node4": {},
        "node5": {"error": "connection refused"},
    }
    lines = render.action("fernet-tokens", "sync", result("dry-run", preview=preview))
    assert lines == [
        "fernet-tokens: sync dry-run",
        "  node1: differs from the key set with primary 9: missing key 6, different key 0, "
        "extra keys 1 and 2",
        "  node2: holds the key set with primary 9",
        "  node3: differs: missing keys 3, 4 and 5",
        "  node4: nothing to change",
        "  node5: error connection refused",
    ]


def test_odd_entries_and_more_say_what_was_done_about_them() -> None:
    changes = {
        "entries": [{"name": "'099'", "problem": "non-canonical name"}],
        "unlisted": 1,
    }
    assert describe_changes(changes) == "'099': non-canonical name, and 1 more entry"
    assert describe_changes(changes, done=True) == (
        "fixed '099': non-canonical name, and 1 more entry"
    )


def test_a_report_shows_a_pushed_node_as_done() -> None:
    document = {
        "id": "r1",
        "expected": {"0": DIGEST},
        "nodes": {"node1": {"status": "updated", "duration": 1.0, "changes": PUSHED}},
    }
    lines = render.report_lines(document)
    assert lines[-1] == (
        "  node1  updated      1.00  added key 6, replaced key 0, removed keys 1 and 2"
    )


# --- rotations ----------------------------------------------------------------------------


def test_a_deferred_rotation_says_nothing_changed_and_what_would_have() -> None:
    deferred = result(
        Outcome.DEFERRED,
        rotation=PLAN,
        messages=("deferred: not every node could be verified: node2 (unreachable)",),
    )
    assert render.rotation("fernet-tokens", deferred) == [
        "fernet-tokens: rotation deferred, nothing changed: it would have promoted staged key "
        "0 to primary 9, staged a new key 0 and retired keys 7 and 8",
        "fernet-tokens: deferred: not every node could be verified: node2 (unreachable)",
        "fernet-tokens: outcome deferred",
    ]


def test_a_rotation_says_what_it_did_or_would_do() -> None:
    done = result(Outcome.PARTIAL, rotation=PLAN, promoted=True)  # the nodes lag, not the keys
    assert render.rotation("fernet-tokens", done)[0] == (
        "fernet-tokens: promoted staged key 0 to primary 9, staged a new key 0 and retired "
        "keys 7 and 8"
    )
    one = RotationPlan(new_primary=3, demoted=2, retire=(1,), keep=(), resulting=(0, 2, 3))
    assert render.rotation("fernet-tokens", result("dry-run", rotation=one))[0] == (
        "fernet-tokens: would promote staged key 0 to primary 3, stage a new key 0 and retire key 1"
    )
    none = RotationPlan(new_primary=2, demoted=1, retire=(), keep=(), resulting=(0, 1, 2))
    stopped = result(Outcome.FAILED, rotation=none)  # a before_rotate hook refused
    assert render.rotation("fernet-tokens", stopped)[0] == (
        "fernet-tokens: rotation failed, nothing changed: it would have promoted staged key 0 "
        "to primary 2, staged a new key 0 and retired no key"
    )


# --- one vocabulary, one time form, one digest prefix ------------------------------------


def test_status_shows_what_a_node_is_not_what_the_last_action_did() -> None:
    """``updated`` and ``repaired`` say what an action did; the node is then ``in_sync``."""
    for status in ("in_sync", "updated", "repaired"):
        assert standing(NodeRecord(status, generation=4), 4) == "in_sync"
    assert standing(NodeRecord("updated", generation=3), 4) == "stale"


def test_status_shows_every_time_as_rfc3339(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ``status`` with a daemon description (epoch seconds, as the daemon writes it):
    every time on every line is RFC 3339 UTC, none in another form."""
    config = write_config(tmp_path)
    assert main(["-c", str(config), "init"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    job = {"action": "check", "trigger": "cron", "outcome": "ok", "ended_at": MOMENT}
    info = {"pid": os.getpid(), "started_at": MOMENT, "last_job": job, "next_rotation": {}}
    (tmp_path / "state" / "daemon.json").write_text(json.dumps(info))
    capsys.readouterr()
    main(["-c", str(config), "status"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        f"daemon: running as PID {os.getpid()} since 2026-11-22T20:00:00Z",
        "  last action: periodic verify ok at 2026-11-22T20:00:00Z",
    ]
    text = "\n".join(lines)
    assert re.findall(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?[^\s,;)]*", text) == re.findall(
        RFC3339, text
    ), text
    assert len(re.findall(RFC3339, text)) >= 4, text  # the daemon's two, rotation, demotion


def test_one_digest_prefix_length_everywhere(tmp_path: Path) -> None:
    status = {
        "name": "fernet-tokens",
        "kind": "fernet",
        "path": "/etc/keystone/fernet-keys",
        "generation": 1,
        "last_rotation_at": None,
        "next_rotation_at": None,
        "keys": [{"index": 0, "role": "staged", "sha256": DIGEST, "demoted_at": None}],
        "problems": [],
        "warnings": [],
    }
    assert viewlines.status_lines(status)[1] == "      0 staged    sha256:9f2c03ab77d1  demoted -"
    report = render.report_lines({"id": "r1", "expected": {"0": DIGEST}})
    assert report[-1] == "  expected keys: 0:9f2c03ab77d1"
    (tmp_path / "0").write_bytes(b"key")
    shown = snapshot(tmp_path).split(":", 1)[1]
    assert len(shown) == DIGEST_SHOWN == len(short_digest(DIGEST)) == 12


# --- plurals ------------------------------------------------------------------------------


def test_counts_take_the_word_that_fits() -> None:
    assert [plural(n, "repository") for n in (0, 1, 2)] == [
        "0 repositories",
        "1 repository",
        "2 repositories",
    ]
    assert [plural(n, "node") for n in (1, 2)] == ["1 node", "2 nodes"]
    assert plural(1, "more entry", "more entries") == "1 more entry"
    assert plural(2, "day") == "2 days"  # a vowel before the y
    assert named("key", ["4"]) == "key 4"
    assert named("node", ["node1", "node2", "node3"]) == "nodes node1, node2 and node3"
    check = ClockCheck(MOMENT, None, skew=-301.0, observed=1, max_skew=300.0, needed=1)
    assert check.reason == (
        "the controller's clock is 301s behind the median clock of 1 node (clock.max_skew is 300s)"
    )


def test_check_config_counts_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    two = config.read_text() + (
        "  - name: credential-keys\n"
        "    kind: credential\n"
        f"    path: {tmp_path}/credential\n"
        "    max_active_keys: 3\n"
        '    schedule: "0 0 1 * *"\n'
    )
    config.write_text(two)
    capsys.readouterr()
    assert main(["-c", str(config), "check-config"]) == 0
    # the two warnings: fernet-tokens' sizing lint, credential-keys without after_rotate
    assert capsys.readouterr().out == f"OK: {config}: 2 repositories, 0 nodes, 2 warnings\n"
    config.write_text(config.read_text().replace("max_active_keys: 3\n", "max_active_keys: 5\n", 1))
    assert main(["-c", str(config), "check-config"]) == 0
    assert capsys.readouterr().out == f"OK: {config}: 2 repositories, 0 nodes, 1 warning\n"


# --- the daemon's log lines ---------------------------------------------------------------


def record_of(message: str, *args: Any) -> logging.LogRecord:
    record = logging.LogRecord("keysyncd.commands.daemon", logging.INFO, "", 0, message, args, None)
    record.created = MOMENT
    return record


def test_the_periodic_verify_is_logged_as_what_it_is(caplog: pytest.LogCaptureFixture) -> None:
    assert job_name("check", "cron") == "periodic verify"
    assert job_name("rotate", "cron") == "rotate (cron)"
    daemon = cast(Daemon, SimpleNamespace(last_error=None))
    run = RepositoryRun("fernet-tokens", (result(Outcome.OK),))
    with caplog.at_level(logging.INFO, logger="keysyncd.commands.daemon"):
        assert Daemon._record(daemon, Job("check", None, "cron"), [run]) == Outcome.OK
    assert [r.getMessage() for r in caplog.records] == ["periodic verify of fernet-tokens: ok"]
    with open(os.devnull, "w") as stream:
        line = daemon_formatter(stream, {}).format(caplog.records[0])
    assert re.fullmatch(
        rf"{RFC3339} INFO keysyncd.commands.daemon: periodic verify of fernet-tokens: ok", line
    ), line


def test_a_text_log_line_with_and_without_the_journal(tmp_path: Path) -> None:
    """Under systemd, JOURNAL_STREAM names the stream connected to journald (device:inode):
    journald times each line, so keysyncd writes none, only the ``<N>`` priority. Anywhere
    else the line starts with its RFC 3339 UTC time, and a child whose stderr went elsewhere
    (it inherited the variable) times its lines too."""
    record = record_of("periodic verify of %s: %s", "fernet-tokens", "ok")
    with open(tmp_path / "stderr", "w") as stream:
        found = os.fstat(stream.fileno())
        journal = {"JOURNAL_STREAM": f"{found.st_dev}:{found.st_ino}"}
        assert to_journal(stream, journal)
        assert daemon_formatter(stream, journal).format(record) == (
            "<6>keysyncd.commands.daemon: periodic verify of fernet-tokens: ok"
        )
        assert daemon_formatter(stream, {}).format(record) == (
            "2026-11-22T20:00:00Z INFO keysyncd.commands.daemon: periodic verify of "
            "fernet-tokens: ok"
        )
        with open(tmp_path / "elsewhere", "w") as elsewhere:
            assert not to_journal(elsewhere, journal)
            assert (
                daemon_formatter(elsewhere, journal)
                .format(record)
                .startswith("2026-11-22T20:00:00Z INFO ")
            )
        assert not to_journal(stream, {"JOURNAL_STREAM": "garbage"})


def test_a_dry_run_that_would_defer_says_nothing_would_change() -> None:
    from keysyncd.actions.context import DRY_RUN, ActionResult
    from keysyncd.commands import render
    from keysyncd.core.policy import RotationPlan
    from keysyncd.core.vocabulary import Outcome

    plan = RotationPlan(9, 8, (7,), (), (0, 8, 9))
    result = ActionResult("fernet-tokens", DRY_RUN, None, {}, (), rotation=plan)
    deferred = replace(result, would=Outcome.DEFERRED)
    assert render.rotation("fernet-tokens", deferred)[0] == (
        "fernet-tokens: would defer, nothing would change: it would have promoted staged key 0 "
        "to primary 9, staged a new key 0 and retired key 7"
    )
    going = replace(result, would=Outcome.OK)
    assert render.rotation("fernet-tokens", going)[0] == (
        "fernet-tokens: would promote staged key 0 to primary 9, stage a new key 0 and retire key 7"
    )


def test_a_jws_push_says_what_it_installed_and_created() -> None:
    from keysyncd.core.changewords import describe_changes

    changes = {"private": "missing", "directories": ["private: missing", "public: missing"]}
    assert describe_changes(changes, done=True) == (
        "installed private.pem, created directories: private, public"
    )
    assert describe_changes(changes) == (
        "private.pem missing, directories: private: missing and public: missing"
    )
    wrong = {"private": "wrong mode or owner", "directories": ["public: mode"]}
    assert describe_changes(wrong, done=True) == (
        "replaced private.pem: wrong mode or owner, fixed directories: public: mode"
    )
