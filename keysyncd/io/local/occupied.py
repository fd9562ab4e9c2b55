"""Whether a directory ``init`` would take over already holds something that is not ours:
``init`` makes it 0700 (and chowns it), which would lock out the users of ``/etc`` or a
home directory, so it takes over only a missing or empty directory, or one holding only the
repository's own files (key files, ``private.pem`` for JWS, ``.keysyncd-*`` temp files)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from keysyncd.core.jws import PRIVATE_NAME
from keysyncd.core.text import bounded
from keysyncd.core.view import is_temp_name, key_index, show_name
from keysyncd.errors import RepositoryError
from keysyncd.io.local.fsutil import describe_os_error

Own = Callable[[str], bool]


def symmetric_file(name: str) -> bool:
    """Return True for a name a fernet or credential repository may hold."""
    return key_index(name) is not None or is_temp_name(name)


def jws_private_file(name: str) -> bool:
    """Return True for a name a JWS private directory may hold."""
    return name == PRIVATE_NAME or is_temp_name(name)


def local_others(path: Path, own: Own) -> list[str]:
    """Return the names in local directory ``path`` that are not ``own`` (sorted, escaped for
    printing); empty if it does not exist. Raise RepositoryError if it cannot be listed."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise RepositoryError(f"cannot list {path}: {describe_os_error(error)}") from None
    return sorted(show_name(name) for name in names if not own(name))


def refusal(where: str, path: Path, others: list[str], action: str = "init") -> str:
    """Return the one line ``action`` refuses with, saying what to do. Example: ``"init: /etc
    already exists and holds other files ('passwd', ...): keysyncd would change its mode and owner;
    point path at a directory of its own"``."""
    return (
        f"{action}: {where}{path} already exists and holds other files "
        f"({bounded(others, 3)}): keysyncd would change its mode and owner; point path at a "
        "directory of its own"
    )
