"""Where the command line writes: results on stdout (``--json``: one document, nothing
else), diagnostics on stderr; ``-q`` silences all but errors and the JSON document."""

from __future__ import annotations

import sys

from keysyncd.commands.exits import Exit

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a --help cost)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any


class Output:
    """The terminal as this command may use it (a plain class: --help loads no dataclasses)."""

    def __init__(
        self, json: bool = False, quiet: bool = False, progress_enabled: bool = False
    ) -> None:
        self.json, self.quiet, self.progress_enabled = json, quiet, progress_enabled
        self.printed_json = False

    def lines(self, lines: Iterable[str]) -> None:
        """Print result lines on stdout (not with --json or -q)."""
        if self.json or self.quiet:
            return
        for line in lines:
            print(line)

    def document(self, document: Any) -> None:
        """Print the one JSON document of --json (stdout, sorted keys)."""
        if self.json and not self.printed_json:
            import json

            print(json.dumps(document, indent=2, sort_keys=True, default=str))
            self.printed_json = True

    def error(self, message: str, prefix: str = "error") -> None:
        """Print ``keysyncd: error: message`` on stderr (always, even with -q)."""
        print(f"keysyncd: {prefix}: {message}", file=sys.stderr)

    def warning(self, message: str) -> None:
        """Print ``keysyncd: warning: message`` on stderr (not with -q)."""
        if not self.quiet:
            print(f"keysyncd: warning: {message}", file=sys.stderr)

    def note(self, message: str) -> None:
        """Print ``keysyncd: message`` on stderr: what keysyncd is doing (not with -q)."""
        if not self.quiet:
            print(f"keysyncd: {message}", file=sys.stderr, flush=True)

    def failure(self, code: Exit, errors: list[str], **extra: Any) -> int:
        """With --json, print the error document unless one was printed; return ``code``."""
        first = errors[0] if errors else None
        self.document({"error": first, "errors": errors, "exit_code": code, **extra})
        return int(code)

    def progress(self) -> Callable[[str, str, int, int], None] | None:
        """Return a progress callback redrawing one stderr line, or None when not wanted."""
        if not self.progress_enabled or self.json or self.quiet:
            return None

        def show(phase: str, node: str, done: int, total: int) -> None:
            if done == 0:
                return
            end = "\n" if done == total else ""
            sys.stderr.write(f"\r\033[K{phase}: {done}/{total} ({node}){end}")
            sys.stderr.flush()

        return show
