"""Symmetric repositories (fernet, credential) across the fleet: inspect every node as
keystone sees it, push in two fleet-wide phases, verify by read-back; and the refusal of
``init`` to take over a node directory holding files not its own (``keysyncd.io.local.repolinks``).
The connections and the per-node steps are ``keysyncd.io.remote.fanout``'s."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from keysyncd.core.access import UNREACHABLE_ADVICE
from keysyncd.core.changewords import describe_changes
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import KINDS, KeyKind
from keysyncd.core.names import DIRECTORY_MODE, show_name
from keysyncd.core.nodeplan import NodePlan, NodeView, Ownership, diff
from keysyncd.core.text import bounded
from keysyncd.core.view import needs_content, unread, with_content
from keysyncd.core.vocabulary import NodeStatus, Reason
from keysyncd.errors import KeysyncError, NodeError
from keysyncd.io.local.repolinks import Own, refusal
from keysyncd.io.remote.fanout import Fanout
from keysyncd.io.remote.sftp import NodeSession

log = logging.getLogger(__name__)


class FleetAction(Fanout[NodeView, NodePlan]):
    """The fan-out of one action on a symmetric repository (fernet, credential): every node
    holds the same key files in one directory (its own ``path`` or the repository's).
    ``revoked``: digests of revoked keys, removed wherever found (never a divergence)."""

    revoked: frozenset[str] = frozenset()

    @property
    def kind(self) -> KeyKind:
        """Return the repository's kind of key (what its key files must hold)."""
        return KINDS[self.repository.kind]

    def inspect(self, expected: dict[int, str], force: bool = False) -> None:
        """Plan every healthy node against ``expected`` from its view (``Fanout._view``)."""

        def inspecting(name: str) -> None:
            result = self.results[name]
            result.view = self._current_view(name, expected)
            result.plan = diff(expected, result.view, self.ownership, force, self.revoked)
            if result.plan.diverged:
                result.status = NodeStatus.DIVERGED
                result.error = NodeError(
                    name, Reason.DIVERGED, _diverged(name, result.plan.diverged)
                )
            else:
                result.status = NodeStatus.IN_SYNC if result.plan.in_sync else NodeStatus.DIFFERS

        self._each("inspect", self.healthy(), inspecting)

    @property
    def ownership(self) -> Ownership:
        """Return the owner every key file must have on the nodes (and who must reach them)."""
        owner = self.repository.owner
        return Ownership(*self.owner, owner if isinstance(owner, str) else None)

    def _current_view(self, name: str, expected: Mapping[int, str]) -> NodeView:
        """Return node ``name``'s view as ``_view`` keeps it, read again if a file ``expected``
        needs judged was left unopened (a view read for other keys)."""
        kept = self._read_for.get(name)
        if kept is not None and not view_covers(self._fresh.get(name), kept, expected):
            self._fresh.pop(name, None)

        def reading() -> NodeView:
            self._read_for[name] = frozenset(expected)
            return self._read_view(self.sessions[name], expected)

        return self._view(name, reading)

    def _read_view(self, session: NodeSession, expected: Mapping[int, str]) -> NodeView:
        """Return keystone's view of the node, opening only the files to judge (``read_many``)."""
        # the directories above it only when an owner is configured: who else would pass?
        listing = session.list_directory(above=self.ownership.user is not None)
        wanted = [entry for entry in listing.entries if needs_content(entry, expected)]
        contents = dict(zip((e.name for e in wanted), session.read_many(wanted), strict=True))
        entries = tuple(
            with_content(entry, contents[entry.name], self.kind.problem)
            if entry.name in contents
            else unread(entry)
            for entry in listing.entries
        )
        return NodeView(
            listing.directory_mode,
            entries,
            listing.temp_files,
            listing.directory,
            listing.ancestors,
        )

    def push(self, keyset: KeySet) -> None:
        """Apply every differing node's plan in two fleet-wide phases, then verify all."""
        self.tidy()
        pending = [n for n in self.healthy() if self.results[n].status == NodeStatus.DIFFERS]
        self._each("phase 1", pending, lambda name: self._phase1(name, keyset), writes=True)
        # Phase 2 starts only when phase 1 has finished on every node (safety rule 3).
        pending = [n for n in pending if self.results[n].error is None]
        self._each("phase 2", pending, lambda name: self._phase2(name, keyset), writes=True)

    def _upload(self, session: NodeSession, keyset: KeySet, index: int) -> None:
        temp = session.write_temp(keyset.keys[index].material, *self.owner)
        try:
            session.rename(temp, str(index))
        except NodeError:
            session.remove_quietly(temp)
            raise

    def _phase1(self, name: str, keyset: KeySet) -> None:
        plan = self.results[name].plan
        assert plan is not None  # noqa: S101 - inspect() ran before push()
        session = self.sessions[name]
        for stale in plan.cleanup:
            session.remove_quietly(stale)
        for index in plan.add:
            self._upload(session, keyset, index)

    def _phase2(self, name: str, keyset: KeySet) -> None:
        result = self.results[name]
        plan = result.plan
        assert plan is not None  # noqa: S101 - inspect() ran before push()
        session = self.sessions[name]
        for index in plan.replace:
            self._upload(session, keyset, index)
        for entry in plan.delete:
            session.remove(entry)
        if plan.fix_directory:
            session.chmod_directory(DIRECTORY_MODE, *self.owner)
        result.status = NodeStatus.UPDATED
        if plan.invalid:
            result.fail(NodeError(name, Reason.INVALID_ENTRY, _invalid(plan.invalid)))

    def verify(self, expected: dict[int, str]) -> None:
        """Read back every healthy node written since it was last read (the others' views
        are current: nothing changed there); in_sync only if digests and modes match."""

        def verifying(name: str) -> None:
            result = self.results[name]
            view = self._current_view(name, expected)
            result.verified = view
            check = diff(expected, view, self.ownership)
            if check.in_sync:
                if result.status != NodeStatus.UPDATED:
                    result.status = NodeStatus.IN_SYNC
                return
            reason = Reason.DIGEST_MISMATCH if check.unreachable is None else Reason.PERMISSION
            result.fail(NodeError(name, reason, _mismatch(check)))
            result.status = NodeStatus.DIFFERS if check.diverged is None else NodeStatus.DIVERGED

        healthy = [n for n in self.healthy() if self.results[n].status != NodeStatus.DIVERGED]
        self._each("verify", healthy, verifying)


def view_covers(
    view: NodeView | None, read_for: frozenset[int], expected: Mapping[int, str]
) -> bool:
    """Return True if ``view``, read for ``read_for``, opened every file ``expected`` judges."""
    return view is not None and all(
        needs_content(entry, read_for) or not needs_content(entry, expected)
        for entry in view.entries
    )


def _diverged(name: str, reason: str) -> str:
    return (
        f"{reason}; keysyncd leaves it alone: 'keysyncd sync --force --node {name}' overwrites "
        f"it, 'keysyncd adopt --from {name}' takes its keys instead"
    )


def _invalid(names: tuple[str, ...]) -> str:
    shown = bounded([show_name(name) for name in names])
    return (
        f"directory {shown} at a key name in the repository; keysyncd never removes a "
        "directory: remove it on the node, then sync"
    )


def _mismatch(plan: NodePlan) -> str:
    detail = "read-back differs: " + describe_changes(plan.changes())
    return detail if plan.unreachable is None else detail + UNREACHABLE_ADVICE


def push_keyset(fleet: FleetAction, keyset: KeySet, force: bool = False) -> None:
    """Inspect, push in two phases and verify ``keyset`` on every healthy node of ``fleet``, each
    read at most once before its writes and once after them."""
    expected = keyset.digests()
    fleet.inspect(expected, force)
    fleet.push(keyset)
    fleet.verify(expected)


def refuse_occupied_nodes(fleet: Fanout[Any, Any], own: Own) -> None:
    """Raise KeysyncError, naming each node and what its directory holds, if the directory ``init``
    would take over on any healthy node of ``fleet`` exists holding anything that is not ``own``."""
    lines = []
    for name in fleet.healthy():
        session = fleet.sessions[name]
        if session.directory_mode() is None:  # nothing there yet
            continue
        _, entries, _ = session.list_every_entry()
        if others := sorted(show_name(e.name) for e in entries if not own(e.name)):
            lines.append(refusal(f"node {name}: ", session.directory, others))
    if lines:
        raise KeysyncError("; ".join(lines))
