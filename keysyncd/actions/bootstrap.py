"""Create a repository (``init``) or take one over from a node (``adopt``), under the lock.

Both refuse, before writing anything, where a key set already exists: re-bootstrapping a
live cluster invalidates every token (an outage), and adopting over local keys loses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from keysyncd.actions.context import ActionResult, Run
from keysyncd.actions.distribute import Symmetric
from keysyncd.actions.inspect import open_repository
from keysyncd.actions.local import initialise
from keysyncd.actions.preview import retirement_json
from keysyncd.actions.shell import Act, Gate, execute
from keysyncd.core import journal
from keysyncd.core.adoption import Adopted, differing_nodes, key_differences
from keysyncd.core.journal import RepositoryState
from keysyncd.core.keyring import Key, KeySet, digest_of
from keysyncd.core.names import MAX_KEY_FILE, show_name
from keysyncd.core.nodeplan import divergence
from keysyncd.core.report import NodeOutcome
from keysyncd.core.revocation import held_revoked
from keysyncd.core.text import named, plural, printable
from keysyncd.core.view import entry_problem
from keysyncd.core.vocabulary import Action, Outcome
from keysyncd.errors import KeysyncError
from keysyncd.io.local.repolinks import local_others, refusal, symmetric_file
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.fleet import FleetAction, push_keyset, refuse_occupied_nodes
from keysyncd.io.remote.sftp import NodeSession


def init_repository(run: Run, dry_run: bool = False) -> ActionResult:
    """Create {0, 1} locally and push it to every node; return what happened.

    Raise KeysyncError, before writing anything, if the local repository or any reachable
    node already holds keys. ``dry_run`` checks both and writes nothing.
    """
    act = Act(run, Action.INIT, run.clock())
    steps = _Init(run, False, dry=dry_run)
    return steps.preview(act) if dry_run else execute(act, steps)


class _Init(Symmetric):
    """The steps of init: refuse wherever keys exist, create {0, 1} (keystone's
    fernet_setup) and push them."""

    def before_gate(self, act: Act) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Refuse if the local repository, then any reachable node, holds keys; judge the
        clock (no quorum: no node has a directory to read one in yet); return the journal."""
        config = self.run.repository
        self.repository = open_repository(config)
        if self.repository.holds_keys():
            raise KeysyncError(
                f"{config.name}: refusing to initialise {config.path}: it already holds keys; "
                "'keysyncd rotate' rotates them, 'keysyncd sync' pushes them"
            )
        if others := local_others(config.path, symmetric_file):
            raise KeysyncError(refusal("", config.path, others))
        state = load_state(self.run.config.state_dir, config.name)
        self.connect(act, state, quorum=False)
        if self.fleet is not None:
            self.fleet.inspect({})
            results = self.fleet.results.items()
            holding = sorted(n for n, r in results if r.view and r.view.keystone.ids)
            if holding:
                raise KeysyncError(
                    f"{config.name}: refusing to initialise: {named('node', holding)} "
                    f"already {'holds' if len(holding) == 1 else 'hold'} keys; "
                    "use 'keysyncd adopt --from NODE' to take them over"
                )
            refuse_occupied_nodes(self.fleet, symmetric_file)
        return state, {}

    def plan(self, act: Act, state: RepositoryState) -> dict[str, Any]:
        """Return the plan: keys 0 and 1 (a dry run says so)."""
        if self.dry:
            where = self.run.repository.path
            act.messages.append(f"would create keys 0 and 1 in {where} and push them")
        return retirement_json((), (), (0, 1))

    def promote(self, act: Act, gated: Gate) -> tuple[RepositoryState, dict[str, NodeOutcome]]:
        """Create {0, 1}, push them, read every node back; return the journal, the nodes."""
        state = initialise(self.run, self.repository, self.state)
        if self.fleet is not None:
            self.fleet.reset()
            push_keyset(self.fleet, self.repository.load())
        return self.checked(state)

    def foresee(self, act: Act) -> tuple[dict[str, dict[str, Any]], Outcome | None]:
        """Return nothing more (every node was read by the refusal)."""
        return {}, None


