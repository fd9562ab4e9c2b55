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

from keysyncd.errors import StateError
from keysyncd.fsutil import atomic_write, describe_os_error
from keysyncd.policy import KeyHistory

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


def _from_json(document: dict[str, Any]) -> RepositoryState:
    pending = document.get("pending")
    return RepositoryState(
        name=document["name"],
        generation=int(document["generation"]),
        digests={int(k): str(v) for k, v in document["digests"].items()},
        history={int(k): KeyHistory(**v) for k, v in document["history"].items()},
        pending=_pending(pending),
        last_rotation_at=document.get("last_rotation_at"),
        last_action=document.get("last_action"),
        hook_block=document.get("hook_block"),
        nodes=dict(document.get("nodes") or {}),
        last_success=dict(document.get("last_success") or {}),
        counters=dict(document.get("counters") or {}),
        local_problems=tuple(document.get("local_problems") or ()),
    )


def _pending(document: dict[str, Any] | None) -> PendingRotation | None:
    if not document:
        return None
    return PendingRotation(**{**document, "retire": tuple(document["retire"])})


def load_state(state_dir: Path, name: str) -> RepositoryState:
    """Return the journal of repository ``name`` (a fresh one if none exists yet).

    Raise StateError if the file exists but cannot be read or is damaged.
    """
    path = _path(state_dir, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return RepositoryState(name=name)
    except OSError as error:
        raise StateError(f"cannot read state {path}: {describe_os_error(error)}") from None
    try:
        document = json.loads(text)
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported version {document.get('version')!r}")
        return _from_json(document)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StateError(f"damaged state file {path}: {error}") from None


def save_state(state_dir: Path, state: RepositoryState) -> None:
    """Write ``state`` atomically; raise StateError if it cannot be written."""
    path = _path(state_dir, state.name)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = json.dumps(_to_json(state), indent=2, sort_keys=True).encode()
        atomic_write(path, content + b"\n")
    except OSError as error:
        raise StateError(f"cannot write state {path}: {describe_os_error(error)}") from None
