"""The Ansible role applied for real (ansible/site.yml) to a controller and three bare hosts.

Each host is a whole Debian machine booting systemd, with sshd as its service and nothing
of keysyncd's: the role creates keystone's account (pinned to SFTP), the directories,
the key pair, known_hosts, config and unit, installs keysyncd from wheels (offline) and
starts the daemon under the controller's real systemd. ``--check`` ran first, on the fresh
hosts; then two applies, the second of which must change nothing. Then keysyncd works
with exactly the files the role produced.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.docker


def _failed(result: Any) -> str:
    return result.output[-6000:]


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