class Adopt:
    """The steps of adopt (``keysyncd.actions.shell.Adoption``): take node ``source``'s keys
    as they are, naming every other node whose keys differ (the next sync overwrites them).
    Adopted keys count as demoted now, so none is retired before it is safe."""

    def __init__(self, run: Run, source: str, dry: bool) -> None:
        self.run, self.source, self.dry = run, source, dry

    def read(self, act: Act, connections: ExitStack) -> RepositoryState:
        """Read the source's keys, compare every other node with them; return the journal.
        Raise KeysyncError if the controller holds keys or the source cannot be read."""
        config, source = self.run.repository, self.source
        self.repository = open_repository(config)
        if self.repository.holds_keys():
            raise KeysyncError(
                f"{config.name}: refusing to adopt: {config.path} already holds keys; move "
                "them away first to take the node's keys instead, or 'keysyncd sync --force "
                "--node NODE' to give the node the controller's"
            )
        fleet = connections.enter_context(self.run.fleet(observe_clock=not self.dry))
        assert fleet is not None  # noqa: S101 - source is a configured node
        result = fleet.results[source]
        if result.error is not None:
            raise KeysyncError(f"cannot adopt from node {source}: {result.error.detail}")
        self.materials = _source_keys(fleet.sessions[source], source)
        self.differing = _differing(fleet, source, self.materials)
        return load_state(self.run.config.state_dir, config.name)

    def plan(self, act: Act, state: RepositoryState) -> Adopted:
        """Return the keys adopted and the nodes that differ; say it. Raise KeysyncError if
        the source's keys are invalid."""
        materials, differing, source = self.materials, self.differing, self.source
        keyset = KeySet.of(Key(index, material) for index, material in materials.items())
        kind = self.repository.kind
        problems = [f"{i}: {p}" for i, m in materials.items() if (p := kind.problem(m))]
        if problems := problems + keyset.problems():
            raise KeysyncError(f"cannot adopt from node {source}: " + "; ".join(problems))
        if revoked := held_revoked(keyset.digests(), state.revoked):  # never again (SPEC 10)
            index, digest = revoked[0]
            raise KeysyncError(
                f"cannot adopt from node {source}: its key {index} (sha256:{digest[:16]}) was "
                "revoked; remove it there (or adopt from another node)"
            )
        warnings = differing_nodes(source, differing)
        verb = "differs" if len(differing) == 1 else "differ"
        differ = f"{plural(len(differing), 'other node')} {verb}"
        others = f"; {differ}" if differing else ""
        act.messages += [f"adopted keys {list(keyset.indices)} from node {source}{others}"]
        act.messages += warnings
        what = f"keys {list(keyset.indices)}" + (f" ({differ})" if differing else "")
        adopted = {"source": source, "adopted": list(keyset.indices)}
        return Adopted(what, tuple(warnings), adopted | {"differing_nodes": differing})

    def take(self, act: Act, state: RepositoryState) -> RepositoryState:
        """Write the source's keys (the primary first, 0 last); return the journal."""
        order = (*sorted((i for i in self.materials if i > 0), reverse=True), 0)
        self.repository.write_keys(self.materials, order)
        digests = self.repository.load().digests()
        return journal.reconcile(state, digests, self.run.clock())[0]


def _source_keys(session: NodeSession, source: str) -> dict[int, bytes]:
    listing = session.list_directory()
    # Only what keysyncd itself would write can be adopted: anything else at a key name
    # (``099``, a symlink, a FIFO) is for the operator to explain first.
    odd = [
        f"{show_name(entry.name)} ({problem})"
        for entry in listing.entries
        if (problem := entry_problem(entry) or _size_problem(entry.size))
    ]
    if odd:
        raise KeysyncError(
            f"cannot adopt from node {source}: not keys keysyncd can take over: " + ", ".join(odd)
        )
    materials = {}
    for entry in listing.entries:
        content = session.read(entry)
        if content is None:
            raise KeysyncError(
                f"cannot adopt from node {source}: {entry.name} changed "
                "while it was read; try again"
            )
        materials[int(entry.name)] = content
    return materials


def _differing(
    fleet: FleetAction, source: str, materials: Mapping[int, bytes]
) -> dict[str, dict[str, Any]]:
    """Return, for every other node whose keys differ from ``materials``, how (or why it
    could not be read): the operator decides, the next sync overwrites them."""
    expected = {index: digest_of(material) for index, material in materials.items()}
    fleet.inspect(expected, force=True)  # force: a plan even for a node holding newer keys
    differing: dict[str, dict[str, Any]] = {}
    for node, result in sorted(fleet.results.items()):
        if node == source:
            continue
        if result.error is not None or result.plan is None or result.view is None:
            why = result.error.detail if result.error is not None else "not read"
            differing[node] = {"error": printable(why)}
        elif found := key_differences(result.plan, divergence(expected, result.view)):
            differing[node] = found
    return differing


def _size_problem(size: int) -> str | None:
    if size == 0:
        return "empty"
    return f"larger than {MAX_KEY_FILE} bytes" if size > MAX_KEY_FILE else None
