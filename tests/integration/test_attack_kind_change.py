"""Attack: an operator changes a repository's ``kind`` in the config after keysyncd has
written its keys and journal. Every command must answer with a clear error or work, never
fail with an internal error (a KeyError, a TypeError from the kind registry, ...).
Commands run with ``--debug`` so an internal error raises here. Real OpenSSH fleet."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.errors import KeysyncError
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import jws_config

COMMANDS = (
    ["check-config"],
    ["status"],
    ["--json", "status"],
    ["plan"],
    ["verify"],
    ["rotate", "--dry-run"],
    ["sync", "--dry-run"],
    ["sync"],
    ["rotate"],
)


def _set(config: Path, **fields: object) -> None:
    document = yaml.safe_load(config.read_text())
    repository = document["repositories"][0]
    for name, value in fields.items():
        if value is None:
            repository.pop(name, None)
        else:
            repository[name] = value
    config.write_text(yaml.safe_dump(document))


def _every_command_answers(config: Path) -> None:
    for command in COMMANDS:
        with contextlib.suppress(KeysyncError, SystemExit):  # a clear refusal answers
            main(["--debug", "-c", str(config), *command])


@pytest.mark.parametrize("new", ["jws", "credential"])
def test_a_fernet_repository_turned_into_another_kind(
    fleet: Fleet, tmp_path: Path, new: str
) -> None:
    config = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    _set(config, kind=new, max_active_keys=None if new == "jws" else 3)
    _every_command_answers(config)


def test_a_jws_repository_turned_into_fernet(fleet: Fleet, tmp_path: Path) -> None:
    config = jws_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    assert main(["-c", str(config), "rotate"]) == 0
    _set(config, kind="fernet", private_path=None, public_path=None, algorithm=None)
    _every_command_answers(config)
