"""The paramiko contract (keysyncd/io/remote/paramiko_contract.py) against the installed
paramiko: every private or undocumented member keysyncd uses is still there, takes the
arguments keysyncd passes and does what keysyncd does with it; the request machinery still
answers a pipelined batch; and keysyncd/io/remote uses no such member the contract lacks.

Real paramiko objects throughout: the SFTP client speaks to a small SFTP v3 server on the
other end of a socket pair (paramiko reads a plain socket as it reads a channel).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_ATTRS, CMD_LSTAT, CMD_OPEN, CMD_STATUS, CMD_VERSION
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from keysyncd.io.remote import sftpwire
from keysyncd.io.remote.paramiko_contract import DOCUMENTED, MEMBERS, Member

REMOTE = Path(__file__).resolve().parents[2] / "keysyncd" / "io" / "remote"
PACKAGE = REMOTE.parents[1]
PARAMIKO = Path(paramiko.__file__).parent


def broken(member: Member, detail: str) -> str:
    """Return the failure message for ``member``: what changed, and who depends on it."""
    return (
        f"paramiko {paramiko.__version__} no longer has {member.label} as keysyncd uses it "
        f"(keysyncd/io/remote/{member.used_in}): {detail}. Adapt that module and "
        "keysyncd/io/remote/paramiko_contract.py, or keep paramiko within pyproject.toml's pin."
    )


# --- a real SFTPClient over a socket pair, answered by a tiny SFTP v3 server -------------


def _packet(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def _receive(peer: socket.socket) -> tuple[int, bytes]:
    """Return (type, payload) of the next SFTP packet ``peer`` receives."""
    head = _exactly(peer, 5)
    size, kind = struct.unpack(">IB", head)
    return kind, _exactly(peer, size - 1)


def _exactly(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = peer.recv(size - len(data))
        assert chunk, "the client closed the socket"
        data += chunk
    return data


def _status(number: int, code: int) -> bytes:
    text = b"fine" if code == 0 else b"no such file"
    payload = struct.pack(">II", number, code) + struct.pack(">I", len(text)) + text
    return _packet(CMD_STATUS, payload + struct.pack(">I", 0))


class _Channel(socket.socket):
    """A socket with the one channel method paramiko's SFTP client asks of it (its logs)."""

    def get_name(self) -> str:
        return "socket pair"


@pytest.fixture
def client() -> Iterator[tuple[paramiko.SFTPClient, socket.socket]]:
    """Return an SFTPClient and the server's end of its socket (version 3 already sent)."""
    pair, peer = socket.socketpair()
    ours = _Channel(fileno=pair.detach())
    peer.sendall(_packet(CMD_VERSION, struct.pack(">I", 3)))
    sftp = paramiko.SFTPClient(ours)
    assert _receive(peer)[0] == 1  # the client's INIT
    yield sftp, peer
    ours.close()
    peer.close()


def _instance(owner: str, sftp: paramiko.SFTPClient) -> Any:
    """Return a real instance of ``owner``, as keysyncd meets one."""
    if owner.endswith(".SFTPClient"):
        return sftp
    if owner.endswith(".SFTPFile"):
        opened = SFTPFile(sftp, b"handle-1", "r")
        opened._closed = True  # nothing to close on the server: never opened there
        return opened
    if owner.endswith(".Transport"):
        return paramiko.Transport(socket.socket())
    module, _, name = owner.rpartition(".")
    return getattr(importlib.import_module(module), name)()


# what keysyncd does with each attribute (see the contract's ``what``)
USES: dict[tuple[str, str], Callable[[Any], bool]] = {
    ("SFTPClient", "_lock"): lambda lock: lock.acquire(timeout=1) and (lock.release() is None),
    ("SFTPClient", "_expecting"): lambda waiting: (
        waiting.__setitem__(7, type(None)) is None and waiting.pop(7, None) is type(None)
    ),
    ("SFTPClient", "request_number"): lambda number: isinstance(number, int),
    ("SFTPClient", "sock"): lambda channel: callable(getattr(channel, "sendall", None)),
    ("Message", "packet"): lambda packet: callable(packet.tell) and callable(packet.seek),
    ("SFTPFile", "handle"): lambda handle: handle == b"handle-1",
    ("Transport", "sock"): lambda sock: callable(getattr(sock, "shutdown", None)),
    ("Transport", "banner_timeout"): lambda seconds: isinstance(seconds, int | float),
    ("Transport", "auth_timeout"): lambda seconds: isinstance(seconds, int | float),
}


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.label)
def test_each_member_is_there_as_keysyncd_uses_it(
    member: Member, client: tuple[paramiko.SFTPClient, socket.socket]
) -> None:
    module, _, name = member.owner.rpartition(".")
    owner = getattr(importlib.import_module(module), name, None)
    assert owner is not None, broken(member, f"there is no class {member.owner}")
    if member.arguments is not None:
        method = getattr(owner, member.name, None)
        assert callable(method), broken(member, "the method is gone")
        for count in member.arguments:
            try:
                inspect.signature(method).bind(object(), *range(count))
            except TypeError as error:
                pytest.fail(broken(member, f"it no longer takes {count} arguments ({error})"))
        return
    instance = _instance(member.owner, client[0])
    try:
        assert hasattr(instance, member.name), broken(member, "the attribute is gone")
        use = USES[(name, member.name)]
        assert use(getattr(instance, member.name)), broken(member, f"not {member.what}")
    finally:
        if isinstance(instance, paramiko.Transport):
            instance.close()


