"""SSH connections: one paramiko connection per node per action, strictly checked.

Host keys are checked against the configured known_hosts (parsed once per action, not per
connection); authentication is by key file or agent only. Every failure becomes
``NodeError(node, reason, detail)`` with a short reason. The whole connection setup is
bounded by ``connect_timeout``: paramiko leaves some of its waits unbounded.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

from keysyncd.config import NodeConfig, SshConfig
from keysyncd.errors import LocalFileError, NodeError
from keysyncd.io.knownhosts import KnownHosts, load_known_hosts
from keysyncd.io.sftp import NodeSession
from keysyncd.io.sftpwire import classify
from keysyncd.io.trust import read_trusted


class Credentials:
    """The parsed known_hosts and client keys, loaded once and shared by every connection.

    Raise LocalFileError (a local problem, the same for every node: exit 2) if known_hosts
    or the identity file is missing, unsafe or damaged.
    """

    def __init__(self, ssh: SshConfig, deadlines: Deadlines | None = None) -> None:
        self.ssh = ssh
        self.host_keys = load_known_hosts(ssh.known_hosts) if ssh.known_hosts else KnownHosts()
        self.deadlines = deadlines or Deadlines()
        self.keys: list[paramiko.PKey] = []
        if ssh.identity_file is not None:
            self.keys.append(load_identity(ssh.identity_file))
        else:
            self.keys.extend(paramiko.Agent().get_keys())


def load_identity(path: Path) -> paramiko.PKey:
    """Return the private key in ``path``; raise LocalFileError if it is missing, readable by
    others (ssh refuses such a key too), encrypted, or not a private key."""
    content = read_trusted(path, limit=1 << 20, follow=True, secret=True)
    if content is None:
        raise LocalFileError(f"identity_file {path} does not exist")
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(content.decode("utf-8", "replace")))
        except paramiko.PasswordRequiredException:
            raise LocalFileError(
                f"identity_file {path} is encrypted; keysyncd needs a key without a "
                "passphrase (or leave identity_file out to use ssh-agent)"
            ) from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    raise LocalFileError(f"identity_file {path} is not a private key paramiko can load")


def _host_key_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class Deadlines:
    """One thread that runs a callback when its deadline passes (closing a transport that
    has not finished connecting): paramiko leaves some of its waits unbounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self._next_token = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, action: Callable[[], None]) -> int:
        """Run ``action`` in ``seconds`` unless disarmed first; return a token for disarm."""
        with self._changed:
            token = next(self._next_token)
            self._pending[token] = (self.clock() + seconds, action)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Cancel a deadline; return False if its action already ran (or is running)."""
        with self._changed:
            return self._pending.pop(token, None) is not None

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._pending:
                    self._thread = None  # idle: a later arm() starts a new thread
                    return
                now = self.clock()
                due = [t for t, (at, _) in self._pending.items() if at <= now]
                actions = [self._pending.pop(token)[1] for token in due]
                if not actions:
                    soonest = min(at for at, _ in self._pending.values())
                    self._changed.wait(max(soonest - now, 0.01))
            for action in actions:
                with contextlib.suppress(Exception):  # closing a dead transport may fail
                    action()


def connect(node: NodeConfig, directory: Path, credentials: Credentials) -> NodeSession:
    """Open a verified, authenticated SFTP session to ``node``; raise NodeError if impossible.

    Nothing is sent to a node whose host key is unknown or changed. The whole setup (TCP,
    banner, key exchange, authentication, SFTP) gets ``connect_timeout`` seconds: a node
    that accepts the connection and then stalls is reported ``timeout`` with its real
    duration, and never holds up the others longer than that.
    """
    ssh = credentials.ssh
    started = time.monotonic()
    try:
        sock = socket.create_connection((node.host, node.port), timeout=ssh.connect_timeout)
    except Exception as error:
        raise classify(node.name, error, "connecting") from None
    transport = paramiko.Transport(sock)
    token = credentials.deadlines.arm(
        max(ssh.connect_timeout - (time.monotonic() - started), 0.0), transport.close
    )
    try:
        _handshake(node, transport, credentials)
        session = NodeSession(node, transport, directory, ssh.operation_timeout)
        if not credentials.deadlines.disarm(token):
            raise TimeoutError("the connection deadline passed")
        return session
    except Exception as error:
        expired = not credentials.deadlines.disarm(token)
        transport.close()
        raised = classify(node.name, error, "connecting")
        if expired or raised.reason == "timeout":
            elapsed = time.monotonic() - started
            raise NodeError(
                node.name,
                "timeout",
                f"no SSH session within connect_timeout {ssh.connect_timeout:g}s "
                f"(gave up after {elapsed:.1f}s)",
            ) from None
        raise raised from None


def _handshake(node: NodeConfig, transport: paramiko.Transport, credentials: Credentials) -> None:
    ssh = credentials.ssh
    name = _host_key_name(node.host, node.port)
    known = credentials.host_keys.lookup(name)
    if not known:
        raise NodeError(node.name, "host_key", f"host key of {name} is not in {ssh.known_hosts}")
    # Ask for the key types we know for this host, as ssh(1) does, so a node with
    # several host keys presents one we can check.
    wanted = set(known.keys())
    if "ssh-rsa" in wanted:
        wanted |= {"rsa-sha2-512", "rsa-sha2-256"}
    options = transport.get_security_options()
    options.key_types = [t for t in options.key_types if t in wanted] or list(wanted)
    transport.banner_timeout = ssh.connect_timeout
    transport.auth_timeout = ssh.connect_timeout
    transport.start_client(timeout=ssh.connect_timeout)
    try:
        offered = transport.get_remote_server_key()
    except paramiko.SSHException:  # start_client returns quietly when it timed out
        raise TimeoutError("no key exchange") from None
    if credentials.host_keys.is_revoked(offered):
        raise NodeError(
            node.name, "host_key", f"host key of {name} is marked @revoked in {ssh.known_hosts}"
        )
    if not any(key == offered for key in known.get(offered.get_name(), [])):
        raise NodeError(
            node.name,
            "host_key",
            f"host key of {name} does not match {ssh.known_hosts} "
            f"(offered {offered.get_name()} {offered.fingerprint})",
        )
    for key in credentials.keys:
        try:
            transport.auth_publickey(ssh.user, key)
        except paramiko.AuthenticationException as error:
            if str(error) == "Authentication timeout.":  # paramiko's words for a stall
                raise TimeoutError("authentication") from None
            continue
        if transport.is_authenticated():
            return
    raise NodeError(node.name, "auth", f"public key authentication as {ssh.user!r} was refused")
