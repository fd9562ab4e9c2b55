"""A fleet of real OpenSSH servers (``sshd -D``) on 127.0.0.1 for tests, benchmarks and demos.

Each node is its own sshd with its own port, ed25519 host key, config, log and key directory.
Processes are stopped by the PIDs this fleet recorded, never by name; every fault (mount, chmod,
chattr) is undone by ``stop()``, which ``atexit`` also calls as a safety net.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from keysyncd.testing import faults
from keysyncd.testing.faults import can_mount
from keysyncd.testing.faults import mounts_under as mounts_under
from keysyncd.testing.processes import (
    HOST,
    FleetUnsupported,
    find_sshd,
    is_root,
    keygen,
    start_sshd,
    terminate,
    wait_for_banner,
)

# Tests reach these through this module: they monkeypatch _free_port (called here at run time).
from keysyncd.testing.processes import alive as _alive  # noqa: F401
from keysyncd.testing.processes import descendants as _descendants  # noqa: F401
from keysyncd.testing.processes import free_port as _free_port

STOP_TIMEOUT = 5.0
_LIVE: list[Fleet] = []
_CONFIG = """\
Port {port}
ListenAddress {host}
UsePAM {use_pam}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile "{authorized_keys}"
AllowUsers {user}
Subsystem sftp internal-sftp
MaxStartups 100:30:200
LogLevel ERROR
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
"""


@dataclass
class FleetNode:
    """One sshd process and the key repository directory it serves."""

    name: str
    host: str
    port: int
    directory: Path
    pid: int | None
    host_key: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def log(self) -> Path:
        """Return the node's sshd log file (``sshd -E``)."""
        return self.host_key.parent / "sshd.log"

    def config_entry(self) -> dict[str, Any]:
        """Return the node as a keysyncd config entry: name, host, port, path."""
        return dict(name=self.name, host=self.host, port=self.port, path=str(self.directory))


