"""Fan-out over the fleet: connect, inspect, push in two phases, verify by read-back.

Each node fails on its own: a NodeError is recorded in that node's result and
the others go on (as Fabric's group results do). Nothing here raises for one node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from keysyncd.config import NodeConfig, RepositoryConfig, SshConfig
from keysyncd.core.keyring import KeySet
from keysyncd.core.kinds import KINDS
from keysyncd.core.nodeplan import NodePlan, NodeView, Ownership, describe_changes, diff
from keysyncd.core.report import NodeOutcome
from keysyncd.core.text import bounded
from keysyncd.core.view import DIRECTORY_MODE, needs_content, show_name, unread, with_content
from keysyncd.core.vocabulary import GOOD, NodeStatus, Reason
from keysyncd.errors import NodeError
from keysyncd.io.sftp import NodeSession
from keysyncd.io.ssh import Credentials, Deadlines, connect

log = logging.getLogger(__name__)
# (phase, node, done, total): called with done=0 when a phase starts on a non-empty set of
# nodes, then after each node finishes it; done == total marks the end of the phase.
Progress = Callable[[str, str, int, int], None]


@dataclass
class NodeResult:
    """One node's part in an action, as it goes (``status``: a NodeStatus)."""

    name: str
    status: str = NodeStatus.PENDING
    error: NodeError | None = None
    view: NodeView | None = None
    plan: NodePlan | None = None
    verified: NodeView | None = None
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """Return True if the node is known to hold the expected state."""
        return self.status in GOOD

    def fail(self, error: NodeError) -> None:
        """Record ``error`` as this node's failure (the first failure wins)."""
        if self.error is None:
            self.error = error
            self.status = NodeStatus.FAILED

    def outcome(self) -> NodeOutcome:
        """Return this node's part as reports show it (digests only, never key material)."""
        seen = self.verified or self.view
        return NodeOutcome(
            status=self.status,
            digests=seen.summary() if seen else None,
            error=self.error.detail if self.error else None,
            reason=self.error.reason if self.error else None,
            duration=round(self.duration, 3),
            changes=self.plan.changes() if self.plan and not self.plan.in_sync else {},
        )