def test_a_pipelined_batch_is_answered_through_the_private_machinery(
    client: tuple[paramiko.SFTPClient, socket.socket],
) -> None:
    """sftpwire.pipeline and request, end to end: the replies come back out of order and are
    matched by id; statuses are read by paramiko's own converter; paramiko's public API
    still works after (its request ids and waiters were left consistent)."""
    sftp, peer = client
    attributes = SFTPAttributes()
    attributes.st_mode = 0o600

    def serve(count: int, order: Callable[[list[int]], list[int]], codes: list[int]) -> None:
        numbers = [struct.unpack(">I", _receive(peer)[1][:4])[0] for _ in range(count)]
        for number, code in zip(order(numbers), codes, strict=True):
            peer.sendall(_status(number, code))

    server = threading.Thread(target=serve, args=(3, lambda n: n[::-1], [0, 2, 0]))
    server.start()
    batch = [(CMD_LSTAT, ("/a",)), (CMD_OPEN, ("/b", 0x2A, attributes)), (CMD_LSTAT, ("/c",))]
    replies = sftpwire.pipeline(sftp, batch)
    server.join(timeout=10)
    assert [kind for kind, _ in replies] == [CMD_STATUS] * 3
    sftpwire.expect(sftp, replies[0], CMD_STATUS, "a status")  # OK: no exception
    with pytest.raises(FileNotFoundError):  # the second request, answered second: code 2
        sftpwire.expect(sftp, replies[1], CMD_STATUS, "a status")
    with pytest.raises(paramiko.SFTPError, match="expected attributes"):
        sftpwire.expect(sftp, replies[2], CMD_ATTRS, "attributes")

    server = threading.Thread(target=serve, args=(1, lambda n: n, [2]))
    server.start()
    with pytest.raises(FileNotFoundError):  # paramiko's own request path, after ours
        sftp.chmod("/d", 0o600)
    server.join(timeout=10)


# --- the contract is complete ---------------------------------------------------------------


def _accessed(tree: ast.AST) -> set[str]:
    """Return every attribute name ``tree`` reads or writes on an object, getattr/setattr
    included (not a function of a module it imports, as ``struct.pack``, but paramiko's)."""
    modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } - {"paramiko"}
    names = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and not (isinstance(node.value, ast.Name) and node.value.id in modules)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)
    return names


def _defined(tree: ast.AST) -> set[str]:
    """Return the names ``tree`` defines: functions, classes, fields."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
    return found


def _instance_attributes(tree: ast.AST) -> set[str]:
    """Return the attributes ``tree``'s objects set on themselves (``self.x = ...``)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


def _parsed(paths: list[Path]) -> dict[Path, ast.AST]:
    return {path: ast.parse(path.read_text()) for path in paths}


def test_io_remote_uses_no_private_or_undocumented_paramiko_member_the_contract_lacks() -> None:
    """A private paramiko member (leading underscore), or an attribute paramiko's objects set
    on themselves, used anywhere in keysyncd/io/remote but not named by keysyncd itself, must
    be in the contract: a new use cannot come in without it."""
    ours = _parsed(sorted(PACKAGE.rglob("*.py")))
    # keysyncd's own names: its functions, classes and fields anywhere, and the attributes
    # io/remote's own objects set on themselves (elsewhere, a "self._lock" of keysyncd's
    # would hide a "sftp._lock" here)
    defined = set().union(
        *(_defined(tree) for tree in ours.values()),
        *(_instance_attributes(tree) for path, tree in ours.items() if path.parent == REMOTE),
    )
    theirs = _parsed(sorted(PARAMIKO.rglob("*.py")))
    paramiko_attributes = set().union(*(_instance_attributes(tree) for tree in theirs.values()))
    contract = {member.name for member in MEMBERS}
    missing = []
    for path, tree in ours.items():
        if path.parent != REMOTE:
            continue
        for name in sorted(_accessed(tree) - defined - contract - DOCUMENTED):
            private = name.startswith("_") and not name.startswith("__")
            if private or name in paramiko_attributes:
                missing.append(f"{path.name}: {name}")
    assert missing == [], (
        "keysyncd/io/remote uses paramiko members that keysyncd/io/remote/paramiko_contract.py "
        f"does not list: {missing}"
    )


def test_the_contract_names_only_what_is_used() -> None:
    """Each listed member is used where the contract says: a stale entry would hide that a
    member is no longer relied on (and the pin could loosen)."""
    for member in MEMBERS:
        tree = ast.parse((REMOTE / member.used_in).read_text())
        assert member.name in _accessed(tree), f"{member.label} is not used in {member.used_in}"
