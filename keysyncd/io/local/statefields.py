"""The parts of a state file, read strictly: a wrong field raises ``Damaged`` naming it
(``'nodes.node1.generation' must be int``); bool is never a number, NaN never a time."""

from __future__ import annotations

import math
import re
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from keysyncd.core.journal import (
    DURATION_BUCKETS,
    ClockRecord,
    Durations,
    HookBlock,
    LastAction,
    NodeRecord,
    PendingRotation,
)
from keysyncd.core.policy import KeyHistory

if TYPE_CHECKING:
    from keysyncd.core.jws import JwsState, Pair
    from keysyncd.core.revocation import Revocation, RevokedKey

REPORT_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[a-z-]+-[0-9a-f]{6}")  # as reportstore names them
SHA256 = re.compile(r"[0-9a-f]{64}")  # a digest keysyncd wrote: nothing else is ever revoked


def _pair(entry: Any, where: str) -> Pair:
    from keysyncd.core.jws import Pair

    return Pair(
        node=field(entry, "node", where, (str,), ""),
        serial=field(entry, "serial", where, (int,), 0),
        public=field(entry, "public", where, (str,), ""),
        public_digest=field(entry, "public_digest", where, (str,), ""),
        private_digest=field(entry, "private_digest", where, (str,), ""),
        created_at=number(entry, "created_at", where) or 0.0,
    )


def read_jws(document: Any) -> JwsState | None:
    """Return the JWS key pairs of every node (None: not a JWS repository)."""
    found = field(document, "jws", "", (dict,), None)
    if found is None:
        return None
    from keysyncd.core.jws import JwsState, Retiring  # here: a jws repository's state only

    pairs = {
        section: {
            node: _pair(entry, f"jws.{section}.{node}.")
            for node, entry in field(found, section, "jws.", (dict,), {}).items()
        }
        for section in ("signing", "next")
    }
    retiring = {
        name: Retiring(
            node=field(entry, "node", f"jws.retiring.{name}.", (str,), ""),
            digest=field(entry, "digest", f"jws.retiring.{name}.", (str,), ""),
            stopped_at=number(entry, "stopped_at", f"jws.retiring.{name}."),
        )
        for name, entry in field(found, "retiring", "jws.", (dict,), {}).items()
    }
    serials = numbers(found, "serials", (int,))
    return JwsState(pairs["signing"], pairs["next"], retiring, serials)


class Damaged(ValueError):
    """A field of the state file has the wrong shape; the message names the field."""


def field(document: Any, key: str, where: str, kinds: tuple[type, ...], default: Any) -> Any:
    """Return ``document[key]`` (``default`` if absent); raise Damaged unless it is of ``kinds``."""
    if not isinstance(document, dict):
        raise Damaged(f"{where.rstrip('.') or 'the document'} must be a JSON object")
    value = document.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python, never a valid number here; NaN and infinities are no times
    wrong = not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        wrong = True
    if wrong:
        names = " or ".join(kind.__name__ for kind in kinds)
        raise Damaged(f"'{where}{key}' must be {names}, got {value!r:.40}")
    return value


MAX_TIME = 1e11  # epoch seconds, year 5138: anything beyond is no time keysyncd wrote


def number(document: Any, key: str, where: str) -> float | None:
    """Return a time field (None if absent); raise Damaged unless it is a time keysyncd wrote."""
    value = field(document, key, where, (int, float), None)
    if value is not None and not 0 <= value <= MAX_TIME:
        raise Damaged(f"'{where}{key}' is no time keysyncd wrote: {value!r:.40}")
    return None if value is None else float(value)


def index_of(key: str, where: str) -> int:
    """Return ``key`` as a key index; raise Damaged if it is none."""
    try:
        return int(key)
    except ValueError:
        raise Damaged(f"'{where}' has a key {key!r:.40} that is not an index") from None


def strings(values: Any, where: str) -> tuple[str, ...]:
    """Return ``values`` as strings; raise Damaged unless it is a list of strings."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Damaged(f"'{where}' must be a list of strings")
    return tuple(values)


def read_history(document: Any) -> dict[int, KeyHistory]:
    """Return each key's history by index."""
    history = {}
    for key, entry in field(document, "history", "", (dict,), {}).items():
        # every field of a key's history is a time
        times = {
            each.name: number(entry, each.name, f"history.{key}.") for each in fields(KeyHistory)
        }
        history[index_of(key, "history")] = KeyHistory(**times)
    return history


def read_pending(document: Any) -> PendingRotation | None:
    """Return the rotation in flight (None: none)."""
    pending = field(document, "pending", "", (dict,), None)
    if not pending:
        return None
    where = "pending."
    retire = field(pending, "retire", where, (list,), [])
    if not all(isinstance(index, int) and not isinstance(index, bool) for index in retire):
        raise Damaged("'pending.retire' must be a list of indices")
    return PendingRotation(
        new_primary=field(pending, "new_primary", where, (int,), 0),
        old_staged_digest=field(pending, "old_staged_digest", where, (str,), ""),
        new_staged_digest=field(pending, "new_staged_digest", where, (str,), ""),
        retire=tuple(retire),
        started_at=float(field(pending, "started_at", where, (int, float), 0.0)),
    )


def read_nodes(document: Any) -> dict[str, NodeRecord]:
    """Return what keysyncd last knew of each node, by name."""
    nodes = field(document, "nodes", "", (dict,), {})
    records = {}
    for name, entry in nodes.items():
        where = f"nodes.{name}."
        records[name] = NodeRecord(
            status=field(entry, "status", where, (str,), None),
            reason=field(entry, "reason", where, (str,), None),
            error=field(entry, "error", where, (str,), None),
            checked_at=number(entry, "checked_at", where),
            last_verified_at=number(entry, "last_verified_at", where),
            generation=field(entry, "generation", where, (int,), None),
            failures=field(entry, "failures", where, (int,), 0),
            next_attempt_at=number(entry, "next_attempt_at", where),
        )
    return records