class FleetAction:
    """The connections of one action to every node of one repository, used by several steps."""

    def __init__(
        self,
        repository: RepositoryConfig,
        nodes: Iterable[NodeConfig],
        ssh: SshConfig,
        owner: tuple[int | None, int | None] = (None, None),
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.repository = repository
        self.cancel = cancel
        self.nodes = list(nodes)
        self.ssh = ssh
        self.kind = KINDS[repository.kind]
        self.owner = owner
        self.progress = progress
        self.sessions: dict[str, NodeSession] = {}
        self.deadlines = Deadlines()
        self.results: dict[str, NodeResult] = {n.name: NodeResult(n.name) for n in self.nodes}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(ssh.concurrency, len(self.nodes) or 1))
        )

    def directory(self, node: NodeConfig) -> Path:
        """Return the repository directory on ``node`` (its own ``path`` or the repository's)."""
        return node.path or self.repository.path

    def _each(self, phase: str, names: list[str], work: Callable[[str], None]) -> None:
        """Run ``work(name)`` for every node concurrently; record NodeErrors per node.

        When ``cancel`` is set (the daemon is stopping) no new phase starts: its nodes are
        recorded as abandoned, which leaves every node valid (the phase order guarantees it).
        """
        if self.cancel is not None and self.cancel.is_set():
            for name in names:
                self.results[name].fail(
                    NodeError(name, Reason.CANCELLED, f"{phase} abandoned: stopping")
                )
            return
        if self.progress and names:
            self.progress(phase, "", 0, len(names))

        def guarded(name: str) -> str:
            result = self.results[name]
            session = self.sessions.get(name)
            # A whole step on one node gets operation_timeout: a node that answers each
            # request just in time, or never ends a listing, is cut off, not waited for.
            token = self.deadlines.arm(self.ssh.operation_timeout, session.abort) if session else 0
            error: NodeError | None = None
            try:
                work(name)
            except NodeError as failure:
                error = failure
            except Exception as failure:  # a bug must not hide the other nodes' results
                log.debug("unexpected failure on %s", name, exc_info=True)
                error = NodeError(name, Reason.ERROR, type(failure).__name__)
            if session is not None and not self.deadlines.disarm(token):
                timeout = self.ssh.operation_timeout
                error = NodeError(
                    name,
                    Reason.TIMEOUT,
                    f"{phase} took longer than "
                    f"operation_timeout {timeout:g}s; the connection was closed",
                )
            if error is not None:
                result.fail(error)
            result.duration = time.monotonic() - result.started  # so far: the real elapsed time
            return name

        for done, name in enumerate(self._pool.map(guarded, names), start=1):
            if self.progress:
                self.progress(phase, name, done, len(names))

    def open(self, only: set[str] | None = None) -> None:
        """Connect to every node (or those in ``only``); failures are recorded per node.

        Raise LocalFileError (for the whole action) if known_hosts or the identity file is
        missing, unsafe or damaged: that is the controller's problem, not any node's.
        """
        credentials = Credentials(self.ssh, self.deadlines)
        by_name = {n.name: n for n in self.nodes}

        def opening(name: str) -> None:
            node = by_name[name]
            self.sessions[name] = connect(node, self.directory(node), credentials)

        names = [n.name for n in self.nodes if only is None or n.name in only]
        self._each("connect", names, opening)

    def healthy(self) -> list[str]:
        """Return the names of connected nodes that have not failed."""
        return [n for n in self.sessions if self.results[n].error is None]

    def inspect(self, expected: dict[int, str], force: bool = False) -> None:
        """Read every healthy node's files and compute its plan against ``expected``."""

        def inspecting(name: str) -> None:
            result = self.results[name]
            result.view = self._read_view(self.sessions[name], expected)
            result.plan = diff(expected, result.view, self.ownership, force)
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
        """Return the owner every key file must have on the nodes."""
        return Ownership(*self.owner)

    def _read_view(self, session: NodeSession, expected: Mapping[int, str]) -> NodeView:
        """Return keystone's view of the node; only files that must be judged are opened."""
        listing = session.list_directory()
        entries = tuple(
            with_content(entry, session.read(entry), self.kind.problem)
            if needs_content(entry, expected)
            else unread(entry)
            for entry in listing.entries
        )
        return NodeView(listing.directory_mode, entries, listing.temp_files)

    def push(self, keyset: KeySet) -> None:
        """Apply every differing node's plan in two fleet-wide phases, then verify all."""
        pending = [n for n in self.healthy() if self.results[n].status == NodeStatus.DIFFERS]
        self._each("phase 1", pending, lambda name: self._phase1(name, keyset))
        # Phase 2 starts only when phase 1 has finished on every node (safety rule 3).
        pending = [n for n in pending if self.results[n].error is None]
        self._each("phase 2", pending, lambda name: self._phase2(name, keyset))

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
            session.chmod_directory(DIRECTORY_MODE)
        result.status = NodeStatus.UPDATED
        if plan.invalid:
            result.fail(NodeError(name, Reason.INVALID_ENTRY, _invalid(plan.invalid)))

    def verify(self, expected: dict[int, str]) -> None:
        """Read back every healthy node and mark it in_sync only if digests and modes match."""

        def verifying(name: str) -> None:
            result = self.results[name]
            view = self._read_view(self.sessions[name], expected)
            result.verified = view
            check = diff(expected, view, self.ownership)
            if check.in_sync:
                if result.status != NodeStatus.UPDATED:
                    result.status = NodeStatus.IN_SYNC
                return
            result.fail(NodeError(name, Reason.DIGEST_MISMATCH, _mismatch(check)))
            result.status = NodeStatus.DIFFERS if check.diverged is None else NodeStatus.DIVERGED

        healthy = [n for n in self.healthy() if self.results[n].status != NodeStatus.DIVERGED]
        self._each("verify", healthy, verifying)

    def finish(self) -> dict[str, NodeResult]:
        """Close every connection and return the results (each node's duration runs until its
        own last step ended)."""
        for session in self.sessions.values():
            with contextlib.suppress(Exception):
                session.close()
        self.sessions.clear()
        self._pool.shutdown(wait=True)
        return self.results

    def reset(self) -> None:
        """Forget per-step statuses of healthy nodes before a new step (keep failures)."""
        for name in self.healthy():
            self.results[name] = replace(self.results[name], status=NodeStatus.PENDING, plan=None)


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
    return "read-back differs: " + describe_changes(plan.changes())


def push_keyset(fleet: FleetAction, keyset: KeySet, force: bool = False) -> None:
    """Inspect, push in two phases and verify ``keyset`` on every healthy node of ``fleet``."""
    expected = keyset.digests()
    fleet.inspect(expected, force)
    fleet.push(keyset)
    fleet.verify(expected)
