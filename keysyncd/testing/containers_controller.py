"""keysyncd on the container fleet's controller machine, under its real systemd (PID 1).

``Controller.install`` sets the machine up as an operator would without Ansible: keystone's
account (uid 42425), ``/etc/keysyncd`` with the identity, known_hosts (the nodes' served
host keys, read from the nodes) and config.yaml, and the SHIPPED unit
``systemd/keysyncd.service`` unchanged, running keysyncd from the image's wheels. Tests then
talk to it as an operator does: ``systemctl``, the CLI, report files.

``repository_keys`` runs keystone's loader logic (``tests/keystone_compat.py``) inside a
machine and returns SHA-256 digests only, never key material.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from keysyncd.testing.containers import KEY_DIRECTORY, ContainerFleet, ExecError
from keysyncd.testing.containers_image import KEYSTONE_ID, ROOT

CONFIG = "/etc/keysyncd/config.yaml"
STATE_DIR = "/var/lib/keysyncd"
REPORT_DIR = f"{STATE_DIR}/reports"
T = TypeVar("T")

# keystone's FernetUtils.load_keys, then what keystone's Fernet() needs of each key, plus
# what keysyncd promises (regular file, 0600, keystone's); prints {index: sha256} or fails.
LOADER = r"""
import base64, hashlib, json, os, stat, sys
repo, owner = sys.argv[1], int(sys.argv[2])
keys, problems = {}, []
for name in os.listdir(repo):
    path = os.path.join(repo, name)
    if not os.path.isfile(path):
        continue
    try:
        index = int(name)
    except ValueError:
        continue
    with open(path) as handle:
        key = handle.read()
    if not key:
        continue
    try:
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError
    except ValueError:
        problems.append(f"{name}: not a Fernet key")
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) != 0o600:
        problems.append(f"{name}: mode {info.st_mode:o}")
    if info.st_uid != owner:
        problems.append(f"{name}: owner {info.st_uid}")
    keys[index] = hashlib.sha256(key.encode()).hexdigest()
if 0 not in keys or len(keys) < 2:
    problems.append(f"staged and primary keys expected, found {sorted(keys)}")
print(json.dumps({"keys": keys, "problems": problems}))
"""

# Every report in the report directory, oldest first (digests only, as keysyncd writes).
REPORTS = r"""
import json, os, sys
directory = sys.argv[1]
names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
print(json.dumps([json.load(open(os.path.join(directory, n))) for n in names]))
"""

# Inside a node, as root: once a push has begun (a new name in the key directory), stop
# every process of keystone's uid at once (keysyncd's SFTP session), then list them. Bounded.
FREEZE_ON_PUSH = r"""
import os, signal, sys, time
repo, uid, marker, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
before, deadline = set(os.listdir(repo)), time.monotonic() + seconds
open(marker + ".ready", "w").close()  # watching: the caller may trigger the push now
while time.monotonic() < deadline:
    # a push adds a name; the clock probe (created and removed at every connect) is no push
    if {n for n in os.listdir(repo) if not n.startswith(".keysyncd-clock-")} - before:
        frozen = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    os.kill(int(pid), signal.SIGSTOP)
                    frozen.append(pid)
            except OSError:
                pass
        with open(marker + ".tmp", "w") as out:
            out.write(" ".join(frozen))
        os.rename(marker + ".tmp", marker)
        break
    time.sleep(0.001)
