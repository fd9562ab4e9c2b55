"""Configuration errors: every kind of bad input via the CLI, and which config file is read.

Bad inputs go through the real entry point ``keysyncd.commands.cli.main`` (``check-config``):
each must exit 2 and name where the problem is ("At 'repositories[0].max_active_keys': ...",
or the file and line for problems YAML itself reports), without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.config_edits import BASE, DELETE, MINIMAL, R0, edited, second_repository, write
from tests.local_cli import cli as run_cli

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
