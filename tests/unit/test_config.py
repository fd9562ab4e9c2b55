"""Configuration: the annotated example, defaults, and every kind of bad input via the CLI.

Bad inputs go through the real entry point ``keysyncd.commands.cli.main`` (``check-config``):
each must exit 2 and name where the problem is ("At 'repositories[0].max_active_keys': ...",
or the file and line for problems YAML itself reports), without a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keysyncd.commands.cli import main
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


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """cli.main() replaces the root logger's handlers with one bound to the captured stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI entry point; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, data: Any, name: str = "config.yaml") -> Path:
    """Write ``data`` (YAML text if a str, else dumped as YAML) and return the file."""
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


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


# --- defaults and accepted values -------------------------------------------------------------

MINIMAL = {
    "state_dir": "/var/lib/keysyncd",
    "repositories": [{"name": "fernet-tokens", "path": "/etc/keystone/fernet-keys"}],
}


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


# --- bad inputs, each through the real CLI ----------------------------------------------------

BASE: dict[str, Any] = {
    "state_dir": "/var/lib/keysyncd",
    "repositories": [{"name": "fernet-tokens", "path": "/etc/keystone/fernet-keys"}],
    "ssh": {"user": "keystone", "known_hosts": "/etc/keysyncd/known_hosts"},
    "nodes": [{"name": "ctl1", "host": "192.0.2.11"}, {"name": "ctl2", "host": "192.0.2.12"}],
}
DELETE = object()
R0 = ("repositories", 0)


