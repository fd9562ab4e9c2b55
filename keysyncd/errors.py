"""The exception hierarchy: one root, a few kinds a user can act on.

Every message is one line meant for the operator and never contains key
material; the CLI prints ``str(error)`` and shows tracebacks only with --debug.
"""

from __future__ import annotations

from keysyncd.core.text import printable


class KeysyncError(Exception):
    """Root of every error keysyncd raises on purpose."""


class ConfigError(KeysyncError):
    """The configuration is unusable; ``problems`` lists every error with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class RepositoryError(KeysyncError):
    """A local key repository is invalid or could not be read or written."""


class LocalFileError(KeysyncError):
    """A local file keysyncd relies on is unsafe, unreadable or damaged (exit code 2).

    Unsafe means it could be changed by someone else (StrictModes, as OpenSSH checks it),
    or it is a symlink or special file where keysyncd expects a regular file.
    """


class StateError(KeysyncError):
    """The state journal in ``state_dir`` could not be written (a damaged one that cannot be
    read is a LocalFileError)."""


class LockError(KeysyncError):
    """Another keysyncd process holds the lock for a mutating action."""


class NodeError(KeysyncError):
    """One node failed; ``reason`` is a short class such as ``unreachable``.

    Reasons: unreachable, timeout, auth, host_key, permission, disk_full,
    digest_mismatch, invalid_entry, diverged, cancelled, error.
    """

    def __init__(self, node: str, reason: str, detail: str) -> None:
        self.node = node
        self.reason = reason
        # the detail may quote a node (its banner, its error text): escaped and bounded
        self.detail = printable(detail)
        super().__init__(f"node {node}: {reason}: {self.detail}")


class UsageError(KeysyncError):
    """A command was called in a way that cannot work (exit code 2)."""
