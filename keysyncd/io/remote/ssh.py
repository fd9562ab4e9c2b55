"""SSH connections: one per node per action, host keys checked against known_hosts (parsed
once per action), authentication by key file or agent, every failure a NodeError, the setup
bounded by ``connect_timeout`` (``Deadlines``: paramiko leaves some of its waits unbounded).
Every connection stays open for the whole action, so an idle transport thread polls every
IDLE_TICK seconds (paramiko: 0.1 s, 9 s of CPU for 1,000 nodes held 20 s), and closing a
transport shuts its socket down to wake that thread."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paramiko

from keysyncd.config import NodeConfig, SshConfig
from keysyncd.errors import LocalFileError, NodeError
from keysyncd.io.local.trust import read_trusted
from keysyncd.io.remote.knownhosts import KnownHosts, load_known_hosts
from keysyncd.io.remote.sftp import NodeSession
from keysyncd.io.remote.sftpwire import classify

QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
IDLE_TICK = 5.0  # seconds between wake-ups of an idle transport thread (paramiko: 0.1)
# Preference orders, cheapest safe choice first; a node may offer any subset. The key
# exchanges run in C (cryptography): ML-KEM hybrid (post-quantum) where the node has it
# (OpenSSH >= 9.9), else X25519; the NIST curves for FIPS-mode nodes; finite-field
# Diffie-Hellman (modular exponentiation in Python, ~10 ms) only as the last resort.
KEX = (
    "mlkem768x25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group14-sha256",
)
# AEAD first: one C call per packet, where CTR + HMAC costs paramiko a MAC comparison in
# Python. No CBC, 3DES, SHA-1 or MD5: every OpenSSH since 6.2 (2013) offers GCM and ETM.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
)


class _Socket(socket.socket):
    """A TCP socket that acknowledges at once (TCP_QUICKACK, renewed before each read)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if QUICKACK is not None:
            with contextlib.suppress(OSError):  # a closed socket: recv() says so
                self.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        return super().recv(bufsize, flags)


def _open_socket(node: NodeConfig, timeout: float) -> socket.socket:
    """Return a TCP connection to ``node`` that never waits on a delayed ACK (with TCP_NODELAY and
    quick ACKs, connect + list + close took 26 ms, not 120 ms)."""
    descriptor = socket.create_connection((node.host, node.port), timeout=timeout).detach()
    try:
        sock = _Socket(fileno=descriptor)
    except BaseException:
        os.close(descriptor)
        raise
    sock.settimeout(timeout)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Transport(paramiko.Transport):
    """paramiko's Transport whose close() also shuts the socket down: the transport thread,
    blocked in recv() for up to IDLE_TICK, wakes at once, and the node sees the end now."""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        super().close()


class Credentials:
    """The parsed known_hosts and client keys, shared by every connection; raise LocalFileError
    (exit 2: the same for every node) if either file is missing, unsafe or damaged."""

    def __init__(self, ssh: SshConfig, deadlines: Deadlines | None = None) -> None:
        self.ssh = ssh
        raise_descriptor_limit()
        self.host_keys = load_known_hosts(ssh.known_hosts) if ssh.known_hosts else KnownHosts()
        self.deadlines = deadlines or Deadlines()
        self.keys: list[paramiko.PKey] = []
        if ssh.identity_file is not None:
            self.keys.append(load_identity(ssh.identity_file))
        else:
            self.keys.extend(paramiko.Agent().get_keys())


def raise_descriptor_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit: every node of an action
    keeps a connection open, and 1,000 nodes need more than the default 1,024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


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


def connect(node: NodeConfig, directory: Path, credentials: Credentials) -> NodeSession:
    """Open a verified, authenticated SFTP session to ``node``; raise NodeError if impossible
    (nothing is sent past an unknown or changed host key; ``timeout`` past ``connect_timeout``)."""
    ssh = credentials.ssh
    started = time.monotonic()
    try:
        sock = _open_socket(node, ssh.connect_timeout)
    except Exception as error:
        raise classify(node.name, error, "connecting") from None
    transport = _Transport(sock)
    token = credentials.deadlines.arm(
        max(ssh.connect_timeout - (time.monotonic() - started), 0.0), transport.close
    )
    try:
        _handshake(node, transport, credentials)
        session = NodeSession(node, transport, directory, ssh.operation_timeout)
        if not credentials.deadlines.disarm(token):
            raise TimeoutError("the connection deadline passed")
        sock.settimeout(IDLE_TICK)  # paramiko's own handshake timeouts no longer apply
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


def _available(preferred: tuple[str, ...], supported: Sequence[str]) -> list[str]:
    """Return ``preferred`` without what this paramiko lacks (``supported`` when none is left)."""
    return [name for name in preferred if name in supported] or list(supported)


def _handshake(node: NodeConfig, transport: paramiko.Transport, credentials: Credentials) -> None:
    """Exchange keys with ``node`` (only a host key known_hosts names for it), then authenticate;
    raise NodeError (host_key, auth), TimeoutError if the node stalls."""
    ssh = credentials.ssh
    name = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    known = credentials.host_keys.lookup(name)
    if not known:
        why = credentials.host_keys.why_unusable(name)
        raise NodeError(node.name, "host_key", f"no usable host key in {ssh.known_hosts}: {why}")
    _offer(transport, set(known.keys()))
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
    _authenticate(node, transport, credentials)


def _offer(transport: paramiko.Transport, wanted: set[str]) -> None:
    """Ask for the host key types in ``wanted`` (those we know for this host, as ssh(1) does,
    so a node with several host keys presents one we can check) and our algorithms only."""
    if "ssh-rsa" in wanted:
        wanted |= {"rsa-sha2-512", "rsa-sha2-256"}
    options = transport.get_security_options()
    options.key_types = [t for t in options.key_types if t in wanted] or list(wanted)
    options.kex = _available(KEX, options.kex)
    options.ciphers = _available(CIPHERS, options.ciphers)
    options.digests = _available(MACS, options.digests)


def _authenticate(
    node: NodeConfig, transport: paramiko.Transport, credentials: Credentials
) -> None:
    """Authenticate with our keys in turn; raise NodeError (auth) or TimeoutError (stall)."""
    ssh = credentials.ssh
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
        """Run each action whose deadline passed; return once none is pending."""
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
