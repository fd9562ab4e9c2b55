"""commands/parser.HelpFormatter is a drop-in for argparse's: it takes argparse's own keyword
names (indent_increment, max_help_position), which once collided with renamed parameters
(TypeError, or "length of metavar tuple does not match nargs" through add_argument)."""

from __future__ import annotations

import argparse

import pytest

from keysyncd.commands import parser as grammar


@pytest.mark.parametrize(
    "keywords",
    [{"max_help_position": 30}, {"indent_increment": 4}],
    ids=["max_help_position", "indent_increment"],
)
def test_the_formatter_takes_argparse_s_keywords(keywords: dict[str, int]) -> None:
    ours = grammar.HelpFormatter("keysyncd", width=100, **keywords)
    theirs = argparse.HelpFormatter("keysyncd", width=100, **keywords)
    settings = ("_prog", "_indent_increment", "_max_help_position", "_width")
    assert [getattr(ours, name) for name in settings] == [
        getattr(theirs, name) for name in settings
    ]


# argparse.add_argument turns the TypeError into "length of metavar tuple does not match nargs"
def test_a_parser_with_a_wider_help_column_formats_its_help() -> None:
    parser = grammar.Parser(
        prog="keysyncd",
        formatter_class=lambda prog: grammar.HelpFormatter(prog, max_help_position=40),
    )
    parser.add_argument("--repo", help="only this repository")
    assert "--repo" in parser.format_help()
