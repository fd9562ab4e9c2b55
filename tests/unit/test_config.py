"""Configuration: the annotated example, the defaults, and any value anywhere giving a Config
or a ConfigError, never a crash.

Bad inputs, each named where it is: tests/unit/test_config_errors.py.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysyncd.config import (
    Config,
    DriftConfig,
    Hooks,
    MetricsConfig,
    NodeConfig,
    ReportsConfig,
    RepositoryConfig,
    SshConfig,
    load_config,
    parse_config,
)
from keysyncd.config import load as config_module
from keysyncd.core.schedule import cron_trigger, rotation_period
from keysyncd.errors import ConfigError
from tests.config_edits import BASE, DELETE, MINIMAL, R0, edited, edited_from, write
from tests.local_cli import cli as run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "config.yaml"


# Each YAML section and the dataclass it is validated into; `source` is not a YAML key.
SECTIONS: dict[str, type] = {
    "": Config,
    "repositories[]": RepositoryConfig,
    "repositories[].hooks": Hooks,
    "ssh": SshConfig,
    "nodes[]": NodeConfig,
    "drift": DriftConfig,
    "metrics": MetricsConfig,
    "reports": ReportsConfig,
}


NOT_YAML_KEYS = {"source"}


def accepted_keys(section: str) -> set[str]:
    """Return the YAML keys ``section`` accepts, read off its dataclass."""
    return {f.name for f in dataclasses.fields(SECTIONS[section])} - NOT_YAML_KEYS


# --- the annotated example config.yaml -------------------------------------------------------


def test_example_loads_with_realistic_values() -> None:
    config = load_config(EXAMPLE)
    fernet = config.repository("fernet-tokens")
    credential = config.repository("credential-keys")
    assert (fernet.kind, fernet.path) == ("fernet", Path("/etc/keystone/fernet-keys"))
    assert (credential.kind, credential.path) == (
        "credential",
        Path("/etc/keystone/credential-keys"),
    )
    assert credential.hooks.after_rotate == (("keystone-manage", "credential_migrate"),)
    assert fernet.max_active_keys == 5
    assert config.ssh.known_hosts is not None
    assert len(config.nodes) >= 2
    assert all(node.host.startswith("192.0.2.") for node in config.nodes)  # RFC 5737


def test_example_fernet_sizing_follows_keystones_rule() -> None:
    """max_active_keys >= ceil((token_expiration + allow_expired_window) / period) + 2."""
    fernet = load_config(EXAMPLE).repository("fernet-tokens")
    trigger = cron_trigger(fernet.schedule, fernet.timezone)
    period = rotation_period(trigger, datetime(2025, 1, 1, tzinfo=UTC))
    assert period == 86400
    needed = math.ceil((fernet.token_expiration + fernet.allow_expired_window) / period) + 2
    assert needed == 5
    assert fernet.max_active_keys >= needed


def test_section_dataclasses_match_the_validator() -> None:
    """The dataclasses are the list of fields; the validator must accept exactly those."""
    assert accepted_keys("") == config_module._TOP_KEYS
    assert accepted_keys("repositories[]") == config_module._REPOSITORY_KEYS


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_example_mentions_every_accepted_key(section: str) -> None:
    """A field added to config.py without documentation in config.yaml fails here."""
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [key for key in sorted(accepted_keys(section)) if not re.search(rf"\b{key}:", text)]
    assert not missing, f"config.yaml does not document {section or 'top level'}: {missing}"


def test_example_sets_every_section_and_field() -> None:
    """Every section is really present (not only in comments) with every field set."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) == accepted_keys("")
    jws_only = {"algorithm", "private_path", "public_path"}
    for repository in data["repositories"]:
        # each sets every field that applies to its kind (max_active_keys: not to jws)
        unused = {"max_active_keys"} if repository["kind"] == "jws" else jws_only
        assert set(repository) == accepted_keys("repositories[]") - unused, repository["name"]
        assert set(repository["hooks"]) == accepted_keys("repositories[].hooks")
    assert {r["kind"] for r in data["repositories"]} == {"fernet", "credential", "jws"}
    for section in ("ssh", "drift", "metrics", "reports"):
        assert set(data[section]) == accepted_keys(section), section
    used = set().union(*(set(node) for node in data["nodes"]))
    # nodes[].path is only allowed with one repository, so the example shows it in a comment.
    assert used | {"path"} == accepted_keys("nodes[]")


def test_example_is_a_valid_config() -> None:
    config = load_config(EXAMPLE)
    assert (len(config.repositories), len(config.nodes)) == (3, 3)


