"""The state journal in ``state_dir``: one JSON document per repository, written atomically.

It records the generation (a number that only grows), the digests of that
generation, each key's history, an in-flight rotation (for crash recovery), the
last action and per-node status. It never holds key material, only digests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from keysyncd.core.policy import KeyHistory
from keysyncd.errors import LocalFileError, StateError
from keysyncd.io.fsutil import atomic_write, describe_os_error
from keysyncd.io.trust import check_directory, read_trusted

STATE_VERSION = 1


@dataclass(frozen=True)
class PendingRotation:
    """A rotation that was started: enough to finish or roll it back after a crash."""

    new_primary: int
    old_staged_digest: str
    new_staged_digest: str
    retire: tuple[int, ...]
    started_at: float


@dataclass(frozen=True)
class RepositoryState:
    """Everything keysyncd remembers about one repository."""

    name: str
    generation: int = 0
    digests: dict[int, str] = field(default_factory=dict)
    history: dict[int, KeyHistory] = field(default_factory=dict)
    pending: PendingRotation | None = None
    last_rotation_at: float | None = None
    last_action: dict[str, Any] | None = None
    hook_block: dict[str, Any] | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_success: dict[str, float] = field(default_factory=dict)  # action -> when it last was ok
    counters: dict[str, int] = field(default_factory=dict)  # e.g. drift:missing, deferred
    local_problems: tuple[str, ...] = ()  # why the local repository is invalid, if it is

    def counted(self, *names: str) -> RepositoryState:
        """Return this state with each counter in ``names`` increased by one."""
        counters = dict(self.counters)
        for name in names:
            counters[name] = counters.get(name, 0) + 1
        return replace(self, counters=counters)

    def with_generation(
        self, digests: dict[int, str], history: dict[int, KeyHistory]
    ) -> RepositoryState:
        """Return this state advanced to a new generation holding ``digests``."""
        return replace(
            self,
            generation=self.generation + 1,
            digests=dict(digests),
            history=dict(history),
            pending=None,
        )


def _path(state_dir: Path, name: str) -> Path:
    return state_dir / "repositories" / f"{name}.json"


def _to_json(state: RepositoryState) -> dict[str, Any]:
    document = asdict(state)
    document["version"] = STATE_VERSION
    document["digests"] = {str(k): v for k, v in state.digests.items()}
    document["history"] = {str(k): asdict(v) for k, v in state.history.items()}
    return document


class _Damaged(ValueError):
    """A field of the state file has the wrong shape; the message names the field."""


def _field(document: Any, key: str, where: str, kinds: tuple[type, ...], default: Any) -> Any:
    if not isinstance(document, dict):
        raise _Damaged(f"{where or 'the document'} must be a JSON object")
    value = document.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python, never a valid number here
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise _Damaged(f"'{where}{key}' must be {names}, got {type(value).__name__}")
    return value


def _number(document: Any, key: str, where: str) -> float | None:
    value = _field(document, key, where, (int, float), None)
    return None if value is None else float(value)


def _index(key: str, where: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise _Damaged(f"'{where}' has a key {key!r} that is not an index") from None


def _history(document: Any) -> dict[int, KeyHistory]:
    entries = _field(document, "history", "", (dict,), {})
    history = {}
    for key, entry in entries.items():
        where = f"history.{key}."
        history[_index(key, "history")] = KeyHistory(
            created_at=_number(entry, "created_at", where),
            promoted_at=_number(entry, "promoted_at", where),
            demoted_at=_number(entry, "demoted_at", where),
            confirmed_at=_number(entry, "confirmed_at", where),
        )
    return history


def _pending(document: Any) -> PendingRotation | None:
    pending = _field(document, "pending", "", (dict,), None)
    if not pending:
        return None
    retire = _field(pending, "retire", "pending.", (list,), [])
    if not all(isinstance(index, int) and not isinstance(index, bool) for index in retire):
        raise _Damaged("'pending.retire' must be a list of indices")
    return PendingRotation(
        new_primary=_field(pending, "new_primary", "pending.", (int,), 0),
        old_staged_digest=_field(pending, "old_staged_digest", "pending.", (str,), ""),
        new_staged_digest=_field(pending, "new_staged_digest", "pending.", (str,), ""),
        retire=tuple(retire),
        started_at=float(_field(pending, "started_at", "pending.", (int, float), 0.0)),
    )


def _nodes(document: Any) -> dict[str, dict[str, Any]]:
    nodes = _field(document, "nodes", "", (dict,), {})
    for name, entry in nodes.items():
        where = f"nodes.{name}."
        for key in ("status", "error", "reason"):
            _field(entry, key, where, (str,), None)
        for key in ("checked_at", "last_verified_at", "next_attempt_at"):
            _number(entry, key, where)
        for key in ("generation", "failures"):
            _field(entry, key, where, (int,), None)
    return dict(nodes)


def _numbers(document: Any, key: str, kinds: tuple[type, ...]) -> dict[str, Any]:
    values = _field(document, key, "", (dict,), {})
    for name in values:
        _field(values, name, f"{key}.", kinds, None)
    return dict(values)


def _hook_block(document: Any) -> dict[str, Any] | None:
    block = _field(document, "hook_block", "", (dict,), None)
    if block is not None:
        hook = _field(block, "hook", "hook_block.", (list,), [])
        if not all(isinstance(argument, str) for argument in hook):
            raise _Damaged("'hook_block.hook' must be a list of strings")
        _field(block, "status", "hook_block.", (int,), None)
        _number(block, "at", "hook_block.")
    return block


def _last_action(document: Any) -> dict[str, Any] | None:
    last = _field(document, "last_action", "", (dict,), None)
    if last is not None:
        for key in ("action", "outcome", "report"):
            _field(last, key, "last_action.", (str,), None)
        _number(last, "at", "last_action.")
    return last


def _from_json(document: Any) -> RepositoryState:
    """Return the state in ``document``; raise _Damaged naming the first wrong field."""
    digests = _field(document, "digests", "", (dict,), {})
    for key, digest in digests.items():
        if not isinstance(digest, str):
            raise _Damaged(f"'digests.{key}' must be str, got {type(digest).__name__}")
    problems = _field(document, "local_problems", "", (list,), [])
    return RepositoryState(
        name=_field(document, "name", "", (str,), ""),
        generation=_field(document, "generation", "", (int,), 0),
        digests={_index(k, "digests"): v for k, v in digests.items()},
        history=_history(document),
        pending=_pending(document),
        last_rotation_at=_number(document, "last_rotation_at", ""),
        last_action=_last_action(document),
        hook_block=_hook_block(document),
        nodes=_nodes(document),
        last_success=_numbers(document, "last_success", (int, float)),
        counters=_numbers(document, "counters", (int,)),
        local_problems=tuple(str(problem) for problem in problems),
    )


def load_state(state_dir: Path, name: str) -> RepositoryState:
    """Return the journal of repository ``name`` (a fresh one if none exists yet).

    Raise LocalFileError naming the file if it is unsafe, unreadable or damaged.
    """
    path = _path(state_dir, name)
    check_directory(state_dir, "state_dir")
    check_directory(path.parent, "state directory")
    content = read_trusted(path)
    if content is None:
        return RepositoryState(name=name)
    try:
        document = json.loads(content)
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            version = document.get("version") if isinstance(document, dict) else None
            raise _Damaged(f"unsupported version {version!r}")
        return _from_json(document)
    except (ValueError, UnicodeDecodeError) as error:
        raise LocalFileError(f"damaged state file {path}: {error}") from None


def save_state(state_dir: Path, state: RepositoryState) -> None:
    """Write ``state`` atomically; raise StateError if it cannot be written."""
    path = _path(state_dir, state.name)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = json.dumps(_to_json(state), indent=2, sort_keys=True).encode()
        atomic_write(path, content + b"\n")
    except OSError as error:
        raise StateError(f"cannot write state {path}: {describe_os_error(error)}") from None
