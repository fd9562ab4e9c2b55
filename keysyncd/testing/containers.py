"""A fleet of whole Debian machines in containers (testcontainers), for faults sshd cannot fake.

Every machine boots systemd as PID 1 with sshd as its service (images: ``containers_image``),
sits on the fleet's own Docker network at a fixed address, and publishes its port 22 on
127.0.0.1 only. Next to the process fleet's interface (``nodes``, ``known_hosts``,
``client_key``, ``stop_node``/``start_node``, ``rekey_node``) it has what only a machine
has: ``partition``/``heal`` (network disconnect/connect), ``pause``/``resume`` (the
freezer) and ``crash``/``boot`` (SIGKILL to the whole machine, then a new boot).

Host keys are read from the running machine (``sshd -T`` names the keys it serves), never
trusted on first use. Files are written with ``put_archive``, so no key ever appears in a
process argument. Ryuk (testcontainers' reaper) needs a registry: it is disabled, and
``stop()`` removes every container and the network this fleet made (``atexit`` too).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import ipaddress
import os
import secrets
import socket
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker
import docker.errors
import paramiko
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from testcontainers.core.container import DockerContainer

from keysyncd.testing.containers_image import KEYSTONE_ID, Images
from keysyncd.testing.processes import keygen

LABEL = "keysyncd.test"  # on every container and network; scripts/docker-engine sweeps it
HOST = "127.0.0.1"
KEY_DIRECTORY = PurePosixPath("/etc/keystone/fernet-keys")
BOOT_TIMEOUT = 90.0
EXEC_TIMEOUT = 120
API_VERSION = "1.41"  # Debian's docker.io 20.10
_LIVE: list[ContainerFleet] = []


class ExecError(RuntimeError):
    """A command in a machine failed (the message has its exit code and output)."""


@dataclass
class Machine:
    """One container: a Debian machine with its own systemd, sshd and address."""

    name: str
    address: str  # on the fleet network: what the controller connects to
    container: DockerContainer = field(repr=False)
    port: int = 0  # 22 published on 127.0.0.1: what the test host connects to
    host: str = HOST
    directory: PurePosixPath = KEY_DIRECTORY
    host_key: str = ""  # "ssh-ed25519 AAAA...": the TRUSTED key, read from the machine

    @property
    def docker(self) -> Any:
        """Return the docker SDK container."""
        return self.container.get_wrapped_container()

    def config_entry(self) -> dict[str, Any]:
        """Return the node as a keysyncd config entry for the controller (network view)."""
        return dict(name=self.name, host=self.address, port=22, path=str(self.directory))


def _tar(path: PurePosixPath, content: bytes, mode: int, uid: int, gid: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(path.name)
        info.size, info.mode, info.uid, info.gid = len(content), mode, uid, gid
        info.mtime = int(time.time())
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class ContainerFleet:
    """``count`` node machines (and optionally a controller) on one network of their own.

    ``node_image`` is "node" (keystone's account ready, SFTP-only) or "host" (a bare machine,
    e.g. for the Ansible role to prepare). ``root`` holds the host-side files: the client key
    (authorized for root, and for keystone pinned to SFTP) and ``known_hosts`` of the
    published ports.
    """

    def __init__(
        self, root: Path, count: int, images: Images, *, controller: bool = True,
        node_image: str = "node", name_prefix: str = "node",
    ) -> None:  # fmt: skip
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self.images, self.node_image, self.user = images, node_image, "keystone"
        self.run_id = secrets.token_hex(3)
        self.client = docker.from_env(timeout=EXEC_TIMEOUT)
        self.client_key = self.root / "client_ed25519"
        self.known_hosts = self.root / "known_hosts"
        keygen(self.client_key, "keysyncd-container-fleet")
        self.network: Any = None
        self._subnet: Any = None
        names = [f"{name_prefix}{i}" for i in range(1, count + 1)]
        self._planned = ([("controller", "controller")] if controller else []) + [
            (name, node_image) for name in names
        ]
        self.machines: dict[str, Machine] = {}

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def nodes(self) -> list[Machine]:
        """Return the node machines (not the controller), in order."""
        order = [name for name, _ in self._planned if name != "controller"]
        return [self.machines[name] for name in order if name in self.machines]

    @property
    def controller(self) -> Machine:
        """Return the controller machine; raise KeyError if this fleet has none."""
        return self.machines["controller"]

    def node(self, name: str) -> Machine:
        """Return the machine called ``name``; raise KeyError if there is none."""
        return self.machines[name]

    def start(self) -> ContainerFleet:
        """Return self once every machine booted and serves SSH; raise RuntimeError if not.

        On failure everything made so far is removed again.
        """
        _LIVE.append(self)
        try:
            self._create_network()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda plan: self._start_machine(*plan), enumerate(self._planned)))
            self._write_known_hosts()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_network(self) -> None:
        # A network with an explicit subnet lets machines keep their address across a
        # partition: ask Docker for a free subnet, then make it explicit.
        name, labels = f"ksd-{self.run_id}", {LABEL: self.run_id}
        probe = self.client.networks.create(name, driver="bridge", labels=labels)
        probe.reload()
        subnet = probe.attrs["IPAM"]["Config"][0]["Subnet"]
        probe.remove()
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)])
        self.network = self.client.networks.create(name, driver="bridge", ipam=ipam, labels=labels)
        self._subnet = ipaddress.ip_network(subnet)

    def _start_machine(self, index: int, plan: tuple[str, str]) -> None:
        name, kind = plan
        address = str(self._subnet[10 + index])
        image = getattr(self.images, kind)
        container = DockerContainer(image, command="/sbin/init", name=f"ksd-{self.run_id}-{name}")
        container.with_volume_mapping("/sys/fs/cgroup", "/sys/fs/cgroup", "rw")
        container.with_env("container", "docker")
        # (HOST,): any free port on 127.0.0.1; testcontainers' own type hint is too narrow
        container.ports["22/tcp"] = (HOST,)  # type: ignore[assignment]
        container.tmpfs.update({"/run": "", "/run/lock": ""})
        endpoint = EndpointConfig(API_VERSION, ipv4_address=address)
        container.with_kwargs(
            hostname=name, labels={LABEL: self.run_id}, cap_add=["SYS_ADMIN"],
            security_opt=["seccomp=unconfined"], cgroupns="host", network=self.network.name,
            networking_config={self.network.name: endpoint},
        )  # fmt: skip
        self.machines[name] = machine = Machine(name, address, container)
        container.start()
        self._wait_booted(machine)
        pub = self.client_key.with_suffix(".pub").read_bytes()
        self.put_file(name, "/root/.ssh/authorized_keys", pub, 0o600)
        if kind == "node":
            restricted = b'restrict,command="internal-sftp" ' + pub
            home = "/var/lib/keystone/.ssh/authorized_keys"
            self.put_file(name, home, restricted, 0o600, KEYSTONE_ID, KEYSTONE_ID)
        machine.host_key = self.served_host_key(name)

    def _wait_booted(self, machine: Machine, timeout: float = BOOT_TIMEOUT) -> None:
        """Wait until systemd finished booting, sshd runs and its banner is served."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            _, state, _ = self.exec(machine.name, "systemctl", "is-system-running", check=False)
            if state.strip() in ("running", "degraded"):
                break
            time.sleep(0.2)
        self.exec(machine.name, "systemctl", "is-active", "--quiet", "ssh.service")
        self._refresh_port(machine)
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((HOST, machine.port), 2) as s,
            ):
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{machine.name}: no SSH banner after boot (state {state.strip()!r})")

    def _refresh_port(self, machine: Machine) -> None:
        machine.docker.reload()
        bindings = machine.docker.attrs["NetworkSettings"]["Ports"].get("22/tcp") or []
        machine.port = int(bindings[0]["HostPort"]) if bindings else 0

    def stop(self) -> None:
        """Remove every container and the network of this fleet (bounded; idempotent)."""
        for machine in self.machines.values():
            with contextlib.suppress(docker.errors.NotFound):
                machine.docker.remove(force=True, v=True)
        if self.network is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self.network.remove()
            self.network = None
        if self in _LIVE:
            _LIVE.remove(self)

    def __enter__(self) -> ContainerFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inside the machines -----------------------------------------------------------

    def exec(
        self, name: str, *argv: str, user: str = "root", check: bool = True,
        timeout: int = EXEC_TIMEOUT,
    ) -> tuple[int, str, str]:  # fmt: skip
        """Return (exit code, stdout, stderr) of ``argv`` run in machine ``name``.

        Bounded by ``timeout`` seconds (coreutils ``timeout`` inside the machine). Raise
        ExecError if ``check`` and it exits non-zero, docker.errors.APIError if the machine
        is not running (paused or stopped).
        """
        command = ["timeout", "-k", "5", str(timeout), *argv]
        code, (out, err) = self.machines[name].docker.exec_run(command, user=user, demux=True)
        stdout, stderr = (
            (out or b"").decode(errors="replace"),
            (err or b"").decode(errors="replace"),
        )
        if check and code != 0:
            raise ExecError(f"{name}: {argv[0]} exited {code}: {stderr.strip()[-2000:]}")
        return code, stdout, stderr

    def put_file(
        self, name: str, path: str, content: bytes, mode: int, uid: int = 0, gid: int = 0
    ) -> None:
        """Write ``content`` to ``path`` in machine ``name`` (its directory must exist)."""
        target = PurePosixPath(path)
        archive = _tar(target, content, mode, uid, gid)
        if not self.machines[name].docker.put_archive(str(target.parent), archive):
            raise ExecError(f"{name}: cannot write {path}")

    def served_host_key(self, name: str) -> str:
        """Return "TYPE BASE64" of the ed25519 key sshd serves, as ``sshd -T`` names it.

        Raise RuntimeError if sshd names none (asked up to 3 times: once, on a machine still
        booting, its output came back empty).
        """
        settings = stderr = ""
        for _ in range(3):
            _, settings, stderr = self.exec(name, "sshd", "-T")
            paths = [
                line.split()[1] for line in settings.splitlines() if line.startswith("hostkey ")
            ]
            for path in paths:
                _, text, _ = self.exec(name, "cat", f"{path}.pub")
                if text.startswith("ssh-ed25519 "):
                    return " ".join(text.split()[:2])
            time.sleep(0.5)
        raise RuntimeError(f"{name}: sshd -T names no ed25519 host key: {settings!r} {stderr!r}")

    def _write_known_hosts(self) -> None:
        lines = [f"[{HOST}]:{m.port} {m.host_key}\n" for m in self.machines.values() if m.port]
        self.known_hosts.write_text("".join(lines))

    def network_known_hosts(self) -> str:
        """Return known_hosts lines of the nodes' network addresses (for the controller)."""
        return "".join(f"{node.address} {node.host_key}\n" for node in self.nodes)

    def ssh_client(self, name: str, user: str = "root", timeout: float = 10.0) -> Any:
        """Return a paramiko client connected to ``name``'s published port, strictly checked."""
        machine, client = self.machines[name], paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(machine.host, machine.port, username=user,
                       key_filename=str(self.client_key), look_for_keys=False,
                       allow_agent=False, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout)  # fmt: skip
        return client

    # --- faults ------------------------------------------------------------------------

    def stop_node(self, name: str) -> None:
        """Stop the machine's sshd service (connections to it are refused)."""
        self.exec(name, "systemctl", "stop", "ssh.service", "ssh.socket")

    def start_node(self, name: str) -> None:
        """Start the machine's sshd service again (same host key)."""
        self.exec(name, "systemctl", "start", "ssh.service")

    def rekey_node(self, name: str) -> None:
        """Give the machine a NEW host key; every known_hosts keeps the old one."""
        _, settings, _ = self.exec(name, "sshd", "-T")
        for line in settings.splitlines():
            if line.startswith("hostkey "):
                path = line.split()[1]
                self.exec(name, "rm", "-f", path, f"{path}.pub")
        self.exec(name, "systemctl", "restart", "ssh.service")

    def accept_host_key(self, name: str) -> None:
        """Trust the key ``name`` serves now (read from the machine, as an operator would)."""
        self.machines[name].host_key = self.served_host_key(name)
        self._write_known_hosts()

    def partition(self, name: str) -> None:
        """Cut the machine off the network (docker network disconnect); it keeps running."""
        self.network.disconnect(self.machines[name].docker, force=True)

    def heal(self, name: str) -> None:
        """Connect the machine again at the same address; its published port may change."""
        machine = self.machines[name]
        self.network.connect(machine.docker, ipv4_address=machine.address)
        self._wait_booted(machine)
        self._write_known_hosts()

    def pause(self, name: str) -> None:
        """Freeze every process of the machine (docker pause): it accepts TCP, answers nothing."""
        self.machines[name].docker.pause()

    def resume(self, name: str) -> None:
        """Thaw a paused machine."""
        self.machines[name].docker.unpause()

    def crash(self, name: str) -> None:
        """Kill the whole machine at once (SIGKILL to its PID 1), like a power cut."""
        self.machines[name].docker.kill()

    def boot(self, name: str, *, wait: bool = True) -> None:
        """Start a crashed machine again; with ``wait``, until it booted and serves SSH."""
        self.machines[name].docker.start()
        if wait:
            self.wait_booted(name)

    def wait_booted(self, name: str) -> None:
        """Wait until ``name`` booted and serves SSH (bounded); raise RuntimeError if not."""
        self._wait_booted(self.machines[name])
        self._write_known_hosts()

    @contextlib.contextmanager
    def partitioned(self, name: str) -> Iterator[None]:
        """Keep ``name`` partitioned until exit."""
        self.partition(name)
        try:
            yield
        finally:
            self.heal(name)


@atexit.register
def _stop_live_fleets() -> None:
    for fleet in list(_LIVE):
        with contextlib.suppress(Exception):
            fleet.stop()