@pytest.mark.skipif(
    Path("/etc/keysyncd/id_ed25519").exists(), reason="this machine has the example's files"
)
def test_check_config_names_the_example_files_this_machine_lacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "-c", str(EXAMPLE), "check-config")
    assert code == 2 and not out
    lines = err.splitlines()
    assert lines[:2] == [
        "keysyncd: error: known_hosts /etc/keysyncd/known_hosts does not exist",
        "keysyncd: error: identity_file /etc/keysyncd/id_ed25519 does not exist",
    ]
    # then what else this machine lacks: the keystone user and group, the hook commands;
    # last, the warnings: hook timeouts longer than the unit's TimeoutStopSec (300 s, 900 s)
    errors = [line for line in lines[2:] if line.startswith("keysyncd: error: ")]
    assert all(line.startswith("keysyncd: error: At 'repositories[") for line in errors)
    warnings = lines[2 + len(errors) :]
    assert [line.split("'")[1] for line in warnings] == [
        "repositories[0].hooks.timeout",
        "repositories[1].hooks.timeout",
    ], err
    assert all(line.startswith("keysyncd: warning: At ") for line in warnings)


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    (repository,) = config.repositories
    assert repository.kind == "fernet"
    assert repository.max_active_keys == 3
    assert repository.schedule == "0 0 * * *"
    assert repository.timezone == "UTC"
    assert repository.token_expiration == 3600
    assert repository.allow_expired_window == 172800
    assert (repository.owner, repository.group) == (None, None)
    assert repository.hooks == Hooks()
    assert config.nodes == ()
    assert config.report_dir == Path("/var/lib/keysyncd/reports")
    assert config.drift == DriftConfig(True, "sync", 300, "repair")
    assert config.metrics == MetricsConfig(None, None)
    assert config.reports == ReportsConfig(1000, 90)
    assert (config.ssh.port, config.ssh.concurrency, config.ssh.known_hosts) == (22, 32, None)


def test_credential_kind_defaults_to_three_keys(tmp_path: Path) -> None:
    data = {**MINIMAL, "repositories": [{**MINIMAL["repositories"][0], "kind": "credential"}]}
    assert load_config(write(tmp_path, data)).repositories[0].max_active_keys == 3


def test_six_field_schedule_and_named_timezone_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = {**MINIMAL["repositories"][0]}
    repository.update(schedule="*/5 * * * * *", timezone="Europe/Berlin")
    path = write(tmp_path, {**MINIMAL, "repositories": [repository]})
    loaded = load_config(path).repositories[0]
    assert (loaded.schedule, loaded.timezone) == ("*/5 * * * * *", "Europe/Berlin")
    trigger = cron_trigger(loaded.schedule, loaded.timezone)
    assert rotation_period(trigger, datetime(2025, 1, 1, tzinfo=UTC)) == 5
    assert run_cli(capsys, "-c", str(path), "check-config")[0] == 0


def test_hook_commands_as_strings_or_argv_lists(tmp_path: Path) -> None:
    repository = {**MINIMAL["repositories"][0]}
    repository["hooks"] = {
        "after_rotate": ["keystone-manage credential_migrate"],
        "on_failure": [["/usr/local/bin/page-oncall", "--text", "a b"]],
        "timeout": 12.5,
    }
    hooks = (
        load_config(write(tmp_path, {**MINIMAL, "repositories": [repository]}))
        .repositories[0]
        .hooks
    )
    assert hooks.after_rotate == (("keystone-manage", "credential_migrate"),)
    assert hooks.on_failure == (("/usr/local/bin/page-oncall", "--text", "a b"),)
    assert hooks.timeout == 12.5


def test_valid_config_check_config_prints_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "-c", str(write(tmp_path, MINIMAL)), "check-config")
    assert code == 0
    assert out.startswith("OK") and out.endswith(", 1 warning\n")
    # the defaults are keystone's: max_active_keys 3 is too small for a daily rotation
    [warning] = err.splitlines()
    assert warning.startswith("keysyncd: warning: fernet-tokens: unsafe: max_active_keys 3")


# --- robustness: any YAML value anywhere gives a Config or a ConfigError, never a crash -------

FIELD_PATHS = [
    *[(key,) for key in sorted(accepted_keys(""))],
    *[(*R0, key) for key in sorted(accepted_keys("repositories[]"))],
    *[(*R0, "hooks", key) for key in sorted(accepted_keys("repositories[].hooks"))],
    *[("ssh", key) for key in sorted(accepted_keys("ssh"))],
    *[("nodes", 1, key) for key in sorted(accepted_keys("nodes[]"))],
    *[
        (section, key)
        for section in ("drift", "metrics", "reports")
        for key in sorted(accepted_keys(section))
    ],
]


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["*/5 * * * * *", "0 0 * * *", "Europe/Berlin", "/abs", "a:1", "'"])
)


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(FIELD_PATHS), VALUES), max_size=3))
def test_any_value_gives_config_or_config_error(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = copy.deepcopy(BASE)
    for edit in edits:
        try:  # a later edit may reach into a section an earlier one replaced: skip it
            data = edited_from(data, edit)
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
    try:
        parse_config(data, Path("fuzz.yaml"))
    except ConfigError as error:
        assert error.problems
        assert all(p.startswith(("At '", "fuzz.yaml: ")) for p in error.problems), error.problems


def test_ssh_user_defaults_without_a_passwd_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container uid with no name must not break a config that names ssh.user."""

    def nameless() -> str:
        raise KeyError("getpwuid(): uid not found: 4242")

    monkeypatch.setattr(config_module.getpass, "getuser", nameless)
    assert load_config(write(tmp_path, BASE)).ssh.user == "keystone"
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, edited((("ssh", "user"), DELETE))))
    assert raised.value.problems == ["At 'ssh.user': is required (the current user has no name)"]
    assert load_config(write(tmp_path, MINIMAL)).ssh.user == ""  # no nodes: not needed
