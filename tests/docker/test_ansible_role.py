"""The Ansible role applied for real (ansible/site.yml) to a controller and three bare hosts.

Each host is a whole Debian machine booting systemd, with sshd as its service and nothing
of keysyncd's: the role creates keystone's account (pinned to SFTP), the directories,
the key pair, known_hosts, config and unit, installs keysyncd from wheels (offline) and
starts the daemon under the controller's real systemd. ``--check`` ran first, on the fresh
hosts; then two applies, the second of which must change nothing. Then keysyncd works
with exactly the files the role produced.

A second site gets one repository of every kind (fernet, credential, jws), initialised by
the role: its second apply changes nothing either, and the daemon rotates all three and
exports when each is due next.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.docker

# One repository of every kind, as an operator would list them: the credential one with a
# migration hook (a stand-in for keystone-manage credential_migrate, absent here).
KINDS: list[dict[str, Any]] = [
    {"name": "fernet-tokens", "kind": "fernet", "path": "/etc/keystone/fernet-keys"},
    {"name": "credential-keys", "kind": "credential", "path": "/etc/keystone/credential-keys",
     "hooks": {"after_rotate": ["/usr/bin/true"]}},
    {"name": "jws-keys", "kind": "jws", "path": "/etc/keystone/jws-keys"},
]  # fmt: skip
NAMES = {repository["name"] for repository in KINDS}


def _failed(result: Any) -> str:
    return str(result.output[-6000:])


def test_the_role_applies_on_fresh_hosts_and_a_second_apply_changes_nothing(
    deployed: dict[str, Any],
) -> None:
    check, first, second = deployed["check"], deployed.get("first"), deployed.get("second")
    assert check.returncode == 0, f"--check on fresh hosts failed:\n{_failed(check)}"
    assert first is not None and first.returncode == 0, _failed(first)
    hosts = {"ctl0", "node1", "node2", "node3"}
    assert set(first.recap) == hosts, first.recap
    assert all(r["changed"] > 0 for r in first.recap.values()), first.recap
    assert second is not None and second.returncode == 0, _failed(second)
    changed = {host: r["changed"] for host, r in second.recap.items()}
    assert changed == dict.fromkeys(hosts, 0), f"second apply changed: {changed}\n{_failed(second)}"


def test_the_role_trusts_exactly_the_host_keys_sshd_serves(deployed: dict[str, Any]) -> None:
    fleet, controller = deployed["fleet"], deployed["controller"]
    _, text, _ = controller.exec("cat", "/etc/keysyncd/known_hosts")
    entries = sorted(
        " ".join(line.split()[:3]) for line in text.splitlines() if line and line[0] != "#"
    )
    served = sorted(f"{n.address} {fleet.served_host_key(n.name)}" for n in fleet.nodes)
    assert entries == served, "known_hosts must hold the served keys (not the decoys)"
    for node in fleet.nodes:
        _, decoy, _ = fleet.exec(node.name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
        assert decoy.split()[1] not in text


def test_the_account_is_pinned_to_sftp_and_not_locked(deployed: dict[str, Any]) -> None:
    fleet = deployed["fleet"]
    for node in fleet.nodes:
        _, shadow, _ = fleet.exec(node.name, "getent", "shadow", "keystone")
        assert shadow.split(":")[1] == "*", "a locked account cannot log in with UsePAM no"
        _, passwd, _ = fleet.exec(node.name, "getent", "passwd", "keystone")
        assert passwd.split(":")[2:4] == ["42425", "42425"]
        _, keys, _ = fleet.exec(node.name, "cat", "/var/lib/keystone/.ssh/authorized_keys")
        assert keys.startswith('restrict,command="internal-sftp" ssh-ed25519 '), keys


def test_keysyncd_works_with_the_files_the_role_wrote(deployed: dict[str, Any]) -> None:
    controller = deployed["controller"]
    assert controller.systemctl("is-enabled", "keysyncd.service")[1].strip() == "enabled"
    assert controller.systemctl("is-active", "keysyncd.service")[1].strip() == "active"
    for command in (("check-config",), ("init", "--wait", "60"), ("rotate", "--wait", "60"),
                    ("verify",)):  # fmt: skip
        code, out, err = controller.cli(*command)
        assert code == 0, f"keysyncd {' '.join(command)} exited {code}: {out}{err}"
    keys = controller.assert_converged()
    assert sorted(keys) == [0, 1, 2], "init then one rotation: staged 0, primary 2, secondary 1"


# --- every kind: a fernet, a credential and a jws repository ------------------------------


@pytest.fixture(scope="module")
def three_kinds(
    make_session_fleet: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Return the role applied twice to a controller and two bare hosts with one repository
    of every kind, initialised by the role (keysyncd_bootstrap: init)."""
    from keysyncd.testing.containers_controller import Controller
    from tests.docker.ansible_run import Site, role_variables

    fleet = make_session_fleet(2, node_image="host")
    variables = role_variables(keysyncd_repositories=KINDS, keysyncd_bootstrap="init")
    site = Site(fleet, tmp_path_factory.mktemp("ansible-kinds"), variables)
    results: dict[str, Any] = {"fleet": fleet, "controller": Controller(fleet)}
    for name in ("first", "second"):
        results[name] = site.play()
        if results[name].returncode != 0:
            break
    return results


