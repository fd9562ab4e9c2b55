"""Shell completion (shtab, bash and zsh) and the man page, both generated from the parser:
they parse, they complete what the parser accepts, and they name every command and option.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keysyncd.commands.docs import completion_script, manpage
from keysyncd.commands.exits import MEANINGS
from keysyncd.commands.parser import build_parser, subcommands


def keysyncd(*argv: str) -> str:
    """Return the stdout of ``keysyncd ARGV`` run as a command (exit 0 required)."""
    done = subprocess.run(
        [sys.executable, "-m", "keysyncd", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def every_command_and_option() -> tuple[list[str], list[str]]:
    parser = build_parser()
    commands, options = [], []
    for parser_of in [parser, *(sub for _, sub in subcommands(parser).values())]:
        for name, (_, sub) in subcommands(parser_of).items():
            commands.append(name)
            options += [o for a in sub._actions for o in a.option_strings]
    options += [o for a in parser._actions for o in a.option_strings]
    return sorted(set(commands)), sorted(set(options))


def complete_bash(script: Path, *words: str) -> list[str]:
    """Return what bash completes for the last of ``words`` after ``keysyncd``."""
    line = " ".join(["keysyncd", *words])
    program = (
        f"source {script}; COMP_WORDS=(keysyncd {' '.join(words)}); "
        f"COMP_CWORD={len(words)}; COMP_LINE='{line}'; COMP_POINT={len(line)}; "
        '_shtab_keysyncd; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_parses_and_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "keysyncd.bash"
    script.write_text(keysyncd("completion", "bash"))
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=60)
    assert syntax.returncode == 0, syntax.stderr
    assert complete_bash(script, "rep") == ["report"]
    assert complete_bash(script, "report", "ver") == ["verify-chain"]
    assert "--json" in complete_bash(script, "status", "--j")  # global options after commands
    assert complete_bash(script, "rotate", "--dr") == ["--dry-run"]
    assert complete_bash(script, "completion", "z") == ["zsh"]


def test_zsh_completion_names_every_command_and_option() -> None:
    script = completion_script("zsh")
    assert script.startswith("#compdef keysyncd")
    commands, options = every_command_and_option()
    for word in commands + options:
        assert word in script, word
    if shutil.which("zsh"):  # not installed everywhere; the syntax check runs where it is
        syntax = subprocess.run(["zsh", "-n"], input=script.encode(), capture_output=True)
        assert syntax.returncode == 0, syntax.stderr


def test_the_man_page_renders_without_warnings_and_names_everything(tmp_path: Path) -> None:
    page = keysyncd("manpage")
    groff = shutil.which("groff")
    assert groff is not None, "groff renders man pages (Debian: groff-base, with man-db)"
    rendered = subprocess.run(
        [groff, "-man", "-ww", "-Tutf8", "-P", "-c"],
        input=page.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0 and rendered.stderr == b"", rendered.stderr
    text = re.sub(".\b", "", rendered.stdout.decode())  # overstrike: bold and underline
    text = text.replace("\u2010", "-").replace("\u2212", "-")
    flat = " ".join(text.split())
    commands, options = every_command_and_option()
    for word in commands + options:
        assert word in flat, word
    for section in ("NAME", "SYNOPSIS", "GLOBAL OPTIONS", "COMMANDS", "EXIT STATUS", "FILES"):
        assert f"\n{section}\n" in text, section
    for code, meaning in MEANINGS.items():
        assert f"{int(code)} {meaning[:1].upper()}{meaning[1:20]}" in flat, code


def test_the_man_page_is_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    first = manpage()
    assert '.TH KEYSYNCD 1 "2027-01-15"' in first
    assert manpage() == first
    assert manpage(datetime(2026, 1, 2, tzinfo=UTC)).startswith('.TH KEYSYNCD 1 "2026-01-02"')
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert manpage() == manpage()  # the install time: the same page on every generation


def test_roff_escapes_what_would_be_read_as_requests() -> None:
    from keysyncd.commands.docs import roff

    assert roff(".not a request\n'nor this\nback\\slash -x") == (
        "\\&.not a request\n\\&'nor this\nback\\eslash \\-x"
    )


def test_every_parser_is_in_the_completion_script() -> None:
    parser = build_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    bash = completion_script("bash")
    for name in subcommands(parser):
        assert name in bash, name
    assert os.linesep in bash