class Fleet:
    """A set of real sshd nodes under ``root``; a context manager that starts and stops it.

    ``extra_config`` lines go first in every sshd_config (sshd keeps the first value), e.g.
    ``("KexAlgorithms curve25519-sha256",)``. ``start_timeout`` bounds the wait for banners
    after all nodes were launched (raise it for hundreds of nodes: ~14 ms per node here).
    """

    def __init__(
        self,
        root: Path,
        count: int,
        *,
        sftp_only: bool = True,
        name_prefix: str = "node",
        extra_config: tuple[str, ...] = (),
        start_timeout: float = 10.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.sftp_only, self.name_prefix = sftp_only, name_prefix
        self.extra_config, self.start_timeout = extra_config, start_timeout
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.sshd = find_sshd()
        self.root.mkdir(parents=True, exist_ok=True)
        self.client_key = self.root / "client_ed25519"
        self.known_hosts = self.root / "known_hosts"
        self.authorized_keys = self.root / "authorized_keys"
        self._known: dict[str, str] = {}
        self._undo: list[Callable[[], None]] = []
        keygen(self.client_key, "keysyncd-fleet-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized_keys)
        with ThreadPoolExecutor(max_workers=8) as pool:
            self.nodes: list[FleetNode] = list(pool.map(self._new_node, range(1, count + 1)))

    def _new_node(self, index: int) -> FleetNode:
        name = f"{self.name_prefix}{index}"
        (directory := self.root / name / "keys").mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        node = FleetNode(name, HOST, 0, directory, None, self.root / name / "ssh_host_ed25519_key")
        keygen(node.host_key, f"keysyncd-fleet-{name}")
        return node

    def _launch(self, node: FleetNode) -> None:
        keys = self.authorized_keys
        # Root: UsePAM no (Debian's PAM stack writes system files). Non-root: with UsePAM no,
        # sshd refused "nobody" (password "*") as a locked account; through PAM it logs in.
        use_pam = "no" if is_root() else "yes"
        text = _CONFIG.format(
            host=HOST, port=node.port, user=self.user, authorized_keys=keys, use_pam=use_pam
        )
        lines = [*self.extra_config, text]
        lines += ["PermitRootLogin prohibit-password"] if is_root() else []
        lines += ["ForceCommand internal-sftp"] if self.sftp_only else []
        (config := node.host_key.parent / "sshd_config").write_text("\n".join(lines) + "\n")
        node.proc = start_sshd(self.sshd, config, node.host_key, node.log)
        node.pid = node.proc.pid

    def _start_nodes(self, nodes: list[FleetNode]) -> None:
        """Launch ``nodes`` together, then wait for all; raise RuntimeError if one fails.

        A node not yet in known_hosts moves to a new port when its port was taken (bounded).
        """
        if is_root():
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        if self not in _LIVE:
            _LIVE.append(self)
        pending = list(nodes)
        for attempt in range(3):
            for node in pending:
                if not node.port or (attempt and node.name not in self._known):
                    node.port = _free_port({n.port for n in self.nodes})
                self._launch(node)
            deadline = time.monotonic() + self.start_timeout
            pending = [n for n in pending if not wait_for_banner(n.proc, n.port, deadline)]
            hung = [n.name for n in pending if n.proc is not None and n.proc.poll() is None]
            self._terminate(*pending)
            if not pending or hung or all(n.name in self._known for n in pending):
                break
        if pending:
            logs = "; ".join(f"{n.name}: {n.log.read_text(errors='replace')}" for n in pending)
            raise RuntimeError(f"sshd failed to start (no banner: {hung}): {logs.strip()}")

    def _write_known_hosts(self) -> None:
        for node in self.nodes:
            if node.name not in self._known:
                keytype, blob = node.host_key.with_suffix(".pub").read_text().split()[:2]
                self._known[node.name] = f"[{HOST}]:{node.port} {keytype} {blob}\n"
        self.known_hosts.write_text("".join(self._known[n.name] for n in self.nodes))

    def _terminate(self, *nodes: FleetNode) -> None:
        """Stop the nodes' sshd and session processes: SIGTERM, bounded wait, SIGKILL."""
        procs = [node.proc for node in nodes if node.proc is not None]
        for node in nodes:
            node.proc = node.pid = None
        terminate(procs, STOP_TIMEOUT)

    def start(self) -> Fleet:
        """Return self after starting every stopped node; raise RuntimeError if one fails.

        On failure every node is stopped again, so a failed ``with Fleet(...)`` leaks nothing.
        """
        try:
            self._start_nodes([n for n in self.nodes if n.proc is None])
            self._write_known_hosts()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every sshd this fleet started (by recorded PID), then undo every fault."""
        self._terminate(*self.nodes)
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:  # undo the rest anyway, then report
                errors.append(exc)
        if self in _LIVE:
            _LIVE.remove(self)
        if errors:
            raise errors[0]

    def node(self, name: str) -> FleetNode:
        """Return the node called ``name``; raise KeyError if there is none."""
        if found := [node for node in self.nodes if node.name == name]:
            return found[0]
        raise KeyError(name)

    def stop_node(self, name: str) -> None:
        """Stop one node's sshd (connections to its port are then refused)."""
        self._terminate(self.node(name))

    def start_node(self, name: str) -> None:
        """Start a stopped node again on the same port with the same host key."""
        if (node := self.node(name)).proc is None:
            self._start_nodes([node])

    def rekey_node(self, name: str) -> None:
        """Restart a node with a NEW host key; known_hosts keeps the old one (a changed key)."""
        self._terminate(node := self.node(name))
        keygen(node.host_key, f"keysyncd-fleet-{name}-rekeyed")
        self._start_nodes([node])

    def add_node(self) -> FleetNode:
        """Return a new, started node that is also added to known_hosts."""
        used = {n.name for n in self.nodes}
        index = next(i for i in range(1, len(used) + 2) if f"{self.name_prefix}{i}" not in used)
        self.nodes.append(node := self._new_node(index))
        self._start_nodes([node])
        self._write_known_hosts()
        return node

    def rsync_command(self, node: FleetNode | str, src_dir: Path | str) -> list[str]:
        """Return an argv pushing ``src_dir`` to the node with rsync over ssh (sftp_only=False)."""
        node = self.node(node) if isinstance(node, str) else node
        ssh = ["ssh", "-F", "/dev/null", "-i", str(self.client_key), "-p", str(node.port)]
        for opt in (f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes",
                    "BatchMode=yes", "IdentitiesOnly=yes"):  # fmt: skip
            ssh += ["-o", opt]
        dest = f"{self.user}@{HOST}:{node.directory}/"
        return ["rsync", "-az", "--delete", "-e", shlex.join(ssh), f"{src_dir}/", dest]

    def ssh_client(self, name: str, *, timeout: float = 5.0) -> paramiko.SSHClient:
        """Return a paramiko client connected to a node with strict host key checking.

        Raise paramiko.BadHostKeyException if the key changed, OSError if unreachable.
        """
        node, client = self.node(name), paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(node.host, node.port, username=self.user,
                           key_filename=str(self.client_key), look_for_keys=False,
                           allow_agent=False, timeout=timeout, banner_timeout=timeout,
                           auth_timeout=timeout)  # fmt: skip
        except BaseException:
            client.close()
            raise
        return client

    @contextlib.contextmanager
    def _fault(self, undo: Callable[[], None]) -> Iterator[None]:
        """Run ``undo`` on exit, or in ``stop()`` if that comes first (whichever is first)."""
        self._undo.append(undo)
        try:
            yield
        finally:
            if undo in self._undo:
                self._undo.remove(undo)
                undo()

    @contextlib.contextmanager
    def make_readonly(self, name: str, *, method: str = "auto") -> Iterator[None]:
        """Make a node's directory read-only for the login user until exit.

        ``method``: "mount" (read-only bind mount: EROFS, paramiko sees SSH_FX_FAILURE),
        "immutable" (chattr +i: EPERM, paramiko raises PermissionError), "chmod" (0500; root
        ignores it) or "auto" (mount as root, chmod otherwise). Raise FleetUnsupported if the
        method cannot work here, ValueError if it is unknown.
        """
        with faults.readonly(self.node(name).directory, method, self._fault, can_mount):
            yield

    @contextlib.contextmanager
    def make_full(self, name: str, *, size_kib: int = 64) -> Iterator[None]:
        """Put a node's directory on a tiny, completely full tmpfs until exit.

        The tmpfs is mounted at ``<root>/.full-<name>`` and its ``keys`` subdirectory is bind
        mounted over the node directory, so the filler (``.fill``) is not in the directory.
        Existing files stay readable (mode 0600); on exit the directory gets the tmpfs contents.
        Raise FleetUnsupported if mounting is impossible.
        """
        if not can_mount():
            raise FleetUnsupported("make_full mounts a tmpfs: needs root and a working mount(8)")
        directory, tmpfs = self.node(name).directory, self.root / f".full-{name}"
        with faults.full(directory, tmpfs, size_kib, self._fault):
            yield

    @contextlib.contextmanager
    def make_freezable(self, name: str) -> Iterator[faults.Freezer]:
        """Put a node's directory on its own small ext4 filesystem until exit, and yield the
        Freezer that stalls its writes (reads still answer) until thawed, as a hung disk does.

        The filesystem is mounted at ``<root>/.freezable-<name>``; on exit it is thawed and
        the directory gets its contents back. Raise FleetUnsupported if that is impossible.
        """
        directory, mountpoint = self.node(name).directory, self.root / f".freezable-{name}"
        with faults.freezable(directory, mountpoint, self._fault) as freezer:
            yield freezer

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_live_fleets() -> None:
    for fleet in list(_LIVE):
        with contextlib.suppress(Exception):
            fleet.stop()
