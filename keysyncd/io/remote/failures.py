"""What went wrong on a node, in words an operator can act on: every exception raised while
reaching a node becomes one NodeError with a reason (``timeout``, ``auth``, ``unreachable``,
``permission``, ``disk_full``, ``error``) and never the server's own text."""

from __future__ import annotations

import errno
import socket

import paramiko

from keysyncd.errors import NodeError

_ERRNO_REASONS = {
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
}


def classify(node: str, error: BaseException, doing: str) -> NodeError:
    """Return the NodeError for ``error`` raised while ``doing`` something on ``node``."""
    if isinstance(error, NodeError):
        return error
    if isinstance(error, socket.timeout | TimeoutError):
        return NodeError(node, "timeout", f"timed out while {doing}")
    if isinstance(error, paramiko.AuthenticationException):
        return NodeError(node, "auth", f"authentication failed while {doing}")
    if isinstance(error, ConnectionRefusedError):
        return NodeError(node, "unreachable", f"connection refused while {doing}")
    if isinstance(error, OSError) and error.errno in _ERRNO_REASONS:
        return NodeError(node, _ERRNO_REASONS[error.errno], f"{error.strerror} while {doing}")
    if isinstance(error, EOFError | paramiko.SSHException | ConnectionError):
        return NodeError(node, "unreachable", f"connection lost while {doing}: {error}")
    if isinstance(error, OSError):
        detail = error.strerror or str(error) or type(error).__name__
        if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET):
            return NodeError(node, "unreachable", f"{detail} while {doing}")
        return NodeError(node, "error", f"{detail} while {doing}")
    if isinstance(error, paramiko.SFTPError) and str(error):
        # keysyncd's own words on a reply no honest server sends (never the server's text)
        return NodeError(node, "error", f"SFTPError while {doing}: {error}")
    return NodeError(node, "error", f"{type(error).__name__} while {doing}")
