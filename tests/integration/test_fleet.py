"""The test fleet runs real OpenSSH servers and simulates the faults keysyncd must survive."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pwd
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest

from keysyncd.testing import fleet as fleet_mod
from keysyncd.testing.fleet import Fleet, FleetUnsupported, can_mount, mounts_under

pytestmark = pytest.mark.fleet
KEY = b"gAAAAABkZXlzeW5jZC10ZXN0LWtleS0wMDAwMDAwMA=="  # 44 bytes, like a Fernet key
needs_mount = pytest.mark.skipif(not can_mount(), reason="needs root and a working mount(8)")


def connect(fleet: Fleet, name: str) -> paramiko.SSHClient:
    """Connect like keysyncd should: client key only, strict known_hosts checking."""
    node = fleet.node(name)
    client = paramiko.SSHClient()
    client.load_host_keys(str(fleet.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            node.host,
            node.port,
            username=fleet.user,
            key_filename=str(fleet.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=5,
            banner_timeout=5,
            auth_timeout=5,
        )
    except BaseException:
        client.close()
        raise
    return client


@contextlib.contextmanager
def sftp_to(fleet: Fleet, name: str) -> Iterator[paramiko.SFTPClient]:
    client = connect(fleet, name)
    try:
        yield client.open_sftp()
    finally:
        client.close()


def seed(fleet: Fleet, name: str, count: int = 3) -> dict[str, bytes]:
    files = {str(i): KEY[:-3] + f"{i:02d}=".encode() for i in range(count)}
    for fname, data in files.items():
        (fleet.node(name).directory / fname).write_bytes(data)
    return files


def test_layout_known_hosts_and_config_entries(fleet5: Fleet) -> None:
    nodes = fleet5.nodes
    assert [n.name for n in nodes] == [f"node{i}" for i in range(1, 6)]
    assert len({n.port for n in nodes}) == 5 and len({n.pid for n in nodes}) == 5
    lines = fleet5.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"[127.0.0.1]:{n.port}" for n in nodes]
    assert len({line.split()[2] for line in lines}) == 5  # one host key per node
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)
    assert fleet5.client_key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    for node in nodes:
        assert node.directory == fleet5.root / node.name / "keys"
        assert node.directory.stat().st_mode & 0o777 == 0o700
        assert node.config_entry() == {
            "name": node.name,
            "host": "127.0.0.1",
            "port": node.port,
            "path": str(node.directory),
        }


def test_every_node_accepts_strict_sftp_put_rename_list(fleet5: Fleet) -> None:
    def push(name: str) -> list[str]:
        directory = str(fleet5.node(name).directory)
        with sftp_to(fleet5, name) as sftp:
            sftp.putfo(io.BytesIO(KEY), f"{directory}/.0.tmp")
            sftp.posix_rename(f"{directory}/.0.tmp", f"{directory}/0")
            sftp.rename(f"{directory}/0", f"{directory}/1")
            with sftp.open(f"{directory}/1") as fh:
                assert fh.read() == KEY
            return sorted(sftp.listdir(directory))

    with ThreadPoolExecutor(max_workers=5) as pool:
        listings = list(pool.map(push, [n.name for n in fleet5.nodes]))
    assert listings == [["1"]] * 5
    assert all((n.directory / "1").read_bytes() == KEY for n in fleet5.nodes)


def test_ssh_client_helper_is_strict(fleet: Fleet) -> None:
    client = fleet.ssh_client("node1")
    try:
        assert isinstance(client._policy, paramiko.RejectPolicy)
        assert client.open_sftp().listdir(str(fleet.node("node1").directory)) == []
    finally:
        client.close()


def test_sftp_only_node_refuses_exec(fleet: Fleet) -> None:
    client = connect(fleet, "node1")
    try:
        stdin, stdout, _ = client.exec_command("echo hi", timeout=5)
        stdin.channel.shutdown_write()
        out, status = stdout.read(), stdout.channel.recv_exit_status()
    finally:
        client.close()
    assert b"hi\n" not in out  # sshd answers "This service allows sftp connections only."
    assert status != 0


def test_rsync_push_to_shell_fleet(make_fleet, tmp_path: Path) -> None:
    if Path(pwd.getpwuid(os.geteuid()).pw_shell).name in ("nologin", "false"):
        pytest.skip("rsync needs a login shell for the current user")
    fleet = make_fleet(2, sftp_only=False)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / str(i)).write_bytes(KEY)
    (fleet.node("node1").directory / "stale").write_bytes(b"old")
    cmd = fleet.rsync_command("node1", src)
    assert cmd[:3] == ["rsync", "-az", "--delete"] and "StrictHostKeyChecking=yes" in cmd[4]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(fleet.node("node1").directory)) == ["0", "1", "2"]
    client = connect(fleet, "node2")
    try:
        assert client.exec_command("echo hi", timeout=5)[1].read() == b"hi\n"
    finally:
        client.close()


def test_stop_node_then_start_node(fleet: Fleet) -> None:
    node = fleet.node("node2")
    port, old_pid = node.port, node.pid
    fleet.stop_node("node2")
    assert node.pid is None
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError) as info:
        connect(fleet, "node2")
    assert isinstance(info.value, OSError)
    assert {e.errno for e in info.value.errors.values()} == {errno.ECONNREFUSED}
    connect(fleet, "node1").close()  # the others keep running
    fleet.start_node("node2")
    assert node.port == port and node.pid not in (None, old_pid)
    connect(fleet, "node2").close()


def test_rekey_node_breaks_strict_host_key_checking(fleet: Fleet) -> None:
    known = fleet.known_hosts.read_text()
    port = fleet.node("node3").port
    fleet.rekey_node("node3")
    assert fleet.known_hosts.read_text() == known and fleet.node("node3").port == port
    with pytest.raises(paramiko.BadHostKeyException) as info:
        connect(fleet, "node3")
    assert info.value.hostname == "127.0.0.1"  # paramiko drops the [host]:port form here
    assert info.value.key != info.value.expected_key
    assert info.value.expected_key.get_base64() in known
    connect(fleet, "node1").close()


def test_add_node_joins_known_hosts(fleet: Fleet) -> None:
    node = fleet.add_node()
    assert node.name == "node4" and len(fleet.nodes) == 4
    assert f"[127.0.0.1]:{node.port} ssh-ed25519" in fleet.known_hosts.read_text()
    with sftp_to(fleet, "node4") as sftp:
        assert sftp.listdir(str(node.directory)) == []


def test_port_clash_moves_to_another_port(make_fleet, monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: sshd's bind() fails
        busy, real = taken.getsockname()[1], fleet_mod._free_port
        calls: list[int] = []

        def first_busy(avoid: set[int]) -> int:
            calls.append(1)
            return busy if len(calls) == 1 else real(avoid)

        monkeypatch.setattr(fleet_mod, "_free_port", first_busy)
        fleet = make_fleet(1)
        assert fleet.node("node1").port != busy
        connect(fleet, "node1").close()


def test_bad_config_fails_fast_with_sshd_log(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, 1, extra_config=("NoSuchOption yes",))
    with pytest.raises(RuntimeError, match="Bad configuration option: NoSuchOption"):
        fleet.start()
    assert fleet.node("node1").pid is None


def test_make_readonly_default(fleet: Fleet) -> None:
    if os.geteuid() == 0 and not can_mount():
        pytest.skip("as root, read-only needs a bind mount: mount(8) does not work here")
    files = seed(fleet, "node1")
    directory = str(fleet.node("node1").directory)
    with fleet.make_readonly("node1"), sftp_to(fleet, "node1") as sftp:
        with pytest.raises(OSError) as info:
            sftp.putfo(io.BytesIO(KEY), f"{directory}/.new.tmp")
        with pytest.raises(OSError):
            sftp.rename(f"{directory}/0", f"{directory}/9")
        assert {f: sftp.open(f"{directory}/{f}").read() for f in files} == files
    if os.geteuid() == 0:  # read-only bind mount: EROFS -> SSH_FX_FAILURE, no errno
        assert type(info.value) is OSError and info.value.errno is None
        assert str(info.value) == "Failure"
    else:  # chmod 0500: EACCES -> SSH_FX_PERMISSION_DENIED
        assert isinstance(info.value, PermissionError) and info.value.errno == errno.EACCES
    assert mounts_under(fleet.root) == []
    with sftp_to(fleet, "node1") as sftp:
        sftp.putfo(io.BytesIO(KEY), f"{directory}/.new.tmp")


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_make_readonly_immutable_gives_permission_error(fleet: Fleet) -> None:
    files = seed(fleet, "node2", 1)
    directory = str(fleet.node("node2").directory)
    with fleet.make_readonly("node2", method="immutable"), sftp_to(fleet, "node2") as sftp:
        with pytest.raises(PermissionError) as info:
            sftp.putfo(io.BytesIO(KEY), f"{directory}/.new.tmp")
        assert info.value.errno == errno.EACCES and info.value.strerror == "Permission denied"
        assert sftp.open(f"{directory}/0").read() == files["0"]
    with sftp_to(fleet, "node2") as sftp:
        sftp.putfo(io.BytesIO(KEY), f"{directory}/.new.tmp")


@needs_mount
def test_make_full(fleet: Fleet) -> None:
    files = seed(fleet, "node1")
    directory = str(fleet.node("node1").directory)
    with fleet.make_full("node1"), sftp_to(fleet, "node1") as sftp:
        assert sorted(sftp.listdir(directory)) == sorted(files)  # the filler is elsewhere
        with pytest.raises(OSError, match=r"size mismatch in put!  0 != 44"):
            sftp.putfo(io.BytesIO(KEY), f"{directory}/.a.tmp")  # ENOSPC seen only by confirm
        with sftp.open(f"{directory}/.b.tmp", "wb") as fh, pytest.raises(OSError) as info:
            fh.write(KEY)  # a direct write reports SSH_FX_FAILURE
        assert str(info.value) == "Failure" and info.value.errno is None
        # paramiko pitfall: without confirm, a failed pipelined write is silently dropped
        sftp.putfo(io.BytesIO(KEY), f"{directory}/.c.tmp", confirm=False)
        assert sftp.stat(f"{directory}/.c.tmp").st_size == 0
        assert {f: sftp.open(f"{directory}/{f}").read() for f in files} == files
        sftp.remove(f"{directory}/.c.tmp")
        sftp.posix_rename(f"{directory}/2", f"{directory}/3")
    assert mounts_under(fleet.root) == []
    after = {p.name: p.read_bytes() for p in fleet.node("node1").directory.iterdir()}
    assert after == {
        "0": files["0"],
        "1": files["1"],
        "3": files["2"],
        ".a.tmp": b"",
        ".b.tmp": b"",
    }
    with sftp_to(fleet, "node1") as sftp:
        sftp.putfo(io.BytesIO(KEY), f"{directory}/.a.tmp")


def test_make_full_unsupported_without_mount(fleet: Fleet, monkeypatch) -> None:
    monkeypatch.setattr(fleet_mod, "can_mount", lambda: False)
    with pytest.raises(FleetUnsupported, match="root"), fleet.make_full("node1"):
        pass


def test_stop_kills_sessions_and_undoes_faults(make_fleet) -> None:
    fleet = make_fleet(3)
    recorded = [n.pid for n in fleet.nodes]
    client = connect(fleet, "node1")
    client.open_sftp().listdir(".")
    sessions = fleet_mod._descendants(recorded[0])
    assert sessions, "an open session runs in sshd child processes"
    faults = contextlib.ExitStack()
    if os.geteuid() == 0:
        faults.enter_context(fleet.make_readonly("node2", method="immutable"))
    if can_mount():
        faults.enter_context(fleet.make_readonly("node3"))
        faults.enter_context(fleet.make_full("node1"))
        assert len(mounts_under(fleet.root)) == 3
    fleet.stop()
    client.close()
    for pid in recorded:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(map(fleet_mod._alive, sessions))
    assert mounts_under(fleet.root) == []
    faults.close()  # leaving the contexts after stop() is harmless
    (fleet.node("node2").directory / "writable").write_bytes(KEY)
    fleet.stop()  # idempotent


def test_atexit_stops_a_forgotten_fleet(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        from pathlib import Path
        from keysyncd.testing.fleet import Fleet
        fleet = Fleet(Path({str(tmp_path)!r}), 2).start()
        print(*[n.pid for n in fleet.nodes])
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    try:
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:  # if the safety net failed, do not leak the orphans it left
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
