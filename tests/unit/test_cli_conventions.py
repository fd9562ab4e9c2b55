"""The command line's conventions: global options anywhere, --json purity on every command,
one exit-code table (each row exercised), help text everywhere, RFC 3339 times in all JSON,
verify waiting for a running action, and refusals that say what to do next.

Commands run in-process through ``keysyncd.commands.cli.main``, except where a real signal or
a second process is the point (Ctrl-C, a busy lock held while verify waits).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keysyncd.commands.cli import main
from keysyncd.commands.exits import MEANINGS, Exit, exit_code_lines
from keysyncd.commands.parser import build_parser, parse, subcommands
from keysyncd.core.journal import HookBlock, NodeRecord
from keysyncd.io.local.lock import exclusive
from keysyncd.io.local.state import load_state, save_state
from tests import streams
from tests.unit.test_check_config import host_key_line

ROOT = Path(__file__).resolve().parents[2]
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
DAY = 86400.0


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """cli.main() replaces the root logger's handlers with one bound to the captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write_config(root: Path, nodes: list[dict[str, Any]] | None = None, **ssh: Any) -> Path:
    """A controller with one repository (sized for its daily schedule), optionally nodes."""
    data: dict[str, Any] = {
        "state_dir": str(root / "state"),
        "repositories": [
            {"name": "fernet-tokens", "path": str(root / "keys"), "max_active_keys": 5}
        ],
    }
    if nodes:
        data["ssh"] = {"user": "keystone", "connect_timeout": 2, **ssh}
        data["nodes"] = nodes
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def initialised(config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert cli(capsys, "-c", str(config), "init")[0] == 0
    return config


def closed_port() -> int:
    """Return a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def dead_node(tmp_path: Path) -> Path:
    """A controller whose one node is known (known_hosts, identity) but not listening."""
    identity = tmp_path / "id_ed25519"
    identity.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    identity.chmod(0o600)
    port = closed_port()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(host_key_line(f"[127.0.0.1]:{port}") + "\n")
    return write_config(
        tmp_path,
        [{"name": "ctl1", "host": "127.0.0.1", "port": port}],
        identity_file=str(identity),
        known_hosts=str(known_hosts),
    )


# --- global options before or after the command ------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-c", "{config}", "check-config"],
        ["check-config", "-c", "{config}"],
        ["check-config", "--config={config}"],
        ["--json", "status", "-c", "{config}"],
        ["status", "--json", "-c", "{config}"],
        ["-q", "plan", "--config", "{config}"],
        ["plan", "-q", "-c", "{config}", "--debug"],
        ["report", "-c", "{config}", "list", "--json"],
        ["report", "list", "-c", "{config}", "-v"],
        ["rotate", "--dry-run", "-c", "{config}", "--json"],
    ],
)
def test_global_options_work_before_or_after_the_command(
    initialised: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = cli(capsys, *(arg.format(config=initialised) for arg in argv))
    assert code == 0, err
    if "--json" in argv:
        json.loads(out)
    if "-q" in argv:
        assert out == ""


def test_options_after_the_command_win_and_counts_add_up(tmp_path: Path) -> None:
    args = parse(["-c", "first.yaml", "-v", "status", "-c", "second.yaml", "-v", "--json"])
    assert (args.config, args.verbose, args.json, args.quiet) == (Path("second.yaml"), 2, True, 0)
    assert not any(name.startswith("sub_") for name in vars(args))
    args = parse(["report", "-q", "show", "ID", "--debug"])
    assert (args.quiet, args.debug, args.id) == (1, True, "ID")


# --- --json: one JSON document and nothing else on stdout, for every command -----------------


JSON_COMMANDS = [
    ["check-config"],
    ["init", "--dry-run"],
    ["rotate", "--dry-run"],
    ["rotate"],
    ["sync", "--dry-run"],
    ["sync"],
    ["verify"],
    ["status"],
    ["plan"],
    ["report", "list"],
    ["report", "show", "{report}"],
    ["report", "verify-chain"],
    ["adopt", "--from", "ctl9"],  # no such node: the error is a JSON document too
    ["rotate", "--repo", "nope"],
    ["status", "--no-such-option"],  # a usage error argparse finds: still a JSON document
    ["init"],  # a refusal: the keys exist
]


@pytest.mark.parametrize("argv", JSON_COMMANDS, ids=" ".join)
def test_json_prints_one_document_and_nothing_else(
    initialised: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    report = sorted((initialised.parent / "state" / "reports").glob("*-init-*.json"))[0].stem
    code, out, _ = cli(
        capsys, "-c", str(initialised), *(a.format(report=report) for a in argv), "--json"
    )
    document = json.loads(out)  # the whole of stdout is one JSON document
    assert isinstance(document, dict)
    if code != 0:
        assert document["exit_code"] == code and document["errors"], document
    assert_times_are_rfc3339(document)


def test_json_error_when_the_config_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "-c", str(tmp_path / "missing.yaml"), "status", "--json")
    assert code == 2
    assert json.loads(out) == {
        "error": f"{tmp_path / 'missing.yaml'}: config file not found",
        "errors": [f"{tmp_path / 'missing.yaml'}: config file not found"],
        "exit_code": 2,
    }
    assert err == f"keysyncd: config error: {tmp_path / 'missing.yaml'}: config file not found\n"


@pytest.mark.parametrize("argv", [["run"], ["completion", "bash"], ["manpage"]])
def test_json_on_a_command_without_a_result_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = cli(capsys, "-c", str(config), *argv, "--json")
    assert code == 2
    assert json.loads(out)["exit_code"] == 2
    assert "prints no result" in err


def assert_times_are_rfc3339(document: Any, key: str = "") -> None:
    """Every ``*_at`` value in ``document`` is None or an RFC 3339 UTC string."""
    if isinstance(document, dict):
        for name, value in document.items():
            assert_times_are_rfc3339(value, str(name))
    elif isinstance(document, list):
        for item in document:
            assert_times_are_rfc3339(item, key)
    elif key.endswith("_at") and document is not None:
        assert isinstance(document, str) and RFC3339.fullmatch(document), (key, document)


def test_every_time_in_json_is_rfc3339(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "-c", str(initialised), "rotate")[0] == 0
    documents = []
    for argv in (["status"], ["plan"], ["report", "list"], ["rotate", "--dry-run"]):
        code, out, _ = cli(capsys, "-c", str(initialised), *argv, "--json")
        assert code == 0
        documents.append(json.loads(out))
    status, plan, listing, _ = documents
    for document in documents:
        assert_times_are_rfc3339(document)
    assert RFC3339.fullmatch(status["repositories"][0]["last_rotation_at"])
    assert all(RFC3339.fullmatch(at) for at in plan["repositories"][0]["rotations"])
    assert [r["schema_version"] for r in listing["reports"]] == [2, 2]


def test_reports_follow_schema_2_and_schema_1_stays_documented(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    old = json.loads((ROOT / "schemas" / "report.v1.schema.json").read_text())
    for each in (schema, old):
        jsonschema.Draft202012Validator.check_schema(each)
    assert schema["properties"]["schema_version"] == {
        "const": 2,
        "description": "Bumped on any incompatible change (2: RFC 3339 times).",
    }
    assert old["properties"]["schema_version"]["const"] == 1
    assert cli(capsys, "-c", str(initialised), "rotate")[0] == 0
    for path in sorted((initialised.parent / "state" / "reports").glob("*.json")):
        report = json.loads(path.read_text())
        jsonschema.validate(report, schema)
        assert RFC3339.fullmatch(report["started_at"]) and RFC3339.fullmatch(report["ended_at"])
        v1 = {**report, "schema_version": 1, "started_at": 1.5, "ended_at": 2.5}
        jsonschema.validate(v1, old)  # what reports of schema 1 looked like


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


def edit_state(config: Path, **changes: Any) -> None:
    state = load_state(config.parent / "state", "fernet-tokens")
    save_state(config.parent / "state", dataclasses.replace(state, **changes))


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
    "'check-config', 'init', 'adopt', 'rotate', 'sync', 'verify', 'confirm-migration', "
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


def interactive_signals() -> None:
    """In the child, before exec: SIGINT as a terminal's foreground job has it (default).

    A suite started in the background by a shell (``nohup ... &``, some CI runners) inherits
    SIGINT ignored, and so would keysyncd; Python then installs no KeyboardInterrupt
    handler, and the Ctrl-C test would test the runner, not keysyncd.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def keysyncd(config: Path, *argv: str) -> subprocess.Popen[str]:
    # PYTHONFAULTHANDLER: a SIGABRT makes it print every thread's stack (see stacks_of)
    return subprocess.Popen(
        [sys.executable, "-m", "keysyncd", "-c", str(config), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        preexec_fn=interactive_signals,  # the test runs no threads of its own here
    )


def stacks_of(process: subprocess.Popen[str]) -> str:
    """Return the stderr of a hung ``process`` after SIGABRT: its threads' stacks."""
    process.send_signal(signal.SIGABRT)
    _, err = process.communicate(timeout=30)
    return err


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30.0) -> str:
    """Return the first stderr line of ``process`` containing ``text`` (kill it and fail
    after ``timeout`` seconds)."""
    try:
        seen = streams.read_until(process.stderr, text, timeout, str(process.args))
    except AssertionError:
        process.kill()
        raise
    return next(line for line in seen.splitlines(keepends=True) if text in line)


def test_verify_waits_for_a_running_action_saying_so_and_writes_its_report(
    initialised: Path,
) -> None:
    reports = initialised.parent / "state" / "reports"
    with exclusive(initialised.parent / "state", "rotate"):
        verify = keysyncd(initialised, "verify")
        try:
            line = wait_for_line(verify, "waiting up to")
        except BaseException:
            verify.kill()
            raise
        assert re.fullmatch(r"keysyncd: waiting up to 300s for PID \d+ \(rotate\) .*\n", line)
        assert not list(reports.glob("*-verify-*.json")), "it waits before it acts"
    out, err = verify.communicate(timeout=60)
    assert verify.returncode == 0, err
    assert "fernet-tokens: verify ok (report " in out
    assert len(list(reports.glob("*-verify-*.json"))) == 1


def test_ctrl_c_exits_130(initialised: Path) -> None:
    with exclusive(initialised.parent / "state", "rotate"):
        verify = keysyncd(initialised, "verify", "--json")
        try:
            wait_for_line(verify, "waiting up to")
            verify.send_signal(signal.SIGINT)
            try:
                out, err = verify.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running 60 s after SIGINT; its stacks:\n{stacks_of(verify)}")
        finally:
            verify.kill()
    assert verify.returncode == Exit.INTERRUPTED
    assert err.splitlines()[-1] == "keysyncd: error: interrupted"
    assert json.loads(out)["exit_code"] == 130


# --- output habits ----------------------------------------------------------------------------


def test_rotate_prints_its_report_id(initialised: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "-c", str(initialised), "rotate")
    assert code == 0
    [report_id] = re.findall(r"outcome ok \(report (\S+)\)", out)
    assert (initialised.parent / "state" / "reports" / f"{report_id}.json").is_file()


def test_quiet_prints_nothing_but_errors(
    initialised: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["rotate"], ["status"], ["plan"], ["report", "list"], ["check-config"]):
        assert cli(capsys, "-q", "-c", str(initialised), *argv)[1:] == ("", ""), argv
    code, out, err = cli(capsys, "-q", "-c", str(initialised), "init")
    assert (code, out) == (1, "") and "refusing to initialise" in err


def all_parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    yield "keysyncd", parser
    for name, (_, sub) in subcommands(parser).items():
        yield name, sub
        for child, (_, grandchild) in subcommands(sub).items():
            yield f"{name} {child}", grandchild


def test_every_option_and_command_has_help_text() -> None:
    seen = 0
    for name, parser in all_parsers():
        assert parser.description and parser.description.strip(), name
        for action in parser._actions:
            seen += 1
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    assert seen > 60
    top = build_parser()
    assert top.description is not None
    assert top.description.startswith("keysyncd keeps the key repositories of a fleet")
    assert "JWS" in top.description
    for name, (summary, _) in subcommands(top).items():
        assert summary, name


def test_the_options_the_issue_named_have_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, text in (
        (["adopt", "--help"], "the configured node whose keys become the controller's"),
        (["run", "--help"], "log lines as text"),
        (["report", "list", "--help"], "only reports with this outcome"),
    ):
        assert main(argv) == 0
        assert text in " ".join(capsys.readouterr().out.split())


def test_the_default_config_path_matches_the_config_package() -> None:
    from keysyncd.commands import parser, render
    from keysyncd.config import DEFAULT_PATH

    assert parser.DEFAULT_CONFIG == DEFAULT_PATH
    from keysyncd.actions.context import DRY_RUN

    assert render.DRY_RUN == DRY_RUN
