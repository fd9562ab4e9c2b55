"""The state journal on disk: one JSON document per repository in ``state_dir``, written
atomically, read strictly (a damaged file is named with its wrong field). The value and its
transitions are ``keysyncd.core.journal``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keysyncd.core.journal import RepositoryState
from keysyncd.errors import LocalFileError, StateError
from keysyncd.io.local.fsutil import atomic_write, describe_os_error, load_json
from keysyncd.io.local.statefields import (
    Damaged,
    field,
    index_of,
    lenient,
    number,
    numbers,
    read_clock,
    read_durations,
    read_history,
    read_hook_block,
    read_jws,
    read_last_action,
    read_nodes,
    read_pending,
    read_revocation,
    read_revoked,
    read_unwritten,
    strings,
)
from keysyncd.io.local.trust import check_directory, read_trusted

if TYPE_CHECKING:
    from keysyncd.core.jws import JwsState

STATE_VERSION = 1


def state_path(state_dir: Path, name: str) -> Path:
    """Return where repository ``name``'s journal lives."""
    return state_dir / "repositories" / f"{name}.json"


def to_json(state: RepositoryState) -> dict[str, Any]:
    """Return ``state`` as the JSON document saved on disk (no key material: digests only)."""
    return {
        "version": STATE_VERSION,
        "name": state.name,
        "generation": state.generation,
        "digests": {str(k): v for k, v in sorted(state.digests.items())},
        "history": {str(k): asdict(v) for k, v in sorted(state.history.items())},
        "pending": None if state.pending is None else asdict(state.pending),
        "last_rotation_at": state.last_rotation_at,
        "last_action": None if state.last_action is None else asdict(state.last_action),
        "hook_block": None if state.hook_block is None else asdict(state.hook_block),
        "nodes": {name: asdict(record) for name, record in sorted(state.nodes.items())},
        "last_success": dict(state.last_success),
        "counters": dict(state.counters),
        "durations": {action: asdict(d) for action, d in sorted(state.durations.items())},
        "local_problems": list(state.local_problems),
        "jws": None if state.jws is None else _jws_json(state.jws),
        "latest_time": state.latest_time,
        "clock": None if state.clock is None else asdict(state.clock),
        "unwritten_reports": [dict(document) for document in state.unwritten_reports],
        "revoked": [asdict(key) for key in state.revoked],
        "revocation": None if state.revocation is None else asdict(state.revocation),
    }


def _jws_json(jws: JwsState) -> dict[str, Any]:
    return {
        "signing": {node: asdict(pair) for node, pair in sorted(jws.signing.items())},
        "next": {node: asdict(pair) for node, pair in sorted(jws.next.items())},
        "retiring": {name: asdict(key) for name, key in sorted(jws.retiring.items())},
        "serials": dict(sorted(jws.serials.items())),
    }


def from_json(document: Any) -> RepositoryState:
    """Return the state in ``document``; raise ValueError naming the first wrong field."""
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise Damaged(f"unsupported version {version!r:.40}")
    digests = field(document, "digests", "", (dict,), {})
    for key, digest in digests.items():
        if not isinstance(digest, str):
            raise Damaged(f"'digests.{key}' must be str")
    return RepositoryState(
        name=field(document, "name", "", (str,), ""),
        generation=field(document, "generation", "", (int,), 0),
        digests={index_of(k, "digests"): v for k, v in digests.items()},
        history=read_history(document),
        pending=read_pending(document),
        last_rotation_at=number(document, "last_rotation_at", ""),
        last_action=read_last_action(document),
        hook_block=read_hook_block(document),
        nodes=read_nodes(document),
        last_success=numbers(document, "last_success", (int, float)),
        counters=numbers(document, "counters", (int,)),
        durations=read_durations(document),
        jws=read_jws(document),
        local_problems=strings(
            field(document, "local_problems", "", (list,), []), "local_problems"
        ),
        latest_time=lenient(number, document, "latest_time", ""),
        clock=lenient(read_clock, document),
        unwritten_reports=read_unwritten(document),
        revoked=read_revoked(document),
        revocation=read_revocation(document),
    )


def load_state(state_dir: Path, name: str) -> RepositoryState:
    """Return ``name``'s journal (fresh if none); raise LocalFileError if unsafe or damaged."""
    path = state_path(state_dir, name)
    check_directory(state_dir, "state_dir")
    check_directory(path.parent, "state directory")
    content = read_trusted(path)
    if content is None:
        return RepositoryState(name=name)
    try:
        return from_json(load_json(content))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise LocalFileError(f"damaged state file {path}: {error}") from None


def save_state(state_dir: Path, state: RepositoryState) -> None:
    """Write ``state`` atomically; raise StateError if it cannot be written (disk full...)."""
    path = state_path(state_dir, state.name)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = json.dumps(to_json(state), indent=2, sort_keys=True, allow_nan=False)
        atomic_write(path, content.encode() + b"\n")
    except OSError as error:
        raise StateError(f"cannot write state {path}: {describe_os_error(error)}") from None
