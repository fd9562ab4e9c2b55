"""JWS key pairs across the fleet: read each node's two directories as keystone sees them,
add public keys (phase 1), then fix what is wrong and install private keys (phase 2). Every
upload is written in the private directory and renamed into place, so nothing but complete
public keys ever appears in a public directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from keysyncd.config import NodeConfig
from keysyncd.core.access import UNREACHABLE_ADVICE, User
from keysyncd.core.changewords import describe_jws
from keysyncd.core.jws import PRIVATE_NAME
from keysyncd.core.jwskeys import public_of_private, public_problem
from keysyncd.core.jwsplan import JwsExpected, JwsNodePlan, JwsView, diff_jws
from keysyncd.core.keyring import digest_of
from keysyncd.core.names import DIRECTORY_MODE, MAX_PEM, show_name
from keysyncd.core.view import Entry, EntryType, unread, with_content
from keysyncd.core.vocabulary import NodeStatus, Reason
from keysyncd.errors import NodeError
from keysyncd.io.remote.fanout import Fanout
from keysyncd.io.remote.sftp import NodeSession

Expected = Callable[[str], JwsExpected]


class JwsFleet(Fanout[JwsView, JwsNodePlan]):
    """The fan-out of one action on a ``jws`` repository."""

    def directory(self, node: NodeConfig) -> Path:
        """Return where ``node``'s session is rooted: its private directory."""
        return self.repository.jws_directories(node.path)[0]

    @property
    def user(self) -> User | None:
        """Return who must reach the keys (keystone): None when no owner is configured."""
        uid, gid = self.owner
        name = self.repository.owner
        return None if uid is None else User(uid, gid, name if isinstance(name, str) else None)

    def _public_session(self, name: str) -> NodeSession:
        public = self.repository.jws_directories(self.by_name[name].path)[1]
        return self.sessions[name].rooted(public)

    # --- reading ---------------------------------------------------------------------------

    def read_view(self, name: str) -> JwsView:
        """Return what node ``name`` holds, every file keystone would read judged; the directories
        above both key directories are looked at only when an owner is configured."""
        private, public = self.sessions[name], self._public_session(name)
        above = self.user is not None
        public_info, public_above = public.directory_and_ancestors(above)
        public_mode = None if public_info is None else public_info.mode
        public_entries: tuple[Entry, ...] = ()
        if public_mode is not None:
            _, listed, _ = public.list_every_entry()
            public_entries = self._judged(public, listed)
        private_info, private_above = private.directory_and_ancestors(above)
        private_mode = None if private_info is None else private_info.mode
        private_key: Entry | None = None
        temps: tuple[str, ...] = ()
        if private_mode is not None:
            _, listed, temps = private.list_every_entry()
            found = [entry for entry in listed if entry.name == PRIVATE_NAME]
            private_key = self._judged(private, found[:1], public=False)[0] if found else None
        # each directory once, from the top down (both usually share every one)
        upper = {info.path: info for info in (*private_above, *public_above)}
        return JwsView(
            public_mode,
            public_entries,
            private_mode,
            private_key,
            temps,
            public_info,
            private_info,
            tuple(upper.values()),
        )

    def _judged(
        self, session: NodeSession, entries: Sequence[Entry], public: bool = True
    ) -> tuple[Entry, ...]:
        """Return ``entries`` with every regular file of a plausible size read (all at once:
        ``read_many``, at most MAX_PEM bytes each) and judged; one larger is judged unread."""
        wanted = [e for e in entries if e.type is EntryType.FILE and 0 < e.size <= MAX_PEM]
        contents = dict(
            zip((e.name for e in wanted), session.read_many(wanted, MAX_PEM), strict=True)
        )
        algorithm = self.repository.algorithm
        problem_of: Callable[[bytes], str | None] = (
            (lambda content: public_problem(content, algorithm)) if public else (lambda c: None)
        )
        return tuple(
            with_content(entry, contents[entry.name], problem_of, MAX_PEM)
            if entry.name in contents
            else unread(entry, MAX_PEM)
            if entry.type is EntryType.FILE and entry.size > MAX_PEM
            else entry
            for entry in entries
        )

    def inspect(self, expected: Expected) -> None:
        """Plan every healthy node against ``expected(node)`` from its view (``Fanout._view``):
        after phase 1, only the nodes it wrote are read again for the gate."""

        def inspecting(name: str) -> None:
            result = self.results[name]
            result.view = self._view(name, lambda: self.read_view(name))
            self._plan(name, expected)

        self._each("inspect", self.healthy(), inspecting)

    def replan(self, expected: Expected) -> None:
        """Plan every inspected node again (the expectations changed, the views did not)."""
        for name in self.healthy():
            if self.results[name].view is not None:
                self._plan(name, expected)

    def _plan(self, name: str, expected: Expected) -> None:
        result = self.results[name]
        assert result.view is not None  # noqa: S101 - inspected first
        result.plan = diff_jws(expected(name), result.view, self.owner[0], self.user)
        result.status = NodeStatus.IN_SYNC if result.plan.in_sync else NodeStatus.DIFFERS

    # --- writing ---------------------------------------------------------------------------

    def phase1(self, public_keys: Mapping[str, bytes]) -> None:
        """On every differing node: create missing directories, add missing public keys.
        A node with nothing of that to do is not touched (its view stays current)."""
        self.tidy()
        pending = [
            n
            for n in self.healthy()
            if self.results[n].status == NodeStatus.DIFFERS and _adds(self.results[n].plan)
        ]

        def adding(name: str) -> None:
            plan = self.results[name].plan
            assert plan is not None  # noqa: S101 - inspected first
            private, public = self.sessions[name], self._public_session(name)
            for directory in plan.make_directories:
                (private if directory == "private" else public).make_directory(
                    DIRECTORY_MODE, *self.owner
                )
            for stale in plan.cleanup:
                private.remove_quietly(stale)
            for key in plan.add:
                self._upload(private, public_keys[key], public, key)

        self._each("phase 1", pending, adding, writes=True)

    def phase2(self, public_keys: Mapping[str, bytes], private_keys: Mapping[str, bytes]) -> None:
        """On every differing node: fix or remove wrong public entries and directory modes,
        and install ``private_keys[node]`` (only the nodes the gate let through)."""
        pending = [n for n in self.healthy() if self.results[n].status == NodeStatus.DIFFERS]

        def fixing(name: str) -> None:
            result = self.results[name]
            plan = result.plan
            assert plan is not None  # noqa: S101 - inspected first
            private, public = self.sessions[name], self._public_session(name)
            for key in (*plan.replace, *plan.rewrite):  # a fresh copy, never a chmod
                self._upload(private, public_keys[key], public, key)
            for entry in plan.delete:
                public.remove(entry)
            for directory in plan.fix_modes:
                (private if directory == "private" else public).chmod_directory(
                    DIRECTORY_MODE, *self.owner
                )
            if name in private_keys:
                self._upload(private, private_keys[name], private, PRIVATE_NAME)
            result.status = NodeStatus.UPDATED
            if plan.invalid:
                result.fail(NodeError(name, Reason.INVALID_ENTRY, describe_jws(plan.changes())))

        self._each("phase 2", pending, fixing, writes=True)

    def _upload(self, private: NodeSession, content: bytes, target: NodeSession, name: str) -> None:
        temp = private.write_temp(content, *self.owner)
        try:
            private.move_to(temp, target, name)
        except NodeError:
            private.remove_quietly(temp)
            raise

    def verify(self, expected: Expected) -> None:
        """Read back every healthy node written since it was last read (the others' views
        are current); in_sync only if it holds exactly ``expected``."""

        def verifying(name: str) -> None:
            result = self.results[name]
            view = self._view(name, lambda: self.read_view(name))
            result.verified = view
            check = diff_jws(expected(name), view, self.owner[0], self.user)
            if check.in_sync:
                if result.status != NodeStatus.UPDATED:
                    result.status = NodeStatus.IN_SYNC
                return
            detail = "read-back differs: " + describe_jws(check.changes())
            reason = Reason.DIGEST_MISMATCH
            if check.unreachable is not None:  # only the node's administrator can fix it
                reason, detail = Reason.PERMISSION, detail + UNREACHABLE_ADVICE
            result.fail(NodeError(name, reason, detail))
            result.plan = check

        self._each("verify", self.healthy(), verifying)

    # --- adopting what the nodes hold ------------------------------------------------------

    def public_contents(self, name: str) -> dict[str, bytes]:
        """Return node ``name``'s public keys by file name; raise NodeError for anything else."""
        public = self._public_session(name)
        _, listed, _ = public.list_every_entry()
        found = {}
        for entry in listed:
            content = None
            if entry.type is EntryType.FILE and 0 < entry.size <= MAX_PEM:
                content = public.read(entry, MAX_PEM)
            if content is None or public_problem(content, self.repository.algorithm):
                raise NodeError(
                    name,
                    Reason.INVALID_ENTRY,
                    f"{show_name(entry.name)} in its public directory is not a "
                    f"{self.repository.algorithm} public key",
                )
            found[entry.name] = content
        return found

    def private_public(self, name: str) -> tuple[bytes, str]:
        """Return (the public half, the digest) of node ``name``'s private.pem (the private key goes
        no further); raise NodeError if it is no private key of the repository's algorithm."""
        view = self.results[name].view
        entry = view.private_key if view is not None else None
        if entry is not None and entry.type is not EntryType.FILE:
            entry = None  # never opened through a link (a FIFO behind it would block)
        content = self.sessions[name].read(entry, MAX_PEM) if entry is not None else None
        public = public_of_private(content, self.repository.algorithm) if content else None
        if content is None or public is None:
            raise NodeError(
                name,
                Reason.INVALID_ENTRY,
                f"no {self.repository.algorithm} private key in its {PRIVATE_NAME}",
            )
        return public, digest_of(content)

    def held_public_keys(self, name: str) -> list[bytes]:
        """Return every public key of the repository's algorithm in node ``name``'s public directory
        (anything else skipped): does the node already hold a key another node offers?"""
        public = self._public_session(name)
        if public.directory_mode() is None:
            return []
        _, listed, _ = public.list_every_entry()
        wanted = [e for e in listed if e.type is EntryType.FILE and 0 < e.size <= MAX_PEM]
        algorithm = self.repository.algorithm
        return [
            content
            for content in public.read_many(wanted, MAX_PEM)
            if content is not None and public_problem(content, algorithm) is None
        ]


def _adds(plan: JwsNodePlan | None) -> bool:
    """Return True if ``plan`` has phase 1 work: directories, temp files, public keys to add."""
    return plan is not None and bool(plan.make_directories or plan.cleanup or plan.add)