"""
FROZEN_MARKER = "/run/keysyncd-test-frozen"


def base_config(fleet: ContainerFleet, schedule: str, **overrides: Any) -> dict[str, Any]:
    """Return a keysyncd config for the controller: one fernet repository, every node."""
    config: dict[str, Any] = {
        "state_dir": STATE_DIR,
        "report_dir": REPORT_DIR,
        "repositories": [
            {
                "name": "fernet-tokens",
                "kind": "fernet",
                "path": str(KEY_DIRECTORY),
                "max_active_keys": 3,
                "schedule": schedule,
                "token_expiration": 1,
                "allow_expired_window": 0,
                "owner": "keystone",
                "group": "keystone",
            }
        ],
        "ssh": {
            "user": "keystone",
            "identity_file": "/etc/keysyncd/id_ed25519",
            "known_hosts": "/etc/keysyncd/known_hosts",
            "connect_timeout": 3,
            "operation_timeout": 5,
            "concurrency": 8,
        },
        "nodes": [node.config_entry() for node in fleet.nodes],
        "drift": {"watch_local": True, "on_local_change": "sync", "verify_interval": 3600},
    }
    config.update(overrides)
    return config


class Controller:
    """keysyncd on ``fleet.controller``; see the module docstring."""

    def __init__(self, fleet: ContainerFleet) -> None:
        self.fleet, self.name = fleet, fleet.controller.name

    def exec(self, *argv: str, check: bool = True, timeout: int = 120) -> tuple[int, str, str]:
        """Return (code, stdout, stderr) of ``argv`` on the controller; see fleet.exec."""
        return self.fleet.exec(self.name, *argv, check=check, timeout=timeout)

    def install(self, config: dict[str, Any]) -> None:
        """Set up keystone's account, /etc/keysyncd and the shipped unit (not started)."""
        ids = str(KEYSTONE_ID)
        self.exec("groupadd", "-g", ids, "keystone")
        self.exec("useradd", "-u", ids, "-g", "keystone", "-d", "/var/lib/keystone", "-m",
                  "-s", "/usr/sbin/nologin", "-p", "*", "keystone")  # fmt: skip
        self.exec("install", "-d", "-m", "0750", "-o", "root", "-g", "keystone", "/etc/keysyncd")
        self.exec("install", "-d", "-m", "0755", "/etc/keystone")
        # /var/lib/keysyncd as the unit's StateDirectory= makes it: the CLI may come first
        self.exec("install", "-d", "-m", "0700", "-o", "keystone", "-g", "keystone",
                  str(KEY_DIRECTORY), STATE_DIR)  # fmt: skip
        key = self.fleet.client_key.read_bytes()
        self.fleet.put_file(self.name, "/etc/keysyncd/id_ed25519", key, 0o600, KEYSTONE_ID)
        self.write_known_hosts()
        self.write_config(config)
        self.exec("ln", "-sf", "/opt/keysyncd-test/bin/keysyncd", "/usr/local/bin/keysyncd")
        unit = (ROOT / "systemd" / "keysyncd.service").read_bytes()
        self.fleet.put_file(self.name, "/etc/systemd/system/keysyncd.service", unit, 0o644)
        self.exec("systemctl", "daemon-reload")

    def write_known_hosts(self) -> None:
        """Write the nodes' CURRENTLY KNOWN host keys (fleet's record) as known_hosts."""
        text = self.fleet.network_known_hosts().encode()
        self.fleet.put_file(self.name, "/etc/keysyncd/known_hosts", text, 0o640, 0, KEYSTONE_ID)

    def write_config(self, config: dict[str, Any], path: str = CONFIG) -> None:
        """Write ``config`` as YAML to ``path`` (root:keystone 0640)."""
        text = yaml.safe_dump(config, sort_keys=False).encode()
        self.fleet.put_file(self.name, path, text, 0o640, 0, KEYSTONE_ID)

    def cli(self, *args: str, check: bool = False, timeout: int = 120) -> tuple[int, str, str]:
        """Run ``keysyncd -c CONFIG ARGS`` as keystone on the controller; return its result."""
        argv = ["runuser", "-u", "keystone", "--", "/usr/local/bin/keysyncd", "-c", CONFIG]
        return self.exec(*argv, *args, check=check, timeout=timeout)

    def systemctl(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        """Run ``systemctl ARGS`` on the controller; return its result.

        Raise ExecError with the unit's status and journal if ``check`` and it fails.
        """
        result = self.exec("systemctl", *args, check=False)
        if check and result[0] != 0:
            _, status, _ = self.exec("systemctl", "status", "--no-pager", "-l", "keysyncd",
                                     check=False)  # fmt: skip
            raise ExecError(f"systemctl {' '.join(args)}: {result[2]}\n{status}\n"
                            f"{self.journal()[-3000:]}")  # fmt: skip
        return result

    def show(self, *properties: str, unit: str = "keysyncd.service") -> dict[str, str]:
        """Return ``systemctl show`` values of ``properties`` for ``unit``."""
        _, text, _ = self.systemctl("show", unit, *[f"--property={p}" for p in properties])
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def reports(self) -> list[dict[str, Any]]:
        """Return every report on the controller, oldest first."""
        _, text, _ = self.exec("python3", "-c", REPORTS, REPORT_DIR)
        return list(json.loads(text))

    def wait_for(self, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
        """Return the first truthy ``predicate()``; raise TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            if value := predicate():
                return value
            if time.monotonic() > deadline:
                journal = self.journal()[-3000:]
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}\n{journal}")
            time.sleep(0.5)

    def journal(self, unit: str = "keysyncd.service", *, priority: bool = False) -> str:
        """Return the unit's journal (``-o verbose`` fields when ``priority``)."""
        output = ["-o", "json"] if priority else ["-o", "short-precise"]
        _, text, _ = self.exec("journalctl", "--no-pager", "-u", unit, *output, check=False)
        return text

    def repository_keys(self, machine: str | None = None) -> dict[int, str]:
        """Return {index: sha256} as keystone's loader reads the repository on ``machine``.

        The controller's by default. Raise AssertionError naming the problems if keystone
        could not load it or keysyncd's promises (0600, keystone's, regular) are broken.
        """
        name = machine or self.name
        _, text, _ = self.fleet.exec(name, "python3", "-c", LOADER, str(KEY_DIRECTORY),
                                     str(KEYSTONE_ID))  # fmt: skip
        found = json.loads(text)
        if found["problems"]:
            raise AssertionError(f"{name}: {found['problems']}")
        return {int(index): digest for index, digest in found["keys"].items()}

    def freeze_on_push(
        self, node: str, timeout: float, trigger: Callable[[], object] | None = None
    ) -> list[str]:
        """Return the PIDs of keysyncd's SFTP session on ``node``, stopped (SIGSTOP) right
        after a push to it began. ``trigger`` (e.g. sending SIGUSR1) runs once the watcher
        on the node is watching, so a fast push cannot slip past it; without one, the next
        scheduled push is caught. Raise TimeoutError if no push began within ``timeout`` s.
        """
        ready = FROZEN_MARKER + ".ready"
        self.fleet.exec(node, "rm", "-f", FROZEN_MARKER, ready)
        argv = ["timeout", str(int(timeout) + 10), "python3", "-c", FREEZE_ON_PUSH,
                str(KEY_DIRECTORY), str(KEYSTONE_ID), FROZEN_MARKER, str(timeout)]  # fmt: skip
        self.fleet.node(node).docker.exec_run(argv, detach=True)

        def watching() -> bool:
            return self.fleet.exec(node, "test", "-e", ready, check=False)[0] == 0

        self.wait_for(watching, timeout, f"the push watcher on {node} to start")
        if trigger is not None:
            trigger()

        def frozen() -> list[str]:
            code, out, _ = self.fleet.exec(node, "cat", FROZEN_MARKER, check=False)
            return out.split() if code == 0 else []

        return self.wait_for(frozen, timeout, f"a push to {node} to begin")

    def assert_converged(self, timeout: float = 60.0) -> dict[int, str]:
        """Return the controller's keys once every node holds exactly them (bounded wait)."""

        def converged() -> dict[int, str] | None:
            expected = self.repository_keys()
            nodes = {n.name: self.repository_keys(n.name) for n in self.fleet.nodes}
            return expected if all(keys == expected for keys in nodes.values()) else None

        return self.wait_for(converged, timeout, "every node to hold the controller's keys")


def shipped_unit() -> Path:
    """Return the path of the shipped unit file in this checkout."""
    return ROOT / "systemd" / "keysyncd.service"
