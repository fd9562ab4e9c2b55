"""check-config finds, without the network, what would make an action fail: one bad input per
case, through the real entry point, each naming where the problem is and what to do.

Errors exit 2 (one ``keysyncd: error:`` line each, nothing on stdout); warnings are printed
and exit 0, or 1 with --strict; --json gives the findings as data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keysyncd.commands.cli import main
from tests.local_cli import host_key_line


def hashed(name: str) -> str:
    """Return ``name`` hashed as OpenSSH's HashKnownHosts writes it (``|1|salt|hmac``)."""
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


class Setup:
    """A controller whose config passes check-config: an identity, known_hosts for both
    nodes (ctl2 on port 2222), a repository whose max_active_keys suits its schedule."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.identity = root / "id_ed25519"
        self.known_hosts = root / "known_hosts"
        key = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        self.identity.write_bytes(key)
        self.identity.chmod(0o600)
        self.hosts = [host_key_line("192.0.2.11"), host_key_line("[192.0.2.12]:2222")]
        self.data: dict[str, Any] = {
            "state_dir": str(root / "state"),
            "report_dir": str(root / "reports"),
            "repositories": [
                {"name": "fernet-tokens", "path": str(root / "keys"), "max_active_keys": 5}
            ],
            "ssh": {
                "user": "keystone",
                "identity_file": str(self.identity),
                "known_hosts": str(self.known_hosts),
            },
            "nodes": [
                {"name": "ctl1", "host": "192.0.2.11"},
                {"name": "ctl2", "host": "192.0.2.12", "port": 2222},
            ],
        }

    @property
    def repository(self) -> dict[str, Any]:
        repository: dict[str, Any] = self.data["repositories"][0]
        return repository

    def check(self, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
        """Write the files, run check-config; return (exit code, stdout, stderr)."""
        self.known_hosts.write_text("\n".join(self.hosts) + "\n")
        config = self.root / "config.yaml"
        config.write_text(yaml.safe_dump(self.data))
        code = main(["-c", str(config), "check-config", *extra])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_the_good_setup_passes(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = setup.check(capsys)
    assert (code, err) == (0, ""), err
    assert out == f"OK: {setup.root / 'config.yaml'}: 1 repository, 2 nodes\n"


def add_node(setup: Setup) -> None:
    setup.data["nodes"].append({"name": "ctl3", "host": "192.0.2.13"})


def port_22_entry_only(setup: Setup) -> None:
    setup.hosts[1] = host_key_line("192.0.2.12")  # the node listens on 2222


def hashed_for_another_host(setup: Setup) -> None:
    setup.hosts[0] = host_key_line(hashed("192.0.2.99"))


def revoked_only(setup: Setup) -> None:
    setup.hosts[0] = f"@revoked {setup.hosts[0]}\n{setup.hosts[0]}"


def unusable_key_type(setup: Setup) -> None:
    blob = base64.b64encode(b"\x00\x00\x00\x1ask-ssh-ed25519@openssh.com").decode()
    setup.hosts[0] = f"192.0.2.11 sk-ssh-ed25519@openssh.com {blob}"


def cert_authority_only(setup: Setup) -> None:
    setup.hosts[0] = f"@cert-authority {setup.hosts[0]}"  # keysyncd accepts no host certs


def set_host(value: str) -> Callable[[Setup], None]:
    def edit(setup: Setup) -> None:
        setup.data["nodes"][0]["host"] = value

    return edit


def set_repository(key: str, value: Any) -> Callable[[Setup], None]:
    def edit(setup: Setup) -> None:
        setup.repository[key] = value

    return edit


def hook(command: Any) -> Callable[[Setup], None]:
    # within the unit's TimeoutStopSec: a longer timeout is a warning of its own
    return set_repository("hooks", {"after_rotate": [command], "timeout": 30})


def not_executable(setup: Setup) -> None:
    script = setup.root / "migrate"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    setup.repository["hooks"] = {"after_rotate": [str(script)], "timeout": 30}


def identity_not_a_key(setup: Setup) -> None:
    setup.identity.write_text("not a key\n")


def known_hosts_missing(setup: Setup) -> None:
    setup.data["ssh"]["known_hosts"] = str(setup.root / "missing_known_hosts")


def no_identity_and_no_agent(setup: Setup) -> None:
    del setup.data["ssh"]["identity_file"]


def identity_readable_by_others(setup: Setup) -> None:
    setup.identity.chmod(0o644)


# (id, edit, expected code, text every expected line contains, one line each)
BAD: list[tuple[str, Callable[[Setup], None], int, str]] = [
    ("node-without-known-hosts-entry", add_node, 2,
     "At 'nodes[2]' (ctl3): known_hosts {known_hosts} has no usable host key for 192.0.2.13"),
    ("known-hosts-entry-for-another-port", port_22_entry_only, 2,
     "At 'nodes[1]' (ctl2): known_hosts {known_hosts} has no usable host key for "
     "[192.0.2.12]:2222"),
    ("hashed-entry-for-another-host", hashed_for_another_host, 2,
     "At 'nodes[0]' (ctl1): known_hosts {known_hosts} has no usable host key for 192.0.2.11"),
    ("only-a-revoked-host-key", revoked_only, 2,
     "At 'nodes[0]' (ctl1): known_hosts {known_hosts} has no usable host key for 192.0.2.11"),
    ("only-a-key-type-paramiko-cannot-use", unusable_key_type, 2,
     "At 'nodes[0]' (ctl1): known_hosts {known_hosts} has no usable host key for 192.0.2.11"),
    ("only-a-cert-authority-line", cert_authority_only, 2,
     "At 'nodes[0]' (ctl1): known_hosts {known_hosts} has no usable host key"),
    ("host-with-a-space", set_host("bad host"), 2,
     "At 'nodes[0].host': must be a host name or an IP address, got 'bad host'"),
    ("host-with-a-leading-hyphen", set_host("-oProxyCommand=x"), 2,
     "At 'nodes[0].host': must be a host name or an IP address"),
    ("host-in-brackets", set_host("[2001:db8::1]"), 2,
     "At 'nodes[0].host': must be a host name or an IP address (an IPv6 address goes "
     "without brackets)"),
    ("host-with-an-empty-label", set_host("ctl1..example.org"), 2,
     "At 'nodes[0].host': must be a host name or an IP address"),
    ("host-an-invalid-ipv4-address", set_host("192.0.2.300"), 2,
     "At 'nodes[0].host': must be a host name or an IP address (not a valid IPv4 address)"),
    ("unknown-owner", set_repository("owner", "no-such-user-keysyncd"), 2,
     "At 'repositories[0].owner': unknown user 'no-such-user-keysyncd' on this controller: "
     "create it, or give the numeric id"),
    ("unknown-group", set_repository("group", "no-such-group-keysyncd"), 2,
     "At 'repositories[0].group': unknown group 'no-such-group-keysyncd' on this controller"),
    ("hook-not-in-path", hook("keysyncd-no-such-command --all"), 2,
     "At 'repositories[0].hooks.after_rotate[0]': command 'keysyncd-no-such-command' is not "
     "found in PATH"),
    ("hook-not-executable", not_executable, 2,
     "At 'repositories[0].hooks.after_rotate[0]': command '{root}/migrate' does not exist or "
     "is not executable"),
    ("identity-not-a-key", identity_not_a_key, 2,
     "identity_file {identity} is not a private key paramiko can load"),
    ("known-hosts-missing", known_hosts_missing, 2,
     "known_hosts {root}/missing_known_hosts does not exist"),
    ("no-identity-and-no-agent", no_identity_and_no_agent, 2,
     "At 'ssh.identity_file': not set, and no ssh-agent is reachable ($SSH_AUTH_SOCK is unset)"),
    ("identity-readable-by-others", identity_readable_by_others, 2,
     "{identity} is unsafe: readable or writable by group or others (mode 0644); chmod 600 it"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "code", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_each_bad_input_is_one_error_line_and_exit_2(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[Setup], None],
    code: int,
    expected: str,
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    edit(setup)
    found, out, err = setup.check(capsys)
    assert found == code, err
    assert out == ""
    [line] = err.splitlines()  # exactly one finding: this one, nothing else
    prefix = "keysyncd: config error: " if ".host'" in expected else "keysyncd: error: "
    wanted = expected.format(
        known_hosts=setup.known_hosts, identity=setup.identity, root=setup.root
    )
    assert line.startswith(prefix) and wanted in line, line
    assert "Traceback" not in err


def test_there_are_at_least_twelve_bad_cases() -> None:
    assert len({case[0] for case in BAD}) == len(BAD) >= 12


def test_hashed_and_plain_entries_both_count(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.hosts = [host_key_line(hashed("192.0.2.11")), host_key_line(hashed("[192.0.2.12]:2222"))]
    assert setup.check(capsys)[0] == 0


def test_numeric_owner_and_group_need_no_account(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.repository.update(owner=424242, group=424242)
    assert setup.check(capsys)[:2] == (
        0,
        f"OK: {setup.root / 'config.yaml'}: 1 repository, 2 nodes\n",
    )


def test_an_agent_stands_in_for_the_identity_file(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(setup.root / "agent.sock"))
    no_identity_and_no_agent(setup)
    assert setup.check(capsys)[0] == 0


def test_every_error_is_reported_at_once(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    add_node(setup)
    set_repository("owner", "no-such-user-keysyncd")(setup)
    hook("keysyncd-no-such-command")(setup)
    code, out, err = setup.check(capsys)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert [line.split(": ", 2)[2].split("'")[1] for line in lines] == [
        "nodes[2]",
        "repositories[0].owner",
        "repositories[0].hooks.after_rotate[0]",
    ]


def test_lint_warning_exits_0_and_1_with_strict(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.repository["max_active_keys"] = 3  # a daily rotation needs 5 (keystone's rule)
    code, out, err = setup.check(capsys)
    assert code == 0
    assert out.endswith("2 nodes, 1 warning\n")
    [warning] = err.splitlines()
    assert warning.startswith("keysyncd: warning: fernet-tokens: unsafe: max_active_keys 3")
    assert "needs at least 5" in warning
    code, out, err = setup.check(capsys, "--strict")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "keysyncd: check-config: 1 warning, and --strict"


def test_json_gives_the_findings_as_data(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    add_node(setup)
    setup.repository["max_active_keys"] = 3
    code, out, _ = setup.check(capsys, "--json")
    document = json.loads(out)
    assert code == document["exit_code"] == 2
    assert document["ok"] is False
    assert (document["repositories"], document["nodes"]) == (1, 3)
    assert [(f["severity"], f["check"]) for f in document["findings"]] == [
        ("error", "known_hosts"),
        ("warning", "lint"),
    ]
    assert "ctl3" in document["findings"][0]["message"]


def test_json_gives_config_errors_as_findings_too(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    set_host("bad host")(setup)
    code, out, _ = setup.check(capsys, "--json")
    document = json.loads(out)
    assert code == document["exit_code"] == 2
    assert document["ok"] is False
    [finding] = document["findings"]
    assert (finding["severity"], finding["check"]) == ("error", "config")
    assert finding["message"].startswith("At 'nodes[0].host': must be a host name")


def test_no_nodes_needs_no_ssh_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "repositories": [
                    {"name": "r", "path": str(tmp_path / "keys"), "max_active_keys": 5}
                ],
            }
        )
    )
    assert main(["-c", str(config), "check-config"]) == 0
    assert capsys.readouterr().err == ""


def test_a_hook_timeout_longer_than_the_units_stop_timeout_is_a_warning(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop during a hook ends it (SPEC rule 9): a hook allowed longer than systemd waits
    for keysyncd to stop is worth knowing about, but it is no error."""
    script = setup.root / "migrate"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    setup.repository["hooks"] = {"after_rotate": [str(script)], "timeout": 46}
    code, out, err = setup.check(capsys)
    assert out.endswith("1 warning\n"), out
    assert code == 0, err
    [warning] = err.splitlines()
    assert warning.startswith(
        "keysyncd: warning: At 'repositories[0].hooks.timeout' (fernet-tokens): 46s is longer "
        "than the unit's TimeoutStopSec (45s): a stop during such a hook ends it"
    ), warning
    assert "leaves the repository blocked" in warning
    assert setup.check(capsys, "--strict")[0] == 1
    setup.repository["hooks"]["timeout"] = 45
    code, _, err = setup.check(capsys, "--strict")
    assert (code, err) == (0, "")


def test_a_relative_hook_program_is_looked_for_in_the_root_directory_where_hooks_run(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks run in / whatever directory keysyncd starts in: './migrate' beside the operator's
    shell is not the hook that would run, so check-config must not find it there."""
    script = setup.root / "migrate"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(setup.root)
    setup.repository["hooks"] = {"after_rotate": ["./migrate"], "timeout": 30}
    code, out, err = setup.check(capsys)
    assert (code, out) == (2, ""), err
    assert err.splitlines() == [
        "keysyncd: error: At 'repositories[0].hooks.after_rotate[0]': command './migrate' does "
        "not exist or is not executable"
    ]
