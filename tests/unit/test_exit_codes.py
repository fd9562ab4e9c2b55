"""One exit-code table, each row exercised, and refusals that say what to do next.

Commands run in-process through ``keysyncd.commands.cli.main``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from keysyncd.commands.cli import main
from keysyncd.commands.exits import MEANINGS, Exit, exit_code_lines
from keysyncd.core.journal import HookBlock, NodeRecord
from keysyncd.io.local.lock import exclusive
from tests.local_cli import ROOT, cli, edit_state, write_config

DAY = 86400.0


# --- the exit-code table: the same in --help, the README and the code; each row ---------------


def test_the_exit_code_table_is_the_same_in_help_readme_and_man_page(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert [int(code) for code in MEANINGS] == [0, 1, 2, 130]
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert "\n".join(exit_code_lines()) in help_text
    readme = (ROOT / "README.md").read_text()
    for code, meaning in MEANINGS.items():
        assert f"| {int(code)} | {meaning} |" in readme, code
    from keysyncd.commands.docs import manpage

    page = manpage()
    for code in MEANINGS:
        assert f".TP\n\\fB{int(code)}\\fR\n" in page


def test_exit_0_when_all_is_well(initialised: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "-c", str(initialised), "status")[0] == Exit.DONE
    assert cli(capsys, "-c", str(initialised), "rotate")[0] == Exit.DONE


def test_exit_1_when_a_node_failed(dead_node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "-c", str(dead_node), "init")
    assert code == Exit.ATTENTION, err
    assert "ctl1" in out and "unreachable" in out
    code, out, _ = cli(capsys, "-c", str(dead_node), "sync")
    assert code == Exit.ATTENTION
    code, out, _ = cli(capsys, "-c", str(dead_node), "status")
    assert code == Exit.ATTENTION
    # issue 24: a sentence, not "node ctl1 is failed"
    assert "ATTENTION: fernet-tokens: node ctl1 failed its last check: unreachable" in out


def keys_named(document: Any, name: str) -> int:
    """Return how many mappings in ``document`` (at any depth) have a key ``name``."""
    if isinstance(document, dict):
        inner = sum(keys_named(value, name) for value in document.values())
        return inner + (name in document)
    if isinstance(document, list):
        return sum(keys_named(item, name) for item in document)
    return 0


def test_verify_json_lists_each_node_once_with_its_report_id(
    dead_node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "-c", str(dead_node), "init")
    code, out, _ = cli(capsys, "-c", str(dead_node), "verify", "--json")
    assert code == Exit.ATTENTION
    document = json.loads(out)
    assert keys_named(document, "ctl1") == 1, document
    [repository] = document["repositories"]
    [result] = repository["results"]
    assert result["nodes"]["ctl1"]["status"] == "failed"
    [summary] = document["reports"]  # the report, but for its nodes
    assert summary["id"] == result["report_id"] and "nodes" not in summary
    # the report id leads to the whole report, which has the node too
    code, out, _ = cli(
        capsys, "-c", str(dead_node), "report", "show", result["report_id"], "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert report["id"] == result["report_id"] and report["action"] == "verify"
    assert report["nodes"]["ctl1"]["status"] == "failed"


def test_exit_1_when_a_rotation_is_deferred(
    dead_node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "-c", str(dead_node), "init")
    keys = sorted(os.listdir(dead_node.parent / "keys"))
    code, out, _ = cli(capsys, "-c", str(dead_node), "rotate")
    assert code == Exit.ATTENTION
    assert "outcome deferred" in out
    assert sorted(os.listdir(dead_node.parent / "keys")) == keys, "nothing promoted"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"nodes": {"ctl1": NodeRecord(status="differs")}},
            "node ctl1 differs from the controller",
        ),
        ({"nodes": {}}, "node ctl1 was never checked"),
        # verified holding generation 0 while the controller is at 1 (issue 24)
        (
            {"nodes": {"ctl1": NodeRecord(status="in_sync", generation=0)}},
            "node ctl1 is stale: last verified holding generation 0; the controller is at "
            "generation 1",
        ),
        (
            {"hook_block": HookBlock(("keystone-manage", "credential_migrate"), 3, 1.0)},
            "rotation blocked by a failed after_rotate hook",
        ),
        ({"last_rotation_at": time.time() - 3 * DAY}, "rotation overdue: it was due at "),
    ],
    ids=["drift", "never-checked", "stale", "blocked", "overdue"],
)
def test_status_exits_1_when_anything_needs_attention(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], reason: str
) -> None:
    config = write_config(tmp_path)
    assert cli(capsys, "-c", str(config), "init")[0] == 0
    in_sync = NodeRecord(status="in_sync", last_verified_at=time.time(), generation=1)
    config = write_config(
        tmp_path, [{"name": "ctl1", "host": "192.0.2.11"}], known_hosts=str(tmp_path / "kh")
    )
    edit_state(config, nodes={"ctl1": in_sync})
    assert cli(capsys, "-c", str(config), "status")[0] == Exit.DONE
    edit_state(config, **changes)
    code, out, _ = cli(capsys, "-c", str(config), "status", "--json")
    assert code == Exit.ATTENTION
    [attention] = json.loads(out)["attention"]
    assert attention.startswith(f"fernet-tokens: {reason}"), attention


def test_exit_1_on_a_refusal_that_says_what_to_do(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "-c", str(initialised), "init")
    assert code == Exit.ATTENTION
    assert "refusing to initialise" in err


def test_exit_1_when_the_lock_stays_busy_and_the_message_mentions_wait(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with exclusive(initialised.parent / "state", "test"):
        code, out, err = cli(capsys, "-c", str(initialised), "rotate")
        assert code == Exit.ATTENTION and out == ""
        assert "another keysyncd holds the lock" in err
        assert "(test)" in err and "pass --wait SECONDS" in err
        code, _, err = cli(capsys, "-c", str(initialised), "sync", "--wait", "0.2")
        assert code == Exit.ATTENTION
        assert "waiting up to 0.2s for PID" in err
        assert "after waiting 0.2s" in err and "pass a longer --wait" in err


def test_exit_1_when_the_report_chain_is_broken(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "-c", str(initialised), "rotate")[0] == 0
    first = sorted((initialised.parent / "state" / "reports").glob("*.json"))[0]
    first.unlink()
    assert cli(capsys, "-c", str(initialised), "report", "verify-chain")[0] == Exit.ATTENTION


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["rotate", "--repo", "nope"], "no repository named 'nope'"),
        (["sync", "--node", "nope"], "no node named 'nope'"),
        (["report", "show", "nope"], "no report with id 'nope'"),
        (["report", "list", "--since", "yesterday"], "not a date or an age: 'yesterday'"),
        (["verify", "--wait", "-1"], "must be between 0 and 1e9 seconds"),
    ],
)
def test_exit_2_on_bad_usage(
    initialised: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = cli(capsys, "-c", str(initialised), *argv)
    assert code == Exit.USAGE
    assert out == "" and message in err and "Traceback" not in err


COMMANDS = (
    "'check-config', 'init', 'adopt', 'rotate', 'sync', 'verify', 'confirm-migration', 'revoke', "
    "'status', 'plan', 'report', 'run', 'completion', 'manpage'"
)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["rotat"],
            "argument COMMAND: invalid choice: 'rotat', did you mean 'rotate'? "
            f"(choose from {COMMANDS})",
        ),
        (
            ["report", "lst"],
            "report: argument SUBCOMMAND: invalid choice: 'lst', did you mean 'list'? "
            "(choose from 'list', 'show', 'verify-chain')",
        ),
        (
            ["report", "list", "--outcome", "partal"],
            "report list: argument --outcome: invalid choice: 'partal', did you mean "
            "'partial'? (choose from 'ok', 'partial', 'failed', 'deferred')",
        ),
        (["rotate", "--dryrun"], "unrecognized arguments: --dryrun (did you mean --dry-run?)"),
        (["--jsn", "status"], "unrecognized arguments: --jsn (did you mean --json?)"),
        (["sync", "--nodes=node2"], "unrecognized arguments: --nodes=node2 (did you mean --node?)"),
        # a prefix of an option is no abbreviation of it: "rotate --fo" must never force
        (["rotate", "--fo"], "unrecognized arguments: --fo (did you mean --force?)"),
        (["sync", "--forc"], "unrecognized arguments: --forc (did you mean --force?)"),
        # nothing close: no guess
        (["status", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["rotate", "-x"], "unrecognized arguments: -x"),
    ],
)
def test_a_mistyped_command_or_option_gets_a_suggestion(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    code, out, err = cli(capsys, "-c", str(config), *argv)
    assert (code, out) == (Exit.USAGE, "")
    assert err.splitlines()[-1] == f"keysyncd: error: {line}"
    assert err.count("did you mean") == line.count("did you mean")  # one line says it
    code, out, _ = cli(capsys, "-c", str(config), *argv, "--json")
    assert json.loads(out) == {"error": line, "errors": [line], "exit_code": 2}


def test_a_logged_error_has_the_prefix_of_a_printed_one(
    initialised: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One error prefix: an error logged (here the internal-error line) reads like one the
    command line prints itself (``keysyncd: error: ...``)."""

    def broken(*_: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("keysyncd.commands.views.cmd_status", broken)
    code, out, err = cli(capsys, "-c", str(initialised), "status")
    assert (code, out) == (Exit.ATTENTION, "")
    assert err.splitlines() == [
        "keysyncd: error: internal error (run with --debug for the traceback)"
    ]
    code, _, err = cli(capsys, "-c", str(initialised), "rotate", "--repo", "nope")
    assert err.splitlines() == [
        "keysyncd: error: no repository named 'nope' (configured: fernet-tokens)"
    ]


def test_exit_2_on_a_bad_config_or_an_unsafe_local_file(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (initialised.parent / "state").chmod(0o777)
    code, _, err = cli(capsys, "-c", str(initialised), "status")
    assert code == Exit.USAGE and "is unsafe" in err
    (initialised.parent / "state").chmod(0o700)
    initialised.write_text(
        initialised.read_text().replace("max_active_keys: 5", "max_active_keys: 1")
    )
    code, _, err = cli(capsys, "-c", str(initialised), "status")
    assert code == Exit.USAGE and "At 'repositories[0].max_active_keys'" in err