def read_last_action(document: Any) -> LastAction | None:
    """Return the last action's summary (None: no action yet)."""
    last = field(document, "last_action", "", (dict,), None)
    if last is None:
        return None
    where = "last_action."
    return LastAction(
        action=field(last, "action", where, (str,), ""),
        outcome=field(last, "outcome", where, (str,), ""),
        at=float(field(last, "at", where, (int, float), 0.0)),
        report=field(last, "report", where, (str,), ""),
    )


def read_hook_block(document: Any) -> HookBlock | None:
    """Return the after_rotate hook that blocks rotation (None: none)."""
    block = field(document, "hook_block", "", (dict,), None)
    if block is None:
        return None
    where = "hook_block."
    return HookBlock(
        hook=strings(field(block, "hook", where, (list,), []), "hook_block.hook"),
        status=field(block, "status", where, (int,), None),
        at=float(field(block, "at", where, (int, float), 0.0)),
        problem=field(block, "problem", where, (str,), ""),
    )


def read_durations(document: Any) -> dict[str, Durations]:
    """Return each action's duration histogram."""
    found = field(document, "durations", "", (dict,), {})
    durations = {}
    for action, entry in found.items():
        where = f"durations.{action}."
        buckets = field(entry, "buckets", where, (list,), [])
        if len(buckets) != len(DURATION_BUCKETS) or not all(
            isinstance(count, int) and not isinstance(count, bool) for count in buckets
        ):
            raise Damaged(f"'{where}buckets' must be {len(DURATION_BUCKETS)} counts")
        durations[action] = Durations(
            tuple(buckets),
            field(entry, "count", where, (int,), 0),
            float(field(entry, "total", where, (int, float), 0.0)),
        )
    return durations


def numbers(document: Any, key: str, kinds: tuple[type, ...]) -> dict[str, Any]:
    """Return the object ``key`` of names to numbers of ``kinds``."""
    values = field(document, key, "", (dict,), {})
    return {name: field(values, name, f"{key}.", kinds, None) for name in values}


def lenient(read: Any, *args: Any) -> Any:
    """Return ``read(*args)``, or None if the field is damaged: the clock's record and the latest
    time are observed again by the next action, so a damaged one must not stop everything."""
    try:
        return read(*args)
    except Damaged:
        return None


def read_clock(document: Any) -> ClockRecord | None:
    """Return the clock's last judgement (None: none yet)."""
    found = field(document, "clock", "", (dict,), None)
    if found is None:
        return None
    where = "clock."
    checked_at = number(found, "checked_at", where)
    if checked_at is None:
        raise Damaged("'clock.checked_at' is missing")
    skew = field(found, "skew", where, (int, float), None)
    return ClockRecord(
        checked_at=checked_at,
        skew=None if skew is None else float(skew),
        observed=field(found, "observed", where, (int,), 0),
        untrusted=field(found, "untrusted", where, (str,), None),
    )


def read_unwritten(document: Any) -> tuple[dict[str, Any], ...]:
    """Return the reports kept until report_dir can take them; their ids must be report ids."""
    found = field(document, "unwritten_reports", "", (list,), [])
    for index, report in enumerate(found):
        if not isinstance(report, dict) or not isinstance(report.get("id"), str):
            raise Damaged(f"'unwritten_reports[{index}]' must be a report (an object with an id)")
        if not REPORT_ID.fullmatch(report["id"]):
            # the id becomes a file name in report_dir: nothing else may ever reach it
            raise Damaged(f"'unwritten_reports[{index}].id' is no report id: {report['id']!r:.40}")
    return tuple(found)


def read_revoked(document: Any) -> tuple[RevokedKey, ...]:
    """Return every key ever revoked (digest, reason, when)."""
    found = field(document, "revoked", "", (list,), [])
    if not found:
        return ()
    from keysyncd.core.revocation import RevokedKey  # a state with revoked keys only (start-up)

    return tuple(
        RevokedKey(
            digest=digest(entry, "digest", f"revoked[{n}]."),
            reason=field(entry, "reason", f"revoked[{n}].", (str,), ""),
            at=number(entry, "at", f"revoked[{n}].") or 0.0,
        )
        for n, entry in enumerate(found)
    )


def read_revocation(document: Any) -> Revocation | None:
    """Return the revocation under way (None: none)."""
    found = field(document, "revocation", "", (dict,), None)
    if found is None:
        return None
    from keysyncd.core.revocation import Revocation  # one under way only (start-up)

    where = "revocation."
    more = strings(field(found, "more", where, (list,), []), f"{where}more")
    if bad := next((d for d in more if not SHA256.fullmatch(d)), None):
        raise Damaged(f"'{where}more' holds {bad!r:.40}, no sha256 digest")
    return Revocation(
        digest=digest(found, "digest", where),
        reason=field(found, "reason", where, (str,), ""),
        started_at=number(found, "started_at", where) or 0.0,
        forced=field(found, "forced", where, (bool,), False),
        nodes=strings(field(found, "nodes", where, (list,), []), f"{where}nodes"),
        more=more,
    )


def digest(document: Any, key: str, where: str) -> str:
    """Return the sha256 digest at ``key``; raise Damaged unless it is one (64 hex digits)."""
    value = field(document, key, where, (str,), "")
    if not SHA256.fullmatch(value):
        raise Damaged(f"'{where}{key}' is no sha256 digest: {value!r:.40}")
    return str(value)
