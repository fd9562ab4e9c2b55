"""Fan-out over the fleet: one connection per node, steps run on every node concurrently.
Each node fails on its own (a NodeError in its result; nothing here raises for one node),
and a whole step on one node is bounded by ``operation_timeout``. The kinds' steps are in
``fleet`` (symmetric keys) and ``jwsfleet`` (JWS key pairs)."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from keysyncd.config import NodeConfig, RepositoryConfig, SshConfig
from keysyncd.core.report import NodeOutcome
from keysyncd.core.vocabulary import GOOD, NodeStatus, Reason
from keysyncd.errors import NodeError
from keysyncd.io.local.fsutil import CLOCK_PROBE_PREFIX
from keysyncd.io.remote.sftp import NodeSession
from keysyncd.io.remote.sftpmeter import record
from keysyncd.io.remote.ssh import Credentials, Deadlines, connect

log = logging.getLogger(__name__)
# (phase, node, done, total): called with done=0 when a phase starts on a non-empty set of
# nodes, then after each node finishes it; done == total marks the end of the phase.
Progress = Callable[[str, str, int, int], None]


class Seen(Protocol):
    """What a node was seen to hold (a kind's view)."""

    def summary(self) -> dict[str, str]: ...


class Planned(Protocol):
    """What a node needs (a kind's plan)."""

    @property
    def in_sync(self) -> bool: ...

    @property
    def cleanup(self) -> tuple[str, ...]: ...  # keysyncd's temp files left there

    def changes(self) -> dict[str, Any]: ...


V = TypeVar("V", bound=Seen)
P = TypeVar("P", bound=Planned)


@dataclass
class NodeResult(Generic[V, P]):
    """One node's part in an action, as it goes (``status``: a NodeStatus)."""

    name: str
    status: str = NodeStatus.PENDING
    error: NodeError | None = None
    view: V | None = None
    plan: P | None = None
    verified: V | None = None
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


class Fanout(Generic[V, P]):
    """The connections of one action to some nodes of one repository, used by several steps;
    ``owner``: the numeric (uid, gid) every key file must have on the nodes."""

    # False: every inspect and verify reads each node anew, the path before views were kept
    # (bench/rotate_reads.py measures both in one run)
    keep_views = True

    def __init__(
        self,
        repository: RepositoryConfig,
        nodes: Iterable[NodeConfig],
        ssh: SshConfig,
        owner: tuple[int | None, int | None] = (None, None),
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.repository = repository
        self.owner = owner
        self.nodes = list(nodes)
        self.by_name = {node.name: node for node in self.nodes}
        self.clock = clock  # the controller's: when given, each node's clock is read on open
        self.skews: dict[str, float] = {}  # node -> controller clock minus node clock
        self.ssh = ssh
        self.progress = progress
        self.cancel = cancel
        self.sessions: dict[str, NodeSession] = {}
        self.deadlines = Deadlines()
        self.results: dict[str, NodeResult[V, P]] = {n.name: NodeResult(n.name) for n in self.nodes}
        self.reads: dict[str, int] = {}  # node -> full reads of its view (the meters')
        self._fresh: dict[str, V] = {}  # node -> its view as read, until keysyncd writes there
        self._read_for: dict[str, frozenset[int]] = {}  # node -> the keys its view was read for
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(ssh.concurrency, len(self.nodes) or 1))
        )

    def directory(self, node: NodeConfig) -> Path:
        """Return where ``node``'s session is rooted: its own ``path`` or the repository's."""
        return node.path or self.repository.path

    def _each(
        self, phase: str, names: list[str], work: Callable[[str], None], writes: bool = False
    ) -> None:
        """Run ``work(name)`` for every node concurrently, recording NodeErrors per node;
        ``writes``: the work may change the nodes (their views go stale). Once ``cancel`` is set no
        phase starts: its nodes are recorded as abandoned, which the phase order keeps valid."""
        if writes:
            for name in names:
                self._fresh.pop(name, None)
        if self.cancel is not None and self.cancel.is_set():
            for name in names:
                self.results[name].fail(
                    NodeError(name, Reason.CANCELLED, f"{phase} abandoned: stopping")
                )
            return
        if self.progress and names:
            self.progress(phase, "", 0, len(names))

        guarded = functools.partial(self._guarded, phase, work=work)
        for done, name in enumerate(self._pool.map(guarded, names), start=1):
            if self.progress:
                self.progress(phase, name, done, len(names))

    def _guarded(self, phase: str, name: str, work: Callable[[str], None]) -> str:
        """Run ``work(name)`` within operation_timeout (the session is aborted past it);
        record its NodeError, or any other failure, as the node's; return ``name``."""
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
            error = self._overran(name, phase)
        if error is not None:
            result.fail(error)
        result.duration = time.monotonic() - result.started  # so far: the real elapsed time
        return name

    def _overran(self, name: str, doing: str) -> NodeError:
        """Return the NodeError of a step on node ``name`` that ran past operation_timeout."""
        timeout = self.ssh.operation_timeout
        detail = f"{doing} took longer than operation_timeout {timeout:g}s"
        return NodeError(name, Reason.TIMEOUT, f"{detail}; the connection was closed")

    def open(self, only: set[str] | None = None) -> None:
        """Connect to every node (or those in ``only``); failures are recorded per node. Raise
        LocalFileError (for the whole action) if known_hosts or the identity file is missing, unsafe
        or damaged: that is the controller's problem, not any node's."""
        credentials = Credentials(self.ssh, self.deadlines)

        def opening(name: str) -> None:
            node = self.by_name[name]
            self.sessions[name] = connect(node, self.directory(node), credentials)
            if self.clock is not None:
                self._read_clock(name, self.sessions[name], self.clock)

        names = [n.name for n in self.nodes if only is None or n.name in only]
        self._each("connect", names, opening)

    def _read_clock(self, name: str, session: NodeSession, clock: Callable[[], float]) -> None:
        """Learn ``name``'s clock (``NodeSession.clock_skew``) within operation_timeout."""
        token = self.deadlines.arm(self.ssh.operation_timeout, session.abort)
        skew = session.clock_skew(clock)
        if not self.deadlines.disarm(token):
            raise self._overran(name, "reading the node's clock")
        if skew is not None:
            self.skews[name] = skew

    def tidy(self) -> None:
        """Remove the clock probes a killed keysyncd left on nodes in sync (phase 1 skips them)."""

        def probes(name: str) -> list[str]:
            plan = self.results[name].plan
            found = plan.cleanup if plan is not None else ()
            return [temp for temp in found if temp.startswith(CLOCK_PROBE_PREFIX)]

        stale = [
            name
            for name in self.healthy()
            if self.results[name].status == NodeStatus.IN_SYNC and probes(name)
        ]

        def tidying(name: str) -> None:
            for temp in probes(name):
                self.sessions[name].remove_quietly(temp)

        self._each("tidy", stale, tidying, writes=True)

    def _view(self, name: str, read: Callable[[], V]) -> V:
        """Return node ``name``'s view as this action last read it, unless a step wrote there since,
        else ``read()``'s (counted in ``reads``). A kept view is what a new read would return:
        keysyncd holds the lock, is the fleet's one writer (SPEC rule 7), and reads back every
        write; a hand changing a node meanwhile is caught by the read-back after the next write."""
        view = self._fresh.get(name) if self.keep_views else None
        if view is None:
            view = read()
            self.reads[name] = self.reads.get(name, 0) + 1
            self._fresh[name] = view
        return view

    def healthy(self) -> list[str]:
        """Return the names of connected nodes that have not failed."""
        return [n for n in self.sessions if self.results[n].error is None]

    def finish(self) -> dict[str, NodeResult[V, P]]:
        """Close every connection and return the results (each node's duration runs until its
        own last step ended). The reads of each node go to the meters (``metered``)."""
        for name, count in self.reads.items():
            record(name, reads=count)
        self.reads.clear()
        for session in self.sessions.values():
            with contextlib.suppress(Exception):
                session.close()
        self.sessions.clear()
        self._pool.shutdown(wait=True)
        return self.results

    def forget_views(self) -> None:
        """Forget every view kept: the next inspect reads each node again (after a wait, such
        as a hook's run, in which a hand may have changed a node: read, not assume)."""
        self._fresh.clear()

    def reset(self) -> None:
        """Forget per-step statuses of healthy nodes before a new step (keep failures)."""
        for name in self.healthy():
            self.results[name] = replace(self.results[name], status=NodeStatus.PENDING, plan=None)
