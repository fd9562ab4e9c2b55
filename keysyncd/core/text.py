"""Text that came from elsewhere (a node, a file), made safe to print and to keep. Pure."""

from __future__ import annotations

MAX_DETAIL = 400  # characters of an error detail kept in reports, state and output


def printable(text: str, limit: int = MAX_DETAIL) -> str:
    """Return ``text`` with every non-printable character escaped (``\\x1b``, ``\\n``,
    ``\\u202e``), at most ``limit`` characters (cut with ``...``): a node's error text reaches
    terminals, logs and reports, and must never clear a screen or forge a line."""
    escaped = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def bounded(names: list[str], limit: int = 5) -> str:
    """Return ``a, b, c`` or ``a, b, c and 12 more``: lists from nodes stay short."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


# Hex digits of a digest shown to people: one length everywhere (JSON documents keep all 64)
DIGEST_SHOWN = 12


def short_digest(digest: str) -> str:
    """Return the first DIGEST_SHOWN hex digits of ``digest`` (``9f2c03ab77d1``)."""
    return digest[:DIGEST_SHOWN]


def plural(count: int, one: str, many: str | None = None) -> str:
    """Return ``1 repository``, ``2 repositories``, ``0 nodes``: the count and the word that
    fits it (``many`` defaults to ``one`` + ``s``, with ``y`` after a consonant -> ``ies``)."""
    if count == 1:
        return f"{count} {one}"
    if many is None:
        consonant_y = one.endswith("y") and one[-2:-1] not in ("a", "e", "i", "o", "u")
        many = one[:-1] + "ies" if consonant_y else one + "s"
    return f"{count} {many}"


def listed(items: list[str]) -> str:
    """Return ``a``, ``a and b`` or ``a, b and c``."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def named(one: str, names: list[str], many: str | None = None) -> str:
    """Return ``key 4``, ``keys 1 and 2``, ``nodes node1, node2 and node3``: the word that
    fits how many ``names`` there are, then the names."""
    return plural(len(names), one, many).split(" ", 1)[1] + " " + listed(names)
