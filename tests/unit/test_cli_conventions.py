"""The command line's conventions: global options anywhere, --json purity on every command,
help text everywhere, RFC 3339 times in all JSON, --quiet, and the report id printed.

Commands run in-process through ``keysyncd.commands.cli.main``. The exit codes:
test_exit_codes.py; a real signal or a second process: test_cli_processes.py.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from keysyncd.commands.cli import main
from keysyncd.commands.parser import build_parser, parse, subcommands
from tests.local_cli import ROOT, cli

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


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