def edited_from(data: dict[str, Any], edit: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with one (key path, value) set, or deleted for DELETE."""
    data = copy.deepcopy(data)
    keys, value = edit
    target: Any = data
    for key in keys[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


def edited(*edits: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    """Return a copy of BASE with each (key path, value) set, or deleted for DELETE."""
    data = BASE
    for edit in edits:
        data = edited_from(data, edit)
    return copy.deepcopy(data)


def second_repository(**fields: Any) -> dict[str, Any]:
    return edited(
        (("repositories",), [*BASE["repositories"], {"name": "credential-keys", **fields}])
    )


# (case id, config data or raw YAML text, text stderr must contain; {path} is the file)
BAD: list[tuple[str, Any, str]] = [
    # wrong types
    (
        "max_active_keys-string",
        edited(((*R0, "max_active_keys"), "five")),
        "At 'repositories[0].max_active_keys'",
    ),
    (
        "max_active_keys-bool",
        edited(((*R0, "max_active_keys"), True)),
        "At 'repositories[0].max_active_keys'",
    ),
    (
        "max_active_keys-float",
        edited(((*R0, "max_active_keys"), 5.0)),
        "At 'repositories[0].max_active_keys'",
    ),
    (
        "connect_timeout-string",
        edited((("ssh", "connect_timeout"), "10s")),
        "At 'ssh.connect_timeout'",
    ),
    ("watch_local-string", edited((("drift", "watch_local"), "yes")), "At 'drift.watch_local'"),
    ("ssh-list", edited((("ssh",), ["keystone"])), "At 'ssh'"),
    ("nodes-mapping", edited((("nodes",), {"ctl1": "192.0.2.11"})), "At 'nodes'"),
    ("repository-string", edited((("repositories",), ["fernet-tokens"])), "At 'repositories[0]'"),
    ("owner-negative", edited(((*R0, "owner"), -1)), "At 'repositories[0].owner'"),
    # out of range
    (
        "max_active_keys-1",
        edited(((*R0, "max_active_keys"), 1)),
        "At 'repositories[0].max_active_keys'",
    ),
    (
        "max_active_keys-0",
        edited(((*R0, "max_active_keys"), 0)),
        "At 'repositories[0].max_active_keys'",
    ),
    ("ssh-port-0", edited((("ssh", "port"), 0)), "At 'ssh.port'"),
    ("node-port-70000", edited((("nodes", 1, "port"), 70000)), "At 'nodes[1].port'"),
    ("concurrency-0", edited((("ssh", "concurrency"), 0)), "At 'ssh.concurrency'"),
    ("verify_interval-0", edited((("drift", "verify_interval"), 0)), "At 'drift.verify_interval'"),
    (
        "allow_expired_window-negative",
        edited(((*R0, "allow_expired_window"), -1)),
        "At 'repositories[0].allow_expired_window'",
    ),
    (
        "token_expiration-0",
        edited(((*R0, "token_expiration"), 0)),
        "At 'repositories[0].token_expiration'",
    ),
    ("keep_count-0", edited((("reports", "keep_count"), 0)), "At 'reports.keep_count'"),
    (
        "hooks-timeout-0",
        edited(((*R0, "hooks", "timeout"), 0)),
        "At 'repositories[0].hooks.timeout'",
    ),
    (
        "hooks-timeout-nan",
        edited(((*R0, "hooks", "timeout"), float("nan"))),
        "At 'repositories[0].hooks.timeout'",
    ),
    # unknown keys, top level and nested
    ("unknown-top-level", edited((("node",), [])), "At 'node': unknown key"),
    (
        "typo-max_active_key",
        edited(((*R0, "max_active_key"), 5)),
        "At 'repositories[0].max_active_key': unknown key",
    ),
    ("typo-nodes-prot", edited((("nodes", 1, "prot"), 2222)), "At 'nodes[1].prot': unknown key"),
    (
        "typo-hooks",
        edited(((*R0, "hooks", "after_rotation"), [])),
        "At 'repositories[0].hooks.after_rotation': unknown key",
    ),
    # missing or empty required values
    ("no-repositories", edited((("repositories",), DELETE)), "At 'repositories'"),
    ("empty-repositories", edited((("repositories",), [])), "At 'repositories'"),
    ("repository-without-name", edited(((*R0, "name"), DELETE)), "At 'repositories[0].name'"),
    ("repository-without-path", edited(((*R0, "path"), DELETE)), "At 'repositories[0].path'"),
    ("node-without-host", edited((("nodes", 0, "host"), DELETE)), "At 'nodes[0].host'"),
    (
        "nodes-without-known_hosts",
        edited((("ssh", "known_hosts"), DELETE)),
        "At 'ssh.known_hosts': is required",
    ),
    # names
    ("name-with-space", edited(((*R0, "name"), "fernet tokens")), "At 'repositories[0].name'"),
    ("name-trailing-newline", edited((("nodes", 0, "name"), "ctl1\n")), "At 'nodes[0].name'"),
    (
        "duplicate-repository",
        second_repository(path="/etc/keystone/credential-keys", name="fernet-tokens"),
        "At 'repositories[1].name': duplicate name 'fernet-tokens'",
    ),
    (
        "duplicate-node",
        edited((("nodes", 1, "name"), "ctl1")),
        "At 'nodes[1].name': duplicate name 'ctl1'",
    ),
    (
        "duplicate-after-invalid-entry",
        edited((("repositories",), ["junk", *BASE["repositories"], *BASE["repositories"]])),
        "At 'repositories[2].name': duplicate name",
    ),
    # paths
    (
        "relative-repository-path",
        edited(((*R0, "path"), "etc/keystone/fernet-keys")),
        "At 'repositories[0].path': must be an absolute path",
    ),
    ("relative-state_dir", edited((("state_dir",), "var/lib/keysyncd")), "At 'state_dir'"),
    (
        "relative-identity_file",
        edited((("ssh", "identity_file"), "id_ed25519")),
        "At 'ssh.identity_file'",
    ),
    (
        "node-path-with-two-repositories",
        edited(
            (
                ("repositories",),
                [*BASE["repositories"], {"name": "credential-keys", "path": "/etc/keystone/ck"}],
            ),
            (("nodes", 0, "path"), "/srv/keystone/fernet-keys"),
        ),
        "At 'nodes[0].path'",
    ),
    # schedule and timezone
    (
        "cron-four-fields",
        edited(((*R0, "schedule"), "0 0 * *")),
        "At 'repositories[0].schedule': invalid cron expression",
    ),
    (
        "cron-seven-fields",
        edited(((*R0, "schedule"), "0 0 0 * * * *")),
        "At 'repositories[0].schedule'",
    ),
    ("cron-minute-61", edited(((*R0, "schedule"), "61 0 * * *")), "At 'repositories[0].schedule'"),
    (
        "cron-never-fires",
        edited(((*R0, "schedule"), "0 0 31 2 *")),
        "At 'repositories[0].schedule'",
    ),
    ("cron-not-a-string", edited(((*R0, "schedule"), 5)), "At 'repositories[0].schedule'"),
    (
        "unknown-timezone",
        edited(((*R0, "timezone"), "Mars/Olympus_Mons")),
        "At 'repositories[0].timezone': unknown timezone",
    ),
    # choices
    ("bad-kind", edited(((*R0, "kind"), "aes")), "At 'repositories[0].kind': must be one of"),
    (
        "on_local_change-push",
        edited((("drift", "on_local_change"), "push")),
        "At 'drift.on_local_change': must be one of sync, alert",
    ),
    (
        "on_remote_drift-ignore",
        edited((("drift", "on_remote_drift"), "ignore")),
        "At 'drift.on_remote_drift'",
    ),
    # hooks
    (
        "hook-entry-number",
        edited(((*R0, "hooks", "after_rotate"), [42])),
        "At 'repositories[0].hooks.after_rotate[0]'",
    ),
    (
        "hook-list-is-string",
        edited(((*R0, "hooks", "after_rotate"), "keystone-manage x")),
        "At 'repositories[0].hooks.after_rotate': must be a list",
    ),
    (
        "hook-empty-argv",
        edited(((*R0, "hooks", "on_failure"), [[]])),
        "At 'repositories[0].hooks.on_failure[0]'",
    ),
    (
        "hook-unclosed-quote",
        edited(((*R0, "hooks", "before_rotate"), ["notify 'oops"])),
        "At 'repositories[0].hooks.before_rotate[0]'",
    ),
    (
        "hooks-list",
        edited(((*R0, "hooks"), ["keystone-manage credential_migrate"])),
        "At 'repositories[0].hooks'",
    ),
    # metrics
    ("listen-no-port", edited((("metrics", "listen"), "localhost")), "At 'metrics.listen'"),
    (
        "listen-port-70000",
        edited((("metrics", "listen"), "127.0.0.1:70000")),
        "At 'metrics.listen'",
    ),
    ("listen-number", edited((("metrics", "listen"), 9387)), "At 'metrics.listen'"),
    # the file itself
    (
        "malformed-yaml",
        "state_dir: /var/lib/keysyncd\nrepositories:\n  - name: a\n   path: /x\n",
        "{path}: line 4 column 4: malformed YAML",
    ),
    ("unclosed-flow", "repositories: [{name: a, path: /x}\n", "{path}: line 2"),
    (
        "control-character",
        "state_dir: /var/lib/keysyncd\nnodes: \x07\n",
        "{path}: line 2 column 8: malformed YAML",
    ),
    (
        "duplicate-yaml-key",
        "nodes: []\nstate_dir: /var/lib/keysyncd\nnodes: []\n",
        "{path}: line 3 column 1: malformed YAML: found duplicate key 'nodes'",
    ),
    ("empty-file", "", "{path}: the top level must be a mapping"),
    ("only-comments", "# nothing here\n", "{path}: the top level must be a mapping"),
    ("top-level-list", "- state_dir: /var/lib/keysyncd\n", "{path}: the top level must be a"),
    ("top-level-scalar", "keysyncd\n", "{path}: the top level must be a mapping"),
    ("missing-file", None, "{path}: config file not found"),
    ("not-utf8", b"state_dir: /var/lib/keysyncd\nnodes: \xff\n", "{path}: line 2: not UTF-8"),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_exits_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: Any, expected: str
) -> None:
    path = tmp_path / "config.yaml"
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif data is not None:
        write(tmp_path, data)
    code, out, err = run_cli(capsys, "-c", str(path), "check-config")
    assert code == 2, err
    assert out == ""
    assert expected.format(path=path) in err
    assert "Traceback" not in err
    assert all(line.startswith("keysyncd: config error: ") for line in err.splitlines()), err


def test_there_are_at_least_twenty_bad_cases() -> None:
    assert len({case[0] for case in BAD}) == len(BAD) >= 20


def test_every_problem_is_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = edited(
        ((*R0, "max_active_keys"), 1),
        ((*R0, "schedule"), "61 0 * * *"),
        ((*R0, "timezone"), "Mars/Olympus_Mons"),
        (("ssh", "port"), 0),
        (("nodes", 1, "prot"), 2222),
        (("drift", "on_local_change"), "push"),
        (("metrics", "listen"), "localhost"),
    )
    code, _, err = run_cli(capsys, "-c", str(write(tmp_path, data)), "check-config")
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 7, err
    for where in (
        "repositories[0].max_active_keys",
        "repositories[0].schedule",
        "repositories[0].timezone",
        "ssh.port",
        "nodes[1].prot",
        "drift.on_local_change",
        "metrics.listen",
    ):
        assert sum(f"At '{where}'" in line for line in lines) == 1, where


# --- config file selection and errors on other commands ---------------------------------------


def test_missing_config_on_status_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    code, out, err = run_cli(capsys, "-c", str(missing), "status")
    assert code == 2
    assert out == ""
    assert err == f"keysyncd: config error: {missing}: config file not found\n"


def test_keysyncd_config_env_is_used_without_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL, "from-env.yaml")
    monkeypatch.setenv("KEYSYNCD_CONFIG", str(path))
    code, out, _ = run_cli(capsys, "check-config")
    assert code == 0
    assert str(path) in out


def test_keysyncd_config_env_naming_a_missing_file_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("KEYSYNCD_CONFIG", str(missing))
    code, _, err = run_cli(capsys, "check-config")
    assert code == 2
    assert err == (
        f"keysyncd: config error: {missing}: config file not found "
        "(named by $KEYSYNCD_CONFIG; -c FILE overrides it)\n"
    )


def test_a_missing_default_config_says_how_to_name_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "etc" / "config.yaml"  # stands for /etc/keysyncd/config.yaml
    monkeypatch.delenv("KEYSYNCD_CONFIG", raising=False)
    monkeypatch.setattr("keysyncd.commands.cli.DEFAULT_CONFIG", str(missing))
    for command in ("status", "check-config", "run"):
        code, out, err = run_cli(capsys, command)
        assert (code, out) == (2, ""), command
        assert err == (
            f"keysyncd: config error: {missing}: config file not found "
            "(the default: pass -c FILE or set $KEYSYNCD_CONFIG to use another)\n"
        ), command


def test_c_wins_over_keysyncd_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYSYNCD_CONFIG", str(tmp_path / "nowhere.yaml"))
    path = write(tmp_path, MINIMAL)
    code, out, _ = run_cli(capsys, "-c", str(path), "check-config")
    assert code == 0
    assert str(path) in out


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