def test_the_role_deploys_every_kind_and_a_second_apply_changes_nothing(
    three_kinds: dict[str, Any],
) -> None:
    first, second = three_kinds["first"], three_kinds.get("second")
    assert first.returncode == 0, _failed(first)
    hosts = {"ctl0", "node1", "node2"}
    assert set(first.recap) == hosts, first.recap
    assert second is not None and second.returncode == 0, _failed(second)
    changed = {host: r["changed"] for host, r in second.recap.items()}
    assert changed == dict.fromkeys(hosts, 0), f"second apply changed: {changed}\n{_failed(second)}"
    controller = three_kinds["controller"]
    _, text, _ = controller.exec("cat", "/etc/keysyncd/config.yaml")
    written = {r["name"]: r for r in yaml.safe_load(text)["repositories"]}
    assert "max_active_keys" not in written["jws-keys"]
    assert "max_active_keys" not in written["credential-keys"]
    assert written["fernet-tokens"]["max_active_keys"] == 3
    assert (written["jws-keys"]["algorithm"], written["jws-keys"]["private_path"],
            written["jws-keys"]["public_path"]) == (
        "ES256", "/etc/keystone/jws-keys/private", "/etc/keystone/jws-keys/public")  # fmt: skip


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _listing(controller: Any, machine: str, directory: str) -> list[str]:
    _, text, _ = controller.fleet.exec(machine, "ls", "-A", directory)
    return sorted(text.split())


def test_the_daemon_runs_every_kind_the_role_configured(three_kinds: dict[str, Any]) -> None:
    assert three_kinds["first"].returncode == 0, _failed(three_kinds["first"])
    controller = three_kinds["controller"]
    assert controller.systemctl("is-active", "keysyncd.service")[1].strip() == "active"
    code, out, err = controller.cli("check-config")
    assert code == 0, f"keysyncd check-config exited {code}: {out}{err}"

    # the running daemon rotates each of them (SIGUSR1: every repository, now)
    since = time.time()
    controller.systemctl("kill", "-s", "USR1", "keysyncd.service")

    def rotated() -> set[str] | None:
        done = {
            r["repository"]
            for r in controller.reports()
            if (r["action"], r["outcome"], r["trigger"]) == ("rotate", "ok", "signal")
            and _epoch(r["started_at"]) >= since
        }
        return done if done == NAMES else None

    controller.wait_for(rotated, 120.0, "the daemon's rotation of every repository")
    for command in (("verify",), ("status",)):
        code, out, err = controller.cli(*command)
        assert code == 0, f"keysyncd {' '.join(command)} exited {code}: {out}{err}"

    fleet = controller.fleet
    keys = controller.assert_converged()  # fernet, as keystone loads it
    assert sorted(keys) == [0, 1, 2], "init then one rotation: staged 0, primary 2, secondary 1"
    credential = _listing(controller, controller.name, "/etc/keystone/credential-keys")
    assert credential == ["0", "1", "2"], "keystone keeps 3 credential keys"
    publics = set()
    for node in fleet.nodes:
        assert _listing(controller, node.name, "/etc/keystone/credential-keys") == credential
        assert _listing(controller, node.name, "/etc/keystone/jws-keys") == ["private", "public"]
        _, private, _ = fleet.exec(node.name, "stat", "-c", "%a %u",
                                   "/etc/keystone/jws-keys/private/private.pem")  # fmt: skip
        assert private.split() == ["600", "42425"], private
        publics.add(tuple(_listing(controller, node.name, "/etc/keystone/jws-keys/public")))
    [public] = publics  # every node holds every node's public key
    assert {name.rsplit("-", 1)[0] for name in public} == {n.name for n in fleet.nodes}, public


def test_the_daemon_exports_when_each_rotation_is_due(three_kinds: dict[str, Any]) -> None:
    assert three_kinds["first"].returncode == 0, _failed(three_kinds["first"])
    controller = three_kinds["controller"]
    url = "http://127.0.0.1:9387/metrics"  # keysyncd_metrics_listen, the role's default
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=10).read().decode())"
    _, text, _ = controller.exec("python3", "-c", fetch)
    pattern = r'^keysyncd_next_rotation_timestamp_seconds\{repository="([^"]+)"\} (\S+)$'
    due = {name: float(value) for name, value in re.findall(pattern, text, re.M)}
    assert set(due) == NAMES, text
    # the test site's schedule fires on January 1st: due then, in the future
    assert all(value > time.time() for value in due.values()), due
