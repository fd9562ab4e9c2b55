"""One read-only shell (issue 20, item 2): ``verify``, the local check and the periodic
check of the nodes of every kind are ``keysyncd.actions.readonly``'s flows, given the kind's
part (``readonly.Kind``); every kind's part has every member of that protocol, with its
parameter names. So JWS drift has the symmetric kinds' backoff, reports and repair decision
by construction, and a kind missing a part fails here, not in the daemon.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import pytest

from keysyncd.actions import drift, jwsdrift, jwsread, readonly

# every read-only entry point the kinds' implementations call, and the shell's flow it is
ENTRY_POINTS = [
    (drift.verify_repository, readonly.verify),
    (drift.check_local, readonly.check_local),
    (drift.check_fleet, readonly.check_fleet),
    (jwsread.verify, readonly.verify),
    (jwsdrift.check_store, readonly.check_local),
    (jwsdrift.check_nodes, readonly.check_fleet),
]


def protocol_members() -> dict[str, list[str] | None]:
    """Return every member of ``readonly.Kind``: a method's parameter names, None for data."""
    members: dict[str, list[str] | None] = {"words": None}
    for name, member in vars(readonly.Kind).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            members[name] = list(inspect.signature(member).parameters)
    return members


@pytest.mark.parametrize(("entry", "flow"), ENTRY_POINTS)
def test_every_read_only_entry_point_is_the_shells_flow(entry: Any, flow: Any) -> None:
    assert isinstance(entry, partial) and entry.func is flow
    assert set(entry.keywords) == {"kind"} and not entry.args
    assert type(entry.keywords["kind"]) in (drift.SymmetricReads, jwsdrift.JwsReads)


@pytest.mark.parametrize("kind", [drift.SymmetricReads, jwsdrift.JwsReads])
def test_every_kind_brings_every_part_of_the_shell(kind: type) -> None:
    members = protocol_members()
    assert set(members) == {"words", "found", "changed", "load", "connect", "repair"}
    for name, parameters in members.items():
        assert hasattr(kind, name), f"{kind.__name__} lacks {name}"
        if parameters is not None:
            assert list(inspect.signature(getattr(kind, name)).parameters) == parameters, name


def test_the_shells_flows_keep_the_callers_signatures() -> None:
    """operations' kinds call them positionally: (run), (run, rng), (run, node)."""
    assert list(inspect.signature(drift.check_fleet).parameters)[:2] == ["run", "rng"]
    assert list(inspect.signature(jwsread.verify).parameters)[:2] == ["run", "node"]
    assert list(inspect.signature(jwsdrift.check_store).parameters)[:1] == ["run"]
