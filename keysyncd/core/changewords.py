"""A node's changes as words: what differs before an action (``missing key 6``) and what
was done after one that fixed it (``added key 6``); a JWS node's too (``describe_jws``). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keysyncd.core.text import bounded, listed, named, plural

# Each kind of difference before an action (what differs) and after one that fixed it (what
# was done): ``missing key 6`` becomes ``added key 6`` (a push report keeps what it found).
DIFFERS_WORDS: dict[str, tuple[str, str]] = {
    "missing": ("missing", "added"),
    "changed": ("different", "replaced"),
    "extra": ("extra", "removed"),
    "mode": ("wrong mode or owner:", "fixed mode and owner of"),
    # jws: public keys still on the node though retired, and the private key's problem
    "retired": ("retired, still there:", "removed retired"),
    "private": ("private.pem", "replaced private.pem:"),
    "directories": ("directories:", "fixed directories:"),
    # a revoked key shown again (also extra or changed): it goes, never a divergence
    "revoked": ("revoked, held again:", "removed revoked"),
}


def describe_changes(changes: Mapping[str, Any], done: bool = False) -> str:
    """Return one line for a node's changes, names escaped: what differs (``missing key 4, extra
    keys 1 and 2``), or with ``done`` what was done (``added key 4, removed keys 1 and 2``)."""
    parts = [
        (_done_jws(key, changes[key]) if done else None) or f"{words[done]} {_items(changes[key])}"
        for key, words in DIFFERS_WORDS.items()
        if changes.get(key)
    ]
    known = (*DIFFERS_WORDS, "access", "entries", "unlisted")  # others (a newer kind's) in order
    parts += [
        f"{key} {_items(value)}" for key, value in changes.items() if value and key not in known
    ]
    fixed = "fixed " if done else ""
    access = changes.get("access") or ()
    parts += [f"{fixed}{problem}" for problem in ([access] if isinstance(access, str) else access)]
    parts += [f"{fixed}{odd['name']}: {odd['problem']}" for odd in changes.get("entries") or ()]
    if changes.get("unlisted"):
        parts.append(f"and {plural(int(changes['unlisted']), 'more entry', 'more entries')}")
    return ", ".join(parts)


def _done_jws(key: str, value: Any) -> str | None:
    """Return what a push did about a missing JWS private key or directory (``installed
    private.pem``, ``created directories: private``), None for the generic words."""
    if key == "private" and str(value) == "missing":
        return "installed private.pem"
    if key == "directories" and isinstance(value, list | tuple):
        problems = [str(item) for item in value]
        missing = [
            item.removesuffix(": missing") for item in problems if item.endswith(": missing")
        ]
        if missing and len(missing) == len(problems):
            return "created directories: " + ", ".join(missing)
    return None


def _items(value: Any) -> str:
    """Return a change's value as words: ``key 4``, ``keys 1 and 2``, ``key 1 and the
    directory``; names (a newer kind's) and text as they are."""
    if not isinstance(value, list | tuple):
        return str(value)
    numbers = [isinstance(item, int) and not isinstance(item, bool) for item in value]
    indices = [str(item) for item, number in zip(value, numbers, strict=True) if number]
    others = [str(item) for item, number in zip(value, numbers, strict=True) if not number]
    words = [named("key", indices)] if indices else []
    words += ["the directory" if other == "directory" else other for other in others]
    return listed(words)


def describe_jws(changes: Mapping[str, Any]) -> str:
    """Return one line for a node's JWS changes (names escaped)."""
    parts = []
    if changes.get("missing"):
        parts.append("missing public " + bounded(list(changes["missing"])))
    if changes.get("retired"):
        parts.append("retired public " + bounded(list(changes["retired"])))
    if changes.get("private"):
        parts.append(f"private.pem: {changes['private']}")
    parts += [f"public {odd['name']}: {odd['problem']}" for odd in changes.get("entries") or ()]
    if changes.get("unlisted"):
        parts.append(f"and {plural(int(changes['unlisted']), 'more entry', 'more entries')}")
    parts += [f"directory {item}" for item in changes.get("directories") or ()]
    if changes.get("access"):
        parts.append(str(changes["access"]))
    return ", ".join(parts)
