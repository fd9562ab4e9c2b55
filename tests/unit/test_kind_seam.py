"""One seam for key kinds (issue 20, item 1): a kind is registered once, in
``keysyncd.core.kinds``; its model picks its implementation in the one binding
``keysyncd.actions.operations.IMPLEMENTATIONS``; every implementation has every operation of
the ``Kind`` protocol, and its steps (``Kind.steps``) every operation of the action shell's
``Steps`` protocol (with ``Kind``'s parameter names; as many as ``Steps`` takes, which the
shell passes by position). A kind missing an operation fails here, not in a command. The
pure planners are registered once, with the models. Config validation accepts exactly the
registry's names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.actions import bootstrap, jws, jwsread, operations
from keysyncd.actions import distribute as rotate
from keysyncd.actions.operations import IMPLEMENTATIONS, Kind, SymmetricKind
from keysyncd.actions.shell import Adoption, Steps
from keysyncd.commands.cli import main
from keysyncd.config.load import parse_config
from keysyncd.core import kinds, policy
from keysyncd.core.jwsconverge import plan_converge
from keysyncd.core.kinds import KINDS, SYMMETRIC, JwsModel, KeyKind, SymmetricModel
from keysyncd.errors import ConfigError


def protocol_operations(protocol: type = Kind) -> dict[str, list[str]]:
    """Return every operation of ``protocol`` with its parameter names (``self`` included)."""
    return {
        name: list(inspect.signature(member).parameters)
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def missing_operations(
    implementation: type, protocol: type = Kind, named: bool = True
) -> list[str]:
    """Return each ``protocol`` operation ``implementation`` lacks, is not callable, or
    takes other parameters than the protocol names (``named``; else other than as many:
    the shell passes its arguments by position); empty: it implements every operation."""
    found = []
    for name, parameters in protocol_operations(protocol).items():
        member = getattr(implementation, name, None)
        if member is None or not callable(member):
            found.append(f"{name}: missing")
            continue
        has = list(inspect.signature(member).parameters)
        if (has != parameters) if named else (len(has) != len(parameters)):
            found.append(f"{name}: parameters {has}")
    return found


SHELLS = {"steps": Steps, "adoption": Adoption}  # a Kind operation -> the shell's protocol


def kind_problems(implementation: Any) -> list[str]:
    """Return what ``implementation`` lacks of ``Kind``, then what its steps lack of the
    shell's ``Steps`` (as ``steps.<operation>``) and its adoption steps of ``Adoption`` (as
    ``adoption.<operation>``); empty: it implements every operation."""
    found = missing_operations(type(implementation))
    for operation, protocol in SHELLS.items():
        if f"{operation}: missing" not in found:
            lacking = missing_operations(getattr(implementation, operation)(), protocol, False)
            found += [f"{operation}.{problem}" for problem in lacking]
    return found


def test_the_protocols_have_every_operation_of_the_seam() -> None:
    assert set(protocol_operations()) == {
        *("status", "lifecycles", "rotate", "sync", "verify", "init", "adoption"),
        *("check_local", "check_fleet", "watched", "steps"),
    }
    assert set(protocol_operations(Steps)) == {
        "before_gate",
        "plan",
        "gate",
        "regate",
        "promote",
        "close",
    }
    assert set(protocol_operations(Adoption)) == {"read", "plan", "take"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_registered_kind_has_an_implementation_of_every_operation(name: str) -> None:
    model = KINDS[name].model
    assert model.name in IMPLEMENTATIONS, f"kind {name}: no implementation of model {model.name}"
    assert kind_problems(IMPLEMENTATIONS[model.name]) == []


def test_the_steps_are_those_the_actions_run() -> None:
    assert IMPLEMENTATIONS["symmetric"].steps() is rotate._Symmetric
    assert IMPLEMENTATIONS["jws"].steps() is jws._Jws
    assert IMPLEMENTATIONS["symmetric"].adoption() is bootstrap.Adopt
    assert IMPLEMENTATIONS["jws"].adoption() is jwsread.Adopt


def test_a_kind_missing_an_operation_is_reported_by_the_operation_s_name() -> None:
    class Incomplete(SymmetricKind):
        rotate = None  # type: ignore[assignment]  # deliberately not an operation

        def sync(self, run: Any, node: Any, dry_run: Any, force: Any) -> Any:  # type: ignore[override]  # wrong names on purpose
            return None

    assert missing_operations(Incomplete) == [
        "rotate: missing",
        "sync: parameters ['self', 'run', 'node', 'dry_run', 'force']",
    ]

    class Bare:
        def status(self, config: Any, repository: Any, now: Any) -> Any:
            return None

    missing = missing_operations(Bare)
    assert "watched: missing" in missing and "status: missing" not in missing
    assert len(missing) == len(protocol_operations()) - 1
    assert kind_problems(Bare()) == missing


def test_a_kind_whose_steps_miss_an_operation_is_reported_by_the_operation_s_name() -> None:
    class HalfSteps:
        def before_gate(self, act: Any) -> Any:
            return None

        def plan(self, act: Any, state: Any) -> Any:
            return None

        def gate(self, act: Any) -> Any:
            return None

        close = "not callable"

    class Halfway(SymmetricKind):
        def steps(self) -> Any:
            return HalfSteps

    assert kind_problems(Halfway()) == [
        "steps.gate: parameters ['self', 'act']",
        "steps.regate: missing",
        "steps.promote: missing",
        "steps.close: missing",
    ]


def test_a_kind_missing_the_adopt_operation_is_reported_by_its_name() -> None:
    class NoAdoption(SymmetricKind):
        adoption = None  # type: ignore[assignment]  # deliberately not an operation

    assert kind_problems(NoAdoption()) == ["adoption: missing"]

    class HalfAdoption:
        def __init__(self, run: Any, source: Any) -> None:
            pass

        def read(self, act: Any) -> Any:
            return None

        plan = "not callable"

    class Halfway(SymmetricKind):
        def adoption(self) -> Any:
            return HalfAdoption

    assert kind_problems(Halfway()) == [
        "adoption.read: parameters ['self', 'act']",
        "adoption.plan: missing",
        "adoption.take: missing",
    ]


def test_the_planners_are_registered_once_with_their_model() -> None:
    assert KINDS["jws"].model_as(JwsModel).plan is plan_converge  # the one JWS planner
    for name in ("fernet", "credential"):
        assert KINDS[name].model_as(SymmetricModel).plan_rotation is policy.plan_rotation
    with pytest.raises(TypeError, match="kind fernet has the symmetric model, not jws"):
        KINDS["fernet"].model_as(JwsModel)


def test_a_kind_registered_with_a_new_model_and_no_implementation_fails_the_seam_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class RsaModel:
        name = "rsa"
        pairs_per_node = True

    monkeypatch.setitem(KINDS, "rsa", KeyKind("rsa", "RSA pairs", RsaModel()))  # type: ignore[arg-type]  # a model keysyncd lacks
    unbound = [n for n, kind in KINDS.items() if kind.model.name not in IMPLEMENTATIONS]
    assert unbound == ["rsa"]


def config(kind: str) -> dict[str, Any]:
    return {
        "state_dir": "/var/lib/keysyncd",
        "repositories": [{"name": "r", "kind": kind, "path": "/etc/keys/r"}],
    }


@pytest.mark.parametrize("name", sorted(KINDS))
def test_config_accepts_every_registered_kind(name: str) -> None:
    loaded = parse_config(config(name), Path("/etc/keysyncd/config.yaml"))
    repository = loaded.repositories[0]
    assert repository.key_kind is KINDS[name]
    assert operations.of(repository) is IMPLEMENTATIONS[KINDS[name].model.name]


@pytest.mark.parametrize("name", ["rsa", "Fernet", "jwt", "symmetric", ""])
def test_config_refuses_a_kind_not_in_the_registry_in_one_line(name: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(config(name), Path("/etc/keysyncd/config.yaml"))
    assert raised.value.problems == [
        f"At 'repositories[0].kind': must be one of {', '.join(sorted(KINDS))}, got {name!r}"
    ]


def test_a_kind_registered_once_in_core_is_accepted_and_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new kind of an existing model needs one line: its entry in the core registry."""
    monkeypatch.setitem(KINDS, "fernet2", KeyKind("fernet2", "more Fernet keys", SYMMETRIC))
    repository = parse_config(config("fernet2"), Path("/c.yaml")).repositories[0]
    assert operations.of(repository) is IMPLEMENTATIONS["symmetric"]
    assert repository.max_active_keys == 3 and repository.policy().retire_by == "time"


def test_kind_only_fields_come_from_the_registry() -> None:
    assert {"algorithm", "private_path", "public_path"} == kinds.KIND_FIELDS
    document = config("fernet")
    document["repositories"][0]["public_path"] = "/etc/keys/public"
    with pytest.raises(ConfigError) as raised:
        parse_config(document, Path("/c.yaml"))
    assert raised.value.problems == [
        "At 'repositories[0].public_path': applies to kind jws only (this is kind fernet)"
    ]


def test_check_config_refuses_a_kind_not_in_the_registry_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    document = config("rsa")
    document["state_dir"] = str(tmp_path / "state")
    document["repositories"][0]["path"] = str(tmp_path / "keys")
    path.write_text(yaml.safe_dump(document))
    assert main(["-c", str(path), "check-config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "keysyncd: config error: At 'repositories[0].kind': must be one of "
        f"{', '.join(sorted(KINDS))}, got 'rsa'"
    ]
