"""The names and sizes of keystone's key files, as keystone reads them and keysyncd writes
them. Pure, no IO: the light commands need these without ``keysyncd.core.view``'s entries."""

from __future__ import annotations

TEMP_PREFIX = ".keysyncd-"  # not an integer: keystone never loads a file named like this
# Read caps per kind of file: a file listed larger is judged unopened ("larger than N bytes"),
# and no read asks for more than the cap and one byte (a file that grew since: too large).
MAX_KEY_FILE = 4096  # a Fernet or credential key: 44 bytes and a newline; more is junk
MAX_PEM = 16_384  # a JWS PEM: keystone's largest is 384 bytes (ES512 private); RSA-16384 fits
FILE_MODE = 0o600
CHANGED_WHILE_READ = "changed while it was read"
DIRECTORY_MODE = 0o700


def key_index(name: str) -> int | None:
    """Return the key id keystone gives a file called ``name`` (its rule, ``int(name)``: ``"099"``,
    ``" 1"``, ``"+2"``, ``"1_0"``, ``"\\u0663"`` all load), or None if it ignores it."""
    try:
        return int(name)
    except ValueError:
        return None


def canonical_index(name: str) -> int | None:
    """Return the index of a canonical key name (``str(index)``, index >= 0: the only names
    keysyncd writes and accepts), else None."""
    index = key_index(name)
    return index if index is not None and index >= 0 and str(index) == name else None


def is_temp_name(name: str) -> bool:
    """Return True for keysyncd's temp file names (``.keysyncd-*``)."""
    return name.startswith(TEMP_PREFIX)


def show_name(name: str) -> str:
    """Return ``name`` safe to print: quoted and escaped (``'1 '``, ``'\\x1b[2J'``)."""
    return ascii(name)


def too_large(cap: int) -> str:
    """Return the problem of a file larger than ``cap``, its kind's read cap."""
    return f"larger than {cap} bytes: not a key"
