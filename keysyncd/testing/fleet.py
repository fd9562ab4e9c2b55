"""A fleet of real OpenSSH servers (``sshd -D``) on 127.0.0.1 for tests, benchmarks and demos.

Each node is its own sshd with its own port, ed25519 host key, config, log and key directory.
Processes are stopped by the PIDs this fleet recorded, never by name; every fault (mount, chmod,
chattr) is undone by ``stop()``, which ``atexit`` also calls as a safety net.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

HOST = "127.0.0.1"
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


class FleetUnsupported(Exception):
    """A fault or feature cannot be simulated here (the message says why)."""


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def find_sshd() -> str:
    """Return the absolute path of sshd; raise FleetUnsupported if openssh-server is missing."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    if (found := shutil.which("sshd", path=path)) is None:
        raise FleetUnsupported("sshd not found: install openssh-server")
    return os.path.abspath(found)


@functools.cache
def can_mount() -> bool:
    """Return True when running as root and a bind mount works here (else mount faults skip)."""
    if not _is_root() or shutil.which("mount") is None:
        return False
    probe = tempfile.mkdtemp(prefix="fleet-mount-probe-")
    try:
        _run("mount", "--bind", probe, probe)
        _run("umount", probe)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.rmdir(probe)


def mounts_under(root: Path) -> list[str]:
    """Return the mount points at or below ``root`` listed in /proc/self/mounts."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        targets = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [t for t in targets if t == str(root) or t.startswith(f"{root}/")]


def _umount(target: Path) -> None:
    if mounts_under(target)[-1:] == [str(target)]:
        try:
            _run("umount", str(target))
        except subprocess.CalledProcessError:  # busy (an open session): detach lazily
            _run("umount", "-l", str(target))


def _stat_fields(pid: int) -> list[str]:
    """Return /proc/PID/stat fields after the command name (state, ppid, ...); [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    return _stat_fields(pid)[:1] not in ([], ["Z"])


def _children() -> dict[int, list[int]]:
    """Return a map of PID -> child PIDs for every process in /proc (zombies included)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if fields := _stat_fields(int(entry)):
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Return the PIDs of all processes below ``pid`` (zombies included)."""
    children = _children() if children is None else children
    found, todo = [], list(children.get(pid, []))
    while todo and len(found) < 100_000:
        found.append(kid := todo.pop())
        todo.extend(children.get(kid, []))
    return found


def _free_port(avoid: set[int]) -> int:
    """Return a currently free TCP port on 127.0.0.1 not in ``avoid``; raise if none is found."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            if (port := sock.getsockname()[1]) not in avoid:
                return port
    raise RuntimeError("no free port found in 100 attempts")


def _keygen(path: Path, comment: str) -> None:
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))


def _fill(directory: Path, size: int) -> None:
    """Fill ``directory``'s filesystem; raise RuntimeError if a 44-byte file still fits."""
    with open(directory / ".fill", "wb", buffering=0) as fill:
        for _ in range(size // 4096 + 16):
            try:
                fill.write(b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"x" * 44)
        raise RuntimeError(f"{directory}: a 44-byte file still fits after filling")
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        probe.unlink(missing_ok=True)


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
        _keygen(self.client_key, "keysyncd-fleet-client")
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized_keys)
        with ThreadPoolExecutor(max_workers=8) as pool:
            self.nodes: list[FleetNode] = list(pool.map(self._new_node, range(1, count + 1)))

    def _new_node(self, index: int) -> FleetNode:
        name = f"{self.name_prefix}{index}"
        (directory := self.root / name / "keys").mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        node = FleetNode(name, HOST, 0, directory, None, self.root / name / "ssh_host_ed25519_key")
        _keygen(node.host_key, f"keysyncd-fleet-{name}")
        return node

    def _launch(self, node: FleetNode) -> None:
        keys = self.authorized_keys
        # Root: UsePAM no (Debian's PAM stack writes system files). Non-root: with UsePAM no,
        # sshd refused "nobody" (password "*") as a locked account; through PAM it logs in.
        use_pam = "no" if _is_root() else "yes"
        text = _CONFIG.format(
            host=HOST, port=node.port, user=self.user, authorized_keys=keys, use_pam=use_pam
        )
        lines = [*self.extra_config, text]
        lines += ["PermitRootLogin prohibit-password"] if _is_root() else []
        lines += ["ForceCommand internal-sftp"] if self.sftp_only else []
        (config := node.host_key.parent / "sshd_config").write_text("\n".join(lines) + "\n")
        cmd = [self.sshd, "-D", "-f", str(config), "-h", str(node.host_key), "-E", str(node.log)]
        cmd += ["-o", f"PidFile={config.parent / 'sshd.pid'}"]
        with open(node.log, "ab") as log:  # also catches PAM helpers' stderr
            node.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        node.pid = node.proc.pid

    def _wait_ready(self, node: FleetNode, deadline: float) -> bool:
        """Return True once ``node`` sends an SSH banner; False if sshd exited or timed out."""
        while time.monotonic() < deadline:
            if node.proc is None or node.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection((HOST, node.port), 1) as s:
                if s.recv(256).startswith(b"SSH-2.0-"):
                    s.sendall(b"SSH-2.0-fleet-probe\r\n")  # keeps the sshd log quiet
                    return True
            time.sleep(0.02)
        return False

    def _start_nodes(self, nodes: list[FleetNode]) -> None:
        """Launch ``nodes`` together, then wait for all; raise RuntimeError if one fails.

        A node not yet in known_hosts moves to a new port when its port was taken (bounded).
        """
        if _is_root():
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
            pending = [node for node in pending if not self._wait_ready(node, deadline)]
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
        running = [proc for proc in procs if proc.poll() is None]
        tree = _children() if running else {}
        kids = [kid for proc in running for kid in _descendants(proc.pid, tree)]
        for sig in (signal.SIGTERM, signal.SIGKILL):  # open sessions: sshd -D leaves them
            for pid in (kids := [pid for pid in kids if _alive(pid)]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            for _ in range(100):
                if not any(map(_alive, kids)):
                    break
                time.sleep(0.01)
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)

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
        _keygen(node.host_key, f"keysyncd-fleet-{name}-rekeyed")
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
        directory, path = self.node(name).directory, str(self.node(name).directory)
        method = ("mount" if _is_root() else "chmod") if method == "auto" else method
        if method == "chmod":
            undo = functools.partial(directory.chmod, directory.stat().st_mode & 0o7777)
            directory.chmod(0o500)
        elif method == "mount" and can_mount():
            _run("mount", "--bind", path, path)
            undo = functools.partial(_umount, directory)
        elif method == "immutable" and _is_root() and shutil.which("chattr"):
            _run("chattr", "+i", path)
            undo = functools.partial(_run, "chattr", "-i", path)
        elif method in ("mount", "immutable"):
            raise FleetUnsupported(f"make_readonly({method!r}) needs root and mount/chattr")
        else:
            raise ValueError(f"unknown make_readonly method {method!r}")
        with self._fault(undo):
            if method == "mount":
                _run("mount", "-o", "remount,bind,ro", path)
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
        pages = sum(2 + p.lstat().st_size // 4096 for p in directory.rglob("*"))
        size = max(size_kib * 1024, (pages + 16) * 4096)
        tmpfs.mkdir(mode=0o700, exist_ok=True)
        opts = f"size={size},mode=0700"
        _run("mount", "-t", "tmpfs", "-o", opts, "keysyncd-fleet-full", str(tmpfs))
        inner = tmpfs / "keys"

        def undo() -> None:
            try:
                _umount(directory)
                shutil.rmtree(directory)
                shutil.copytree(inner, directory, symlinks=True)
            finally:
                _umount(tmpfs)
                tmpfs.rmdir()

        with self._fault(undo):
            shutil.copytree(directory, inner, symlinks=True)
            for path in inner.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    path.chmod(0o600)
            _fill(tmpfs, size)
            _run("mount", "--bind", str(inner), str(directory))
            yield

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_live_fleets() -> None:
    for fleet in list(_LIVE):
        with contextlib.suppress(Exception):
            fleet.stop()
