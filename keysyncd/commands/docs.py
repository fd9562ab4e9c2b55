"""Shell completion and the man page, both generated from the command line's parser.

Completion comes from shtab (bash and zsh). The man page comes from a small generator of our
own rather than argparse-manpage: it needs the sections argparse knows nothing of (EXIT
STATUS from the one exit-code table, ENVIRONMENT, FILES, SIGNALS), nested subcommands
(``report list``), and it runs at install time from the installed keysyncd with no extra
dependency, so the page always describes the keysyncd it ships with.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from pathlib import Path

from keysyncd import __version__
from keysyncd.commands.exits import MEANINGS
from keysyncd.commands.output import Output
from keysyncd.commands.parser import DEFAULT_CONFIG, DESCRIPTION, build_parser, subcommands


def completion_script(shell: str) -> str:
    """Return the completion script for ``shell`` (bash or zsh)."""
    import shtab  # only this command needs it

    return shtab.complete(build_parser(), shell=shell)


def cmd_completion(args: argparse.Namespace, out: Output) -> int:
    print(completion_script(args.shell).rstrip("\n"))
    return 0


def cmd_manpage(args: argparse.Namespace, out: Output) -> int:
    print(manpage(), end="")
    return 0


def roff(text: str) -> str:
    """Return ``text`` escaped for roff: backslashes, leading dots and quotes, hyphens."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines()
    )


def _option_lines(parser: argparse.ArgumentParser, skip_globals: bool) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if skip_globals and (action.dest.startswith("sub_") or action.dest == "help"):
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{roff(name)}\\fR" for name in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{roff(str(action.metavar or action.dest.upper()))}\\fR"
        else:
            names = f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
        choices = f" (one of: {', '.join(map(str, action.choices))})" if action.choices else ""
        lines += [".TP", names, roff(f"{action.help or ''}{choices}")]
    return lines


def _command_lines(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    usage = " ".join(parser.format_usage().removeprefix("usage: ").split())
    lines = [".SS " + roff(name), roff(summary) + ".", ".PP", f"\\fB{roff(usage)}\\fR", ".PP"]
    lines.append(roff(parser.description or ""))
    lines += _option_lines(parser, skip_globals=True)
    for child, (child_summary, child_parser) in subcommands(parser).items():
        lines += _command_lines(f"{name} {child}", child_summary, child_parser)
    return lines


def page_date() -> datetime:
    """Return the man page's date: $SOURCE_DATE_EPOCH (reproducible builds), else when this
    keysyncd was installed, so that generating it again gives the same page."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.fromtimestamp(Path(__file__).stat().st_mtime, UTC)


def manpage(today: datetime | None = None) -> str:
    """Return keysyncd(1) in roff (man(7) macros), generated from the parser."""
    parser = build_parser()
    date = (today or page_date()).strftime("%Y-%m-%d")
    lines = [
        f'.TH KEYSYNCD 1 "{date}" "keysyncd {__version__}" "User Commands"',
        ".SH NAME",
        "keysyncd \\- rotate keystone\\-style key repositories and push them to every node",
        ".SH SYNOPSIS",
        "\\fBkeysyncd\\fR [\\fIglobal options\\fR] \\fICOMMAND\\fR [\\fIoptions\\fR]",
        ".SH DESCRIPTION",
        roff(DESCRIPTION),
        ".PP",
        roff("Global options may be given before or after the command."),
        ".SH GLOBAL OPTIONS",
        *_option_lines(parser, skip_globals=False),
        ".SH COMMANDS",
    ]
    for name, (summary, sub) in subcommands(parser).items():
        lines += _command_lines(name, summary, sub)
    lines += [".SH EXIT STATUS"]
    for code, meaning in MEANINGS.items():
        lines += [".TP", f"\\fB{int(code)}\\fR", roff(meaning[:1].upper() + meaning[1:] + ".")]
    lines += _closing_sections()
    return "\n".join(lines) + "\n"


def _closing_sections() -> list[str]:
    """Return the page's environment, files, signals and see-also sections."""
    return [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBKEYSYNCD_CONFIG\\fR",
        roff("The config file when -c is not given."),
        ".SH FILES",
        ".TP",
        f"\\fI{roff(DEFAULT_CONFIG)}\\fR",
        roff("The config file when neither -c nor $KEYSYNCD_CONFIG is given."),
        ".SH SIGNALS",
        roff(
            "To keysyncd run: SIGUSR1 rotates every repository now, SIGUSR2 syncs and verifies "
            "now, SIGHUP reloads the config (an invalid one is rejected), SIGTERM and SIGINT "
            "stop after the current step (exit status 0 after SIGTERM, 130 after SIGINT)."
        ),
        ".SH SEE ALSO",
        "\\fBkeystone\\-manage\\fR(1), \\fBsshd\\fR(8), \\fBsystemctl\\fR(1)",
    ]
