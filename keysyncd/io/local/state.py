"""The state journal on disk: one JSON document per repository in ``state_dir``, written
atomically, read strictly. Load and save only; the value and its transitions are
``keysyncd.core.journal``.

A damaged file (not JSON, a field of the wrong type, NaN where a time belongs) is named with
the field that is wrong: ``damaged state file X: 'nodes.node1.generation' must be int``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from keysyncd.core.journal import (
    DURATION_BUCKETS,
    ClockRecord,
    Durations,
    HookBlock,
    LastAction,
    NodeRecord,
    PendingRotation,
    RepositoryState,
)
from keysyncd.core.jws import JwsState, Pair, Retiring
from keysyncd.core.policy import KeyHistory
from keysyncd.errors import LocalFileError, StateError
from keysyncd.io.local.fsutil import atomic_write, describe_os_error, load_json
from keysyncd.io.local.trust import check_directory, read_trusted

STATE_VERSION = 1
REPORT_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[a-z-]+-[0-9a-f]{6}")  # as reportstore names them


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
    }


def _jws_json(jws: JwsState) -> dict[str, Any]:
    return {
        "signing": {node: asdict(pair) for node, pair in sorted(jws.signing.items())},
        "next": {node: asdict(pair) for node, pair in sorted(jws.next.items())},
        "retiring": {name: asdict(key) for name, key in sorted(jws.retiring.items())},
        "serials": dict(sorted(jws.serials.items())),
    }


def _pair(entry: Any, where: str) -> Pair:
    return Pair(
        node=_field(entry, "node", where, (str,), ""),
        serial=_field(entry, "serial", where, (int,), 0),
        public=_field(entry, "public", where, (str,), ""),
        public_digest=_field(entry, "public_digest", where, (str,), ""),
        private_digest=_field(entry, "private_digest", where, (str,), ""),
        created_at=_number(entry, "created_at", where) or 0.0,
    )


def _jws(document: Any) -> JwsState | None:
    found = _field(document, "jws", "", (dict,), None)
    if found is None:
        return None
    pairs = {
        section: {
            node: _pair(entry, f"jws.{section}.{node}.")
            for node, entry in _field(found, section, "jws.", (dict,), {}).items()
        }
        for section in ("signing", "next")
    }
    retiring = {
        name: Retiring(
            node=_field(entry, "node", f"jws.retiring.{name}.", (str,), ""),
            digest=_field(entry, "digest", f"jws.retiring.{name}.", (str,), ""),
            stopped_at=_number(entry, "stopped_at", f"jws.retiring.{name}."),
        )
        for name, entry in _field(found, "retiring", "jws.", (dict,), {}).items()
    }
    serials = _numbers(found, "serials", (int,))
    return JwsState(pairs["signing"], pairs["next"], retiring, serials)


class _Damaged(ValueError):
    """A field of the state file has the wrong shape; the message names the field."""


def _field(document: Any, key: str, where: str, kinds: tuple[type, ...], default: Any) -> Any:
    if not isinstance(document, dict):
        raise _Damaged(f"{where.rstrip('.') or 'the document'} must be a JSON object")
    value = document.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python, never a valid number here; NaN and infinities are no times
    wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        wrong = True
    if wrong:
        names = " or ".join(kind.__name__ for kind in kinds)
        raise _Damaged(f"'{where}{key}' must be {names}, got {value!r:.40}")
    return value


MAX_TIME = 1e11  # epoch seconds, year 5138: anything beyond is no time keysyncd wrote


def _number(document: Any, key: str, where: str) -> float | None:
    value = _field(document, key, where, (int, float), None)
    if value is not None and not 0 <= value <= MAX_TIME:
        raise _Damaged(f"'{where}{key}' is no time keysyncd wrote: {value!r:.40}")
    return None if value is None else float(value)


def _index(key: str, where: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise _Damaged(f"'{where}' has a key {key!r:.40} that is not an index") from None


def _strings(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _Damaged(f"'{where}' must be a list of strings")
    return tuple(values)


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
            migrated_at=_number(entry, "migrated_at", where),
        )
    return history


def _pending(document: Any) -> PendingRotation | None:
    pending = _field(document, "pending", "", (dict,), None)
    if not pending:
        return None
    where = "pending."
    retire = _field(pending, "retire", where, (list,), [])
    if not all(isinstance(index, int) and not isinstance(index, bool) for index in retire):
        raise _Damaged("'pending.retire' must be a list of indices")
    return PendingRotation(
        new_primary=_field(pending, "new_primary", where, (int,), 0),
        old_staged_digest=_field(pending, "old_staged_digest", where, (str,), ""),
        new_staged_digest=_field(pending, "new_staged_digest", where, (str,), ""),
        retire=tuple(retire),
        started_at=float(_field(pending, "started_at", where, (int, float), 0.0)),
    )


def _nodes(document: Any) -> dict[str, NodeRecord]:
    nodes = _field(document, "nodes", "", (dict,), {})
    records = {}
    for name, entry in nodes.items():
        where = f"nodes.{name}."
        records[name] = NodeRecord(
            status=_field(entry, "status", where, (str,), None),
            reason=_field(entry, "reason", where, (str,), None),
            error=_field(entry, "error", where, (str,), None),
            checked_at=_number(entry, "checked_at", where),
            last_verified_at=_number(entry, "last_verified_at", where),
            generation=_field(entry, "generation", where, (int,), None),
            failures=_field(entry, "failures", where, (int,), 0),
            next_attempt_at=_number(entry, "next_attempt_at", where),
        )
    return records


def _last_action(document: Any) -> LastAction | None:
    last = _field(document, "last_action", "", (dict,), None)
    if last is None:
        return None
    where = "last_action."
    return LastAction(
        action=_field(last, "action", where, (str,), ""),
        outcome=_field(last, "outcome", where, (str,), ""),
        at=float(_field(last, "at", where, (int, float), 0.0)),
        report=_field(last, "report", where, (str,), ""),
    )


def _hook_block(document: Any) -> HookBlock | None:
    block = _field(document, "hook_block", "", (dict,), None)
    if block is None:
        return None
    where = "hook_block."
    return HookBlock(
        hook=_strings(_field(block, "hook", where, (list,), []), "hook_block.hook"),
        status=_field(block, "status", where, (int,), None),
        at=float(_field(block, "at", where, (int, float), 0.0)),
        problem=_field(block, "problem", where, (str,), ""),
    )


def _durations(document: Any) -> dict[str, Durations]:
    found = _field(document, "durations", "", (dict,), {})
    durations = {}
    for action, entry in found.items():
        where = f"durations.{action}."
        buckets = _field(entry, "buckets", where, (list,), [])
        if len(buckets) != len(DURATION_BUCKETS) or not all(
            isinstance(count, int) and not isinstance(count, bool) for count in buckets
        ):
            raise _Damaged(f"'{where}buckets' must be {len(DURATION_BUCKETS)} counts")
        durations[action] = Durations(
            tuple(buckets),
            _field(entry, "count", where, (int,), 0),
            float(_field(entry, "total", where, (int, float), 0.0)),
        )
    return durations


def _numbers(document: Any, key: str, kinds: tuple[type, ...]) -> dict[str, Any]:
    values = _field(document, key, "", (dict,), {})
    return {name: _field(values, name, f"{key}.", kinds, None) for name in values}


def _lenient(read: Any, *args: Any) -> Any:
    """Return ``read(*args)``, or None if the field is damaged: the clock's record and the
    latest time are observations that the next action makes again (``keysyncd.core.clock``
    falls back on the journal's other times), so a damaged one must not stop everything."""
    try:
        return read(*args)
    except _Damaged:
        return None


def _clock(document: Any) -> ClockRecord | None:
    found = _field(document, "clock", "", (dict,), None)
    if found is None:
        return None
    where = "clock."
    checked_at = _number(found, "checked_at", where)
    if checked_at is None:
        raise _Damaged("'clock.checked_at' is missing")
    skew = _field(found, "skew", where, (int, float), None)
    return ClockRecord(
        checked_at=checked_at,
        skew=None if skew is None else float(skew),
        observed=_field(found, "observed", where, (int,), 0),
        untrusted=_field(found, "untrusted", where, (str,), None),
    )


def _unwritten(document: Any) -> tuple[dict[str, Any], ...]:
    found = _field(document, "unwritten_reports", "", (list,), [])
    for index, report in enumerate(found):
        if not isinstance(report, dict) or not isinstance(report.get("id"), str):
            raise _Damaged(f"'unwritten_reports[{index}]' must be a report (an object with an id)")
        if not REPORT_ID.fullmatch(report["id"]):
            # the id becomes a file name in report_dir: nothing else may ever reach it
            raise _Damaged(f"'unwritten_reports[{index}].id' is no report id: {report['id']!r:.40}")
    return tuple(found)


def from_json(document: Any) -> RepositoryState:
    """Return the state in ``document``; raise ValueError naming the first wrong field."""
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise _Damaged(f"unsupported version {version!r:.40}")
    digests = _field(document, "digests", "", (dict,), {})
    for key, digest in digests.items():
        if not isinstance(digest, str):
            raise _Damaged(f"'digests.{key}' must be str")
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
        durations=_durations(document),
        jws=_jws(document),
        local_problems=_strings(
            _field(document, "local_problems", "", (list,), []), "local_problems"
        ),
        latest_time=_lenient(_number, document, "latest_time", ""),
        clock=_lenient(_clock, document),
        unwritten_reports=_unwritten(document),
    )


def load_state(state_dir: Path, name: str) -> RepositoryState:
    """Return the journal of repository ``name`` (a fresh one if none exists yet).

    Raise LocalFileError naming the file if it is unsafe, unreadable or damaged.
    """
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
