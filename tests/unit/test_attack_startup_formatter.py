"""Attack on 79f1701 (commands/parser.HelpFormatter): the formatter that replaces argparse's
renames its parameters (indent, position for indent_increment, max_help_position), so the
keyword spelling of argparse's own signature fails with TypeError ("got multiple values"):
the class is not the drop-in argparse.HelpFormatter it stands in for (mypy cannot see it:
``**more: Any`` takes any keyword)."""

from __future__ import annotations

import argparse

import pytest

from keysyncd.commands import parser as grammar

REASON = (
    "parser.HelpFormatter.__init__ names its parameters indent/position: argparse's keywords "
    "indent_increment=/max_help_position= land in **more and collide (TypeError)"
)


@pytest.mark.xfail(strict=True, raises=TypeError, reason=REASON)
@pytest.mark.parametrize(
    "keywords",
    [{"max_help_position": 30}, {"indent_increment": 4}],
    ids=["max_help_position", "indent_increment"],
)
def test_the_formatter_takes_argparse_s_keywords(keywords: dict[str, int]) -> None:
    ours = grammar.HelpFormatter("keysyncd", width=100, **keywords)
    theirs = argparse.HelpFormatter("keysyncd", width=100, **keywords)
    assert vars(ours) == vars(theirs)


# argparse.add_argument turns the TypeError into "length of metavar tuple does not match nargs"
@pytest.mark.xfail(strict=True, raises=ValueError, reason=REASON)
def test_a_parser_with_a_wider_help_column_formats_its_help() -> None:
    parser = grammar.Parser(
        prog="keysyncd",
        formatter_class=lambda prog: grammar.HelpFormatter(prog, max_help_position=40),
    )
    parser.add_argument("--repo", help="only this repository")
    assert "--repo" in parser.format_help()
