"""Temp files are created exclusively and private from their first instant, on a node (over
SFTP) and on the controller: a name planted where keysyncd's next temp file will be is
refused, never written through; and every temp file is 0600 when it appears (watched with
inotify on the directory, as it is created)."""

from __future__ import annotations

import ctypes
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from keysyncd.commands.cli import main
from keysyncd.core.names import TEMP_PREFIX
from keysyncd.io.local import fsutil
from keysyncd.io.local.fsutil import CLOCK_PROBE_PREFIX as CLOCK_PROBE
from keysyncd.io.remote import sftp
from keysyncd.io.remote.sftp import PROBE_MODE
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet

IN_CREATE = 0x100
# keysyncd's next temp name, as the tests make it: not one its cleanup of stale temp files
# would remove first, so that only exclusive creation stands between it and the plant
PLANTED = "planted.tmp"
ATTEMPTS = 5  # actions watched at most, until one temp file is caught before its rename


@contextmanager
def creations(directory: Path) -> Iterator[list[tuple[str, int]]]:
    """Yield a list that fills with (name, mode) of every temp file created in ``directory``,
    its mode read the moment inotify reports it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    descriptor = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert descriptor >= 0, os.strerror(ctypes.get_errno())
    assert libc.inotify_add_watch(descriptor, str(directory).encode(), IN_CREATE) >= 0
    seen: list[tuple[str, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not select.select([descriptor], [], [], 0.1)[0]:
                continue
            data = os.read(descriptor, 65536)
            offset = 0
            while offset < len(data):
                _, _, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if name.startswith(TEMP_PREFIX):
                    try:
                        seen.append((name, stat.S_IMODE(os.lstat(directory / name).st_mode)))
                    except FileNotFoundError:
                        seen.append((name, -1))  # gone before we looked: renamed already

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
        os.close(descriptor)


def caught(directory: Path, action: Callable[[], object]) -> list[tuple[str, int]]:
    """Run ``action`` until a temp file holding key material is caught as it appears in
    ``directory`` (a loaded machine may rename one before the watcher looks), at most
    ATTEMPTS times; return every (name, mode) seen."""
    seen: list[tuple[str, int]] = []
    for _ in range(ATTEMPTS):
        with creations(directory) as found:
            action()
            deadline = time.monotonic() + 5
            while len(found) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        seen += found
        if any(mode != -1 and not name.startswith(CLOCK_PROBE) for name, mode in found):
            break
    return seen


@pytest.fixture
def ready(make_fleet: Callable[..., Fleet], tmp_path: Path) -> tuple[Fleet, Path]:
    fleet = make_fleet(3)
    config = fleet_config(fleet, tmp_path / "ctl")
    assert main(["-c", str(config), "init"]) == 0
    victim = tmp_path / "victim"
    victim.write_text("must never be written through\n")
    victim.chmod(0o644)
    return fleet, config


def test_a_planted_temp_name_on_a_node_is_refused_never_written_through(
    ready: tuple[Fleet, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, config = ready
    victim = config.parent.parent / "victim"
    node1 = fleet.node("node1").directory
    (node1 / PLANTED).symlink_to(victim)
    (fleet.node("node2").directory / PLANTED).write_text("planted\n")
    monkeypatch.setattr(sftp, "temp_name", lambda: PLANTED)  # keysyncd's next temp name
    assert main(["-c", str(config), "rotate", "--force"]) == 1  # the planted nodes fail
    assert victim.read_text() == "must never be written through\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert (fleet.node("node2").directory / PLANTED).read_text() == "planted\n"
    assert sorted(os.listdir(fleet.node("node3").directory)) == ["0", "1", "2"], "node3 fine"


def test_every_temp_file_on_a_node_is_0600_when_it_appears(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    node1 = fleet.node("node1").directory

    def upload() -> None:
        for name in os.listdir(node1):
            (node1 / name).unlink()  # three keys to upload
        assert main(["-c", str(config), "sync"]) == 0

    seen = caught(node1, upload)
    # the clock probe is created empty and 0644 (keystone opens every file it lists); every
    # file that may hold key material is 0600 from its first instant
    modes = [mode for name, mode in seen if mode != -1 and not name.startswith(CLOCK_PROBE)]
    probes = {mode for name, mode in seen if mode != -1 and name.startswith(CLOCK_PROBE)}
    assert modes, f"no temp file was caught as it appeared: {seen}"
    assert set(modes) == {0o600}, seen
    assert probes <= {PROBE_MODE}, seen


def test_a_planted_temp_name_on_the_controller_is_refused(
    ready: tuple[Fleet, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = ready
    victim = config.parent.parent / "victim"
    keys = config.parent / "keys"
    before = {name: (keys / name).read_bytes() for name in os.listdir(keys)}
    (keys / PLANTED).symlink_to(victim)
    monkeypatch.setattr(fsutil, "temp_name", lambda: PLANTED)
    capsys.readouterr()
    assert main(["-c", str(config), "rotate"]) == 1
    err = capsys.readouterr().err
    assert "File exists" in err and "nothing changed" in err, err
    assert victim.read_text() == "must never be written through\n"
    assert {n: (keys / n).read_bytes() for n in os.listdir(keys) if n != PLANTED} == before


def test_every_local_temp_file_is_0600_when_it_appears(ready: tuple[Fleet, Path]) -> None:
    _, config = ready
    keys = config.parent / "keys"

    def rotate() -> None:
        assert main(["-c", str(config), "rotate"]) == 0

    seen = caught(keys, rotate)
    modes = [mode for _, mode in seen if mode != -1]
    assert modes, f"no temp file was caught as it appeared: {seen}"
    assert set(modes) == {0o600}, seen


def test_every_local_temp_file_is_created_exclusive_and_0600(
    ready: tuple[Fleet, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mode a file is created with, as the open(2) call asks for it: a temp file created
    0644 and fchmod-ed afterwards would be readable by others for an instant (inotify above
    may look too late to see it). Every create under the controller's directories is a temp
    file, O_CREAT|O_EXCL, mode 0600; the real os.open still does the work."""
    _, config = ready
    real_open = os.open
    creates: list[tuple[str, int, int]] = []

    def recording_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            creates.append((str(path), flags, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    assert main(["-c", str(config), "rotate"]) == 0
    monkeypatch.undo()
    temps = [(path, flags, mode) for path, flags, mode in creates if TEMP_PREFIX in path]
    assert len(temps) >= 3, f"a rotation writes keys, the journal and a report: {creates}"
    reports = str(config.parent / "reports")
    for path, flags, mode in temps:
        assert flags & os.O_EXCL, f"{path} created without O_EXCL"
        wanted = 0o640 if path.startswith(reports) else 0o600  # reports hold no secret
        assert mode == wanted, f"{path} created {mode:04o}, not {wanted:04o}"
    keys = [path for path, _, _ in temps if path.startswith(str(config.parent / "keys"))]
    assert keys, f"no key file was written through a temp file: {temps}"
