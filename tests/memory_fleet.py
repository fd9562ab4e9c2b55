"""An in-memory fleet for the fleet model tests, and the rules every node's key files must keep.

``MemorySession`` stands in for the SFTP session to a node (files and modes in memory; a node
that is down refuses the connection), ``NoCredentials`` for the SSH credentials. The rule
checks (``repository_problems``, ``primaries_problem``, ``tokens_problem``) read keys with
keystone's own ``MultiFernet``. Used by tests/unit/test_fleet_model.py and
tests/unit/test_clock_quorum.py; ``FleetMachine`` (tests/fleet_machine.py) checks them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from keysyncd.config import Config, NodeConfig, parse_config
from keysyncd.core.keyring import digest_of
from keysyncd.core.names import MAX_KEY_FILE, TEMP_PREFIX, key_index
from keysyncd.core.view import Entry, EntryType
from keysyncd.errors import NodeError
from keysyncd.io.local.fsutil import temp_name
from keysyncd.io.remote.sftpread import Listing

EPOCH = 1_700_000_000.0


CONTROLLER = "controller"


NODE_NAMES = ("node1", "node2", "node3")


Files = Mapping[str, bytes]


DigestState = frozenset[tuple[int, str]]


@dataclass(frozen=True)
class Token:
    """A token keystone on ``source`` encrypted with its primary key at ``issued_at``."""

    token: bytes
    issued_at: float
    source: str
    what: str


# --- what keystone sees in a directory -------------------------------------------------------


def key_files(files: Files) -> dict[int, bytes]:
    """Return index -> content of the files keystone would load (integer names, not empty)."""
    keys = {}
    for name, content in files.items():
        try:
            index = int(name)
        except ValueError:
            continue
        if content:
            keys[index] = content
    return keys


def keystone_multifernet(files: Files) -> MultiFernet:
    """Return the MultiFernet keystone builds from ``files``: primary first, then descending."""
    keys = key_files(files)
    return MultiFernet([Fernet(keys[index]) for index in sorted(keys, reverse=True)])


def primary_of(files: Files) -> bytes | None:
    """Return the content of the primary key (highest index above 0), or None."""
    above = [index for index in key_files(files) if index > 0]
    return key_files(files)[max(above)] if above else None


def digest_state(files: Files) -> DigestState:
    """Return the repository state of ``files`` as (index, sha256) pairs."""
    return frozenset((index, digest_of(content)) for index, content in key_files(files).items())


def repository_problems(files: Files, settled: bool) -> list[str]:
    """Return why ``files`` is not a valid keystone repository (empty when it is).

    ``settled``: no push is under way, so no temp file may be left behind either.
    """
    problems = []
    keys = key_files(files)
    for name, content in files.items():
        if name.startswith(TEMP_PREFIX):
            if settled:
                problems.append(f"temp file {name} left behind")
            continue
        if name not in {str(index) for index in keys}:
            problems.append(f"unexpected file {name!r}")
            continue
        try:
            Fernet(content)
        except (ValueError, TypeError):
            problems.append(f"key {name} is not a valid Fernet key")
    if 0 not in keys:
        problems.append("no staged key 0")
    if primary_of(files) is None:
        problems.append("no primary key")
    return problems


# --- the in-memory fleet ---------------------------------------------------------------------


class ModelNode:
    """One node's repository directory in memory: files, their modes, the directory mode."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.directory_mode = 0o700
        self.listing: set[str] = set()  # the names before the last operation
        self.dies_after: int | None = None  # writes it completes before it goes down, if armed


