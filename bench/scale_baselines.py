"""What keysyncd is compared with, on the same nodes: kolla-ansible's sequential rsync loop
and the OpenSSH floor (one ``ssh`` per node, at keysyncd's concurrency).

Every node gets its own minimal ssh_config and known_hosts (one Host block, one key line):
one shared config with N Host blocks, or one known_hosts with N lines, makes OpenSSH parse
O(N) lines per connection, O(N^2) per loop, which would flatter keysyncd.

The rsync loop runs twice: as kolla-ansible ships it (OpenSSH's default key exchange,
sntrup761x25519 on OpenSSH 9, ~70 ms of client CPU per connection), and tuned to the key
exchange keysyncd gets from these nodes (curve25519-sha256). The floor always uses
curve25519-sha256: it is as cheap as OpenSSH can be made, so the ratios are conservative.
"""

from __future__ import annotations

import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keysyncd.testing.fleet import Fleet, FleetNode

SSH_OPTIONS = """\
Host {name}
  HostName {host}
  Port {port}
  User {user}
  IdentityFile {identity}
  IdentitiesOnly yes
  UserKnownHostsFile {known_hosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
{kex}  ControlMaster no
  ControlPath none
  LogLevel ERROR
"""


def write_ssh_configs(fleet: Fleet, directory: Path, tuned: bool = True) -> dict[str, Path]:
    """Write one minimal ssh_config and known_hosts per node; return node name -> config
    (``tuned``: curve25519-sha256, else OpenSSH's default key exchange)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = {line.split(" ", 1)[0]: line for line in fleet.known_hosts.read_text().splitlines()}
    configs = {}
    for node in fleet.nodes:
        known_hosts = directory / f"{node.name}.known_hosts"
        known_hosts.write_text(lines[f"[{node.host}]:{node.port}"] + "\n")
        config = directory / f"{node.name}{'' if tuned else '.default'}.ssh_config"
        config.write_text(
            SSH_OPTIONS.format(
                name=node.name,
                host=node.host,
                port=node.port,
                user=fleet.user,
                identity=fleet.client_key,
                known_hosts=known_hosts,
                kex="  KexAlgorithms curve25519-sha256\n" if tuned else "",
            )
        )
        config.chmod(0o600)
        configs[node.name] = config
    return configs


def rsync_loop(fleet: Fleet, configs: dict[str, Path], source: Path) -> None:
    """Push ``source`` to every node in turn, as kolla-ansible's fernet-push.sh does."""
    for node in fleet.nodes:
        ssh = shlex.join(["ssh", "-F", str(configs[node.name])])
        destination = f"{node.name}:{node.directory}/"
        command = ["rsync", "-az", "--delete", "-e", ssh, f"{source}/", destination]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def ssh_floor(
    fleet: Fleet, configs: dict[str, Path], concurrency: int, subsystem: bool = False
) -> None:
    """Run one ``ssh NODE true`` per node (``subsystem``: ``ssh -s NODE sftp`` with stdin
    closed, an SFTP session that ends at once, no shell), ``concurrency`` at a time."""

    def one(node: FleetNode) -> None:
        command = ["ssh", "-F", str(configs[node.name])]
        command += ["-s", node.name, "sftp"] if subsystem else [node.name, "true"]
        subprocess.run(
            command, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120
        )

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, fleet.nodes))
