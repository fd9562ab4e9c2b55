"""User and group names, resolved on the controller (SFTP sets numeric ids on nodes)."""

from __future__ import annotations

import grp
import os
import pwd

from keysyncd.config import RepositoryConfig
from keysyncd.errors import ConfigError


def resolve_id(value: int | str | None, lookup: str) -> int | None:
    """Return a numeric uid/gid for ``value`` (a number or a name); raise ConfigError if unknown."""
    if value is None or isinstance(value, int):
        return value
    try:
        if lookup == "user":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigError([f"unknown {lookup} {value!r} on this controller"]) from None


def node_owner(repository: RepositoryConfig) -> tuple[int | None, int | None]:
    """Return the numeric (uid, gid) every key file must have on the nodes."""
    return resolve_id(repository.owner, "user"), resolve_id(repository.group, "group")


def local_owner(repository: RepositoryConfig) -> tuple[int | None, int | None]:
    """Return the (uid, gid) for local key files: only applied when running as root."""
    return node_owner(repository) if os.geteuid() == 0 else (None, None)
