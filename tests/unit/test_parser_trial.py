"""``parse`` first tries a parser of the named command's group alone (a start-up cost:
tests/unit/test_startup_time.py); whatever that one cannot parse, the whole parser answers.
Proved here: the same Namespace as the whole parser for every command, the trial taken
where it should be and not taken for help, the version or a line whose command is not
plain to see, and the same words on stderr for every usage error. And the help formatters'
width without shutil: the same as argparse's, so the same help text.
"""

from __future__ import annotations

import argparse
import shutil

import pytest

from keysyncd.commands import parser as grammar
from keysyncd.commands.parser import (
    GROUPS,
    UsageProblem,
    build_parser,
    named_group,
    parse,
    subcommands,
    terminal_columns,
)

COMMAND_GROUPS = {name: group for group, names in GROUPS.items() for name in names}
LINES = [
    ["check-config"],
    ["check-config", "--strict", "--json"],
    ["-c", "/etc/k.yaml", "status"],
    ["--config=/etc/k.yaml", "-v", "status", "--repo", "fernet-tokens", "-v"],
    ["--json", "-q", "plan", "-c", "/tmp/x.yaml"],
    ["--debug", "init", "--dry-run"],
    ["adopt", "--from", "ctl1", "--wait", "5"],
    ["rotate", "--dry-run", "--force"],
    ["sync", "--node", "ctl2"],
    ["verify", "--wait", "0"],
    ["confirm-migration", "--repo", "credential", "--primary", "3"],
    ["report", "list", "--outcome", "failed", "--since", "2026-11-22", "--json"],
    ["report", "show", "20261122T100000000000Z-rotate-abcdef"],
    ["report", "verify-chain"],
    ["run"],
    ["run", "--log-format", "json"],
    ["completion", "bash"],
    ["manpage"],
]


def untried(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Return what ``parse`` makes of ``argv`` with no trial: the whole parser's answer."""
    with monkeypatch.context() as patch:
        patch.setattr(grammar, "named_group", lambda argv: None)
        return parse(argv)


@pytest.mark.parametrize("argv", LINES, ids=" ".join)
def test_the_trial_parses_as_the_whole_parser_does(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    command = next(word for word in argv if word in COMMAND_GROUPS)
    assert named_group(argv) is COMMAND_GROUPS[command]
    built: list[object] = []
    with monkeypatch.context() as patch:  # the trial answers: the whole parser is not built
        patch.setattr(grammar, "build_parser", lambda *a: built.append(a) or build_parser(*a))
        tried = parse(argv)
    assert [len(arguments) for arguments in built] == [2]
    assert vars(tried) == vars(untried(argv, monkeypatch))


def test_every_command_is_in_the_group_that_adds_it() -> None:
    assert list(COMMAND_GROUPS) == list(subcommands(build_parser()))  # in --help's order
    for group, names in GROUPS.items():
        assert list(subcommands(build_parser({group: names}))) == list(names)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["-h"],
        ["status", "-h"],
        ["status", "-vh"],
        ["status", "--help"],
        ["--version"],
        ["-x", "status"],
        ["-vq", "status"],
        ["--", "status"],
        ["-c"],
        ["statsu"],
        ["--repo", "status"],
    ],
    ids=lambda argv: " ".join(argv) or "nothing",
)
def test_help_the_version_and_unclear_lines_go_to_the_whole_parser(argv: list[str]) -> None:
    assert named_group(argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--bogus"],
        ["status", "--rep", "x"],
        ["status", "extra"],
        ["-c", "/x", "rotate", "status", "--fo"],
        ["rotate", "--dry-run", "--fo"],
        ["report", "lst"],
        ["report", "list", "--since", "soon"],
        ["verify", "--wait", "never"],
        ["adopt"],
        ["completion", "fish"],
        ["run", "--log-format", "xml"],
    ],
    ids=" ".join,
)
def test_a_usage_error_reads_as_the_whole_parser_says_it(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert named_group(argv) is not None  # the trial is tried, and fails
    with pytest.raises(UsageProblem) as whole_problem:
        untried(argv, monkeypatch)
    expected = capsys.readouterr()
    with pytest.raises(UsageProblem) as problem:
        parse(argv)
    assert str(problem.value) == str(whole_problem.value)
    assert capsys.readouterr() == expected  # one usage line, the whole parser's


@pytest.mark.parametrize("columns", [None, "100", "30", "0", "-5", "wide"])
def test_the_help_width_is_what_shutil_would_give(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns


@pytest.mark.parametrize("columns", ["100", "52"])
def test_every_help_text_is_argparse_s_own(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", columns)

    def helps() -> list[str]:
        top = build_parser()
        inner = [sub for _, sub in subcommands(top).values()]
        inner += [sub for parser in inner for _, sub in subcommands(parser).values()]
        return [parser.format_help() for parser in (top, *inner)]

    ours = helps()
    monkeypatch.setattr(grammar, "HelpFormatter", argparse.HelpFormatter)
    monkeypatch.setattr(
        grammar, "RawDescriptionHelpFormatter", argparse.RawDescriptionHelpFormatter
    )
    assert ours == helps()
    assert len(ours) > len(GROUPS)
