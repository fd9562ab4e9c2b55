"""Exit codes: one table, shown by ``--help``, the man page and the README alike.

Imports nothing: ``keysyncd --help`` reads it before anything heavy is loaded.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What the exit status of a keysyncd command means."""

    DONE = 0
    ATTENTION = 1
    USAGE = 2
    INTERRUPTED = 130


MEANINGS: dict[Exit, str] = {
    Exit.DONE: "done: everything is as it should be",
    Exit.ATTENTION: (
        "something needs attention: a node failed or is not in sync, drift, a deferred or "
        "blocked or overdue rotation, the lock still busy after --wait, a refusal, a broken "
        "report chain, warnings with check-config --strict"
    ),
    Exit.USAGE: (
        "bad usage or configuration: unknown option, repository, node or report id, an "
        "invalid config, unsafe or damaged local files (state, reports, identity, known_hosts)"
    ),
    Exit.INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
}


def exit_code_lines(width: int = 78) -> list[str]:
    """Return the table as plain text lines (``  0  done: ...``), wrapped to ``width``."""
    import textwrap

    lines = []
    for code, meaning in MEANINGS.items():
        wrapped = textwrap.wrap(meaning, width - 7) or [""]
        lines.append(f"  {int(code):>3}  {wrapped[0]}")
        lines.extend(f"       {rest}" for rest in wrapped[1:])
    return lines
