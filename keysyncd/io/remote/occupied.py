"""Whether the directory ``init`` would take over on a node already holds something that
is not ours (the rule and its words: ``keysyncd.io.local.occupied``)."""

from __future__ import annotations

from typing import Any

from keysyncd.core.view import show_name
from keysyncd.errors import KeysyncError
from keysyncd.io.local.occupied import Own, refusal
from keysyncd.io.remote.fanout import Fanout
from keysyncd.io.remote.sftp import NodeSession


def node_others(session: NodeSession, own: Own) -> list[str]:
    """Return the names in ``session``'s directory that are not ``own``; empty if it does not
    exist. Raise NodeError if it cannot be listed (or holds more than any repository)."""
    if session.directory_mode() is None:
        return []
    _, entries, _ = session.list_every_entry()
    return sorted(show_name(entry.name) for entry in entries if not own(entry.name))


def refuse_occupied_nodes(fleet: Fanout[Any, Any], own: Own) -> None:
    """Raise KeysyncError, naming each node and what its directory holds, if the directory ``init``
    would take over on any healthy node of ``fleet`` exists holding anything that is not ``own``."""
    lines = []
    for name in fleet.healthy():
        session = fleet.sessions[name]
        if others := node_others(session, own):
            lines.append(refusal(f"node {name}: ", session.directory, others))
    if lines:
        raise KeysyncError("; ".join(lines))