class ModelFleet:
    """The in-memory nodes, one lock for every file operation, and an observer.

    ``observer`` is called (under the lock) after every change on any node, so the machine
    can check the rules that must hold while a push is under way, between any two operations.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.nodes = {name: ModelNode(name) for name in names}
        self.lock = threading.RLock()
        self.observer: Callable[[str, str], None] | None = None
        self.operations = 0

    def changed(self, node: ModelNode, what: str) -> None:
        self.operations += 1
        if self.observer is not None:
            self.observer(node.name, what)
        node.listing = set(node.files)

    def connect(self, node: NodeConfig, directory: Path, credentials: object) -> MemorySession:
        """Stand-in for keysyncd.io.remote.ssh.connect: a session, or NodeError if it is down."""
        model = self.nodes[node.name]
        if not model.up:
            raise NodeError(node.name, "unreachable", "connection refused (model node is down)")
        return MemorySession(self, model)


class MemorySession:
    """The NodeSession methods FleetAction calls, over a ModelNode (same errors, same rules)."""

    def __init__(self, fleet: ModelFleet, node: ModelNode) -> None:
        self.fleet = fleet
        self.node = node
        self.closed = False

    def _check(self, doing: str, writes: bool = True) -> None:
        node = self.node
        if writes and node.dies_after is not None:  # armed: the node dies before this write
            if node.dies_after == 0:
                node.up, node.dies_after = False, None
            else:
                node.dies_after -= 1
        if self.closed or not node.up:
            raise NodeError(self.node.name, "unreachable", f"connection lost while {doing}")

    def _missing(self, name: str, doing: str) -> NodeError:
        return NodeError(self.node.name, "error", f"no such file {name} while {doing}")

    def list_directory(self, above: bool = False) -> Listing:  # no directory above is modelled
        mode, entries, temps = self.list_every_entry()
        keys = tuple(entry for entry in entries if key_index(entry.name) is not None)
        return Listing(mode, keys, temps)  # S_IMODE, as the real one

    def directory_mode(self) -> int:
        with self.fleet.lock:
            self._check("looking at the directory", writes=False)
            return self.node.directory_mode

    def list_every_entry(self) -> tuple[int, tuple[Entry, ...], tuple[str, ...]]:
        """Every name, as init's check for a directory holding other files reads it."""
        with self.fleet.lock:
            self._check("listing", writes=False)
            files = sorted(self.node.files.items())
            entries = tuple(
                Entry(name, EntryType.FILE, self.node.modes[name], len(content), 0, 0)
                for name, content in files
            )
            temps = tuple(name for name, _ in files if name.startswith(TEMP_PREFIX))
            return self.node.directory_mode, entries, temps

    def read(self, entry: Entry) -> bytes:
        name = entry.name
        with self.fleet.lock:
            self._check(f"reading {name}", writes=False)
            if name not in self.node.files:
                raise self._missing(name, "reading")
            return self.node.files[name][: MAX_KEY_FILE + 1]

    def read_many(self, entries: Sequence[Entry]) -> list[bytes | None]:
        # One file after another, each under the lock: a writer may come between any two,
        # which allows every interleaving the real two-batch read allows, and more.
        return [self.read(entry) for entry in entries]

    def clock_skew(self, clock: Callable[[], float]) -> float | None:
        """The model's nodes keep the controller's time (the machine's clock is theirs)."""
        with self.fleet.lock:
            self._check("reading the clock", writes=False)
            return 0.0

    def write_temp(self, content: bytes, uid: int | None, gid: int | None) -> str:
        with self.fleet.lock:
            self._check("writing a temp file")
            name = temp_name()
            assert name not in self.node.files, "temp names must be exclusive"
            self.node.files[name] = bytes(content)
            self.node.modes[name] = 0o600
            self.fleet.changed(self.node, f"write {name}")
            return name

    def rename(self, source: str, target: str) -> None:
        with self.fleet.lock:
            self._check(f"renaming into {target}")
            if source not in self.node.files:
                raise self._missing(source, f"renaming into {target}")
            self.node.files[target] = self.node.files.pop(source)
            self.node.modes[target] = self.node.modes.pop(source)
            self.fleet.changed(self.node, f"rename {source} -> {target}")

    def remove(self, name: str) -> None:
        with self.fleet.lock:
            self._check(f"removing {name}")
            if name not in self.node.files:
                raise self._missing(name, "removing")
            del self.node.files[name]
            del self.node.modes[name]
            self.fleet.changed(self.node, f"remove {name}")

    def remove_quietly(self, name: str) -> None:
        with contextlib.suppress(NodeError):
            self.remove(name)

    def chmod_directory(self, mode: int, uid: int | None = None, gid: int | None = None) -> None:
        with self.fleet.lock:
            self._check("changing the mode of the directory")
            self.node.directory_mode = mode & 0o7777
            self.fleet.changed(self.node, f"chmod directory {mode:o}")

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class NoCredentials:
    """Stand-in for keysyncd.io.remote.ssh.Credentials: no known_hosts or key files are read."""

    def __init__(self, ssh: object, deadlines: object = None) -> None:
        self.ssh = ssh


def outcome_with(down: list[str], nodes: tuple[str, ...]) -> str:
    """Return the report outcome of a push with ``down`` nodes unreachable."""
    if not down:
        return "ok"
    return "failed" if len(down) == len(nodes) else "partial"


def primaries_problem(
    holders: Mapping[str, Files], readers: Mapping[str, Files] | None = None
) -> str | None:
    """Return which holder (or reader) lacks which holder's primary key (by content), or None."""
    everyone = {**holders, **(readers or {})}
    contents = {name: set(key_files(files).values()) for name, files in everyone.items()}
    for source, files in holders.items():
        primary = primary_of(files)
        for holder, held in contents.items():
            if holder != source and primary not in held:
                return f"{holder} lacks the primary key of {source}"
    return None


def tokens_problem(holders: Mapping[str, Files], tokens: list[Token], now: float) -> str | None:
    """Return which holder cannot decrypt which still-valid token, or None."""
    for name, files in holders.items():
        fernet = keystone_multifernet(files)
        for token in tokens:
            try:
                fernet.decrypt(token.token)
            except InvalidToken:
                return (
                    f"{name} cannot decrypt a token issued by {token.source} at "
                    f"{token.issued_at:.3f} (after {token.what}) "
                    f"that may still be valid at {now:.3f}: a key it needs was retired too "
                    "early (SPEC safety rule 2)"
                )
    return None


def memory_config(
    root: Path, nodes: Sequence[str], repository: Mapping[str, Any], **ssh: Any
) -> Config:
    """Return the config of one fernet repository under ``root`` (with ``repository``'s
    fields) over the in-memory ``nodes``; ``ssh`` adds fields to the ssh section."""
    document = {
        "state_dir": str(root / "state"),
        "report_dir": str(root / "reports"),
        "repositories": [
            {"name": "fernet-tokens", "kind": "fernet", "path": str(root / "keys"), **repository}
        ],
        # Credentials are patched out (NoCredentials): these files are never read.
        "ssh": {
            "user": "keystone",
            "known_hosts": "/nonexistent/known_hosts",
            "identity_file": "/nonexistent/id_ed25519",
            **ssh,
        },
        "nodes": [{"name": name, "host": "127.0.0.1", "port": 22} for name in nodes],
    }
    return parse_config(document, root / "config.yaml")
