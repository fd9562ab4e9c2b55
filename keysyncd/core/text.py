"""Text that came from elsewhere (a node, a file), made safe to print and to keep. Pure."""

from __future__ import annotations

MAX_DETAIL = 400  # characters of an error detail kept in reports, state and output


def printable(text: str, limit: int = MAX_DETAIL) -> str:
    """Return ``text`` with every non-printable character escaped (``\\x1b``, ``\\n``,
    ``\\u202e``) and at most ``limit`` characters long (cut with ``...``).

    A node's error text reaches terminals, logs and reports: an escape sequence in it must
    never clear a screen or forge a line.
    """
    escaped = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def bounded(names: list[str], limit: int = 5) -> str:
    """Return ``a, b, c`` or ``a, b, c and 12 more``: lists from nodes stay short."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
