"""Apply the repository's Ansible role for real: ``ansible-playbook ansible/site.yml``.

The inventory names the container fleet's machines by their ports published on 127.0.0.1
(Ansible's own connection, as root with the fleet's key, host keys checked against the
fleet's known_hosts, which were read from the machines). keysyncd reaches the nodes over
the fleet's network (``keysyncd_node_host``), as the example inventory's ctl3 shows.
keysyncd comes from the wheels in the controller image: no network in any container.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keysyncd.testing.containers import ContainerFleet

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "ansible" / "site.yml"
PLAY_TIMEOUT = 600
FAR_SCHEDULE = "0 0 1 1 *"  # the daemon rotates on signals and CLI only during the tests
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass(frozen=True)
class PlayResult:
    """One ansible-playbook run: exit code, output and the recap per host."""

    returncode: int
    output: str
    recap: dict[str, dict[str, int]]


def role_variables(**overrides: Any) -> dict[str, Any]:
    """Return the extra vars of the test site: one fernet repository (unless ``overrides``
    say otherwise), offline install."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return {
        "keysyncd_source": f"keysyncd=={version}",
        "keysyncd_pip_extra_args": "--no-index --find-links /opt/keysyncd-wheels",
        "keysyncd_uid": 42425,
        "keysyncd_gid": 42425,
        "keysyncd_schedule": FAR_SCHEDULE,
        "keysyncd_token_expiration": 1,
        "keysyncd_allow_expired_window": 0,
        "keysyncd_max_active_keys": 3,
        "keysyncd_connect_timeout": 5,
        "keysyncd_operation_timeout": 10,
        "keysyncd_drift_verify_interval": 3600,
        "keysyncd_repositories": [
            {"name": "fernet-tokens", "kind": "fernet", "path": "/etc/keystone/fernet-keys"}
        ],
        **overrides,
    }


class Site:
    """The inventory, vars and ansible.cfg for one fleet, under ``directory``."""

    def __init__(
        self, fleet: ContainerFleet, directory: Path, variables: dict[str, Any] | None = None
    ) -> None:
        self.fleet, self.directory = fleet, directory
        self.extra = role_variables() if variables is None else variables
        directory.mkdir(parents=True, exist_ok=True)
        self.inventory = directory / "inventory.ini"
        self.variables = directory / "vars.json"
        self.config = directory / "ansible.cfg"
        self.write()

    def write(self) -> None:
        """Write inventory, vars and ansible.cfg for the fleet's current ports."""
        controller = self.fleet.controller
        lines = [
            "[keysyncd_controller]",
            f"ctl0 ansible_host=127.0.0.1 ansible_port={controller.port}",
        ]
        lines += ["", "[keystone_nodes]"]
        for node in self.fleet.nodes:
            lines.append(f"{node.name} ansible_host=127.0.0.1 ansible_port={node.port} "
                         f"keysyncd_node_host={node.address} keysyncd_node_port=22")  # fmt: skip
        lines += ["", "[all:vars]", "ansible_user=root",
                  f"ansible_ssh_private_key_file={self.fleet.client_key}"]  # fmt: skip
        self.inventory.write_text("\n".join(lines) + "\n")
        self.variables.write_text(json.dumps(self.extra))
        ssh_args = ["-o ControlMaster=auto", "-o ControlPersist=120s", "-o IdentitiesOnly=yes",
                    f"-o UserKnownHostsFile={self.fleet.known_hosts}",
                    "-o StrictHostKeyChecking=yes"]  # fmt: skip
        self.config.write_text(
            "[defaults]\n"
            f"roles_path = {ROOT / 'ansible' / 'roles'}\n"
            "forks = 8\n"
            "interpreter_python = /usr/bin/python3\n"
            "host_key_checking = True\n"
            "[ssh_connection]\n"
            f"ssh_args = {' '.join(ssh_args)}\n"
            "pipelining = True\n"
            f"control_path_dir = {self.directory / 'cp'}\n"
        )

    def play(self, *args: str) -> PlayResult:
        """Return the result of ``ansible-playbook site.yml ARGS`` against the fleet."""
        playbook = Path(sys.executable).with_name("ansible-playbook")
        env = {**os.environ, "ANSIBLE_CONFIG": str(self.config), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_LOCAL_TEMP": str(self.directory / "tmp")}  # fmt: skip
        command = [str(playbook), "-i", str(self.inventory), "-e", f"@{self.variables}"]
        result = subprocess.run(
            [*command, *args, str(PLAYBOOK)], capture_output=True, text=True,
            timeout=PLAY_TIMEOUT, env=env, cwd=self.directory, check=False,
        )  # fmt: skip
        output = result.stdout + result.stderr
        recap = {}
        for line in output.splitlines():
            if found := RECAP.match(line):
                recap[found[1]] = dict(zip(("ok", "changed", "unreachable", "failed"),
                                           map(int, found.groups()[1:]), strict=True))  # fmt: skip
        return PlayResult(result.returncode, output, recap)
