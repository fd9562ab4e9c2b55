"""A node's directory is hostile input: each case plants something on node1 of a real fleet.

For every case: ``verify`` exits 1 naming the node and the entry; ``sync`` (``sync --force``
for a diverged node; for a directory at a key name, after the operator removed it) leaves
node1 so that keystone's loader, run on its directory, loads exactly the controller's keys,
each from a canonical regular file with mode 0600; nothing outside the node's repository
changed (content, mode and type of every planted target); no session process is left on
the node. Cases keystone ignores (a name it cannot load) must be left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from keysyncd.commands.cli import main
from keysyncd.io.remote import sftp
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet, find_sshd
from keysyncd.testing.processes import FleetUnsupported, descendants
from tests.keystone_compat import get_key_files

pytestmark = pytest.mark.fleet
ROOT = os.geteuid() == 0


@dataclass
class World:
    """A 3-node fleet and a controller holding keys {0, 1, 2}; node1 is reached through a
    symlinked parent (``links/node1 -> fleet/node1``), as some layouts do."""

    fleet: Fleet
    config: Path
    controller: Path
    outside: Path
    link: Path  # the symlinked parent of node1's configured repository path

    @property
    def node_dir(self) -> Path:
        """Return node1's repository as configured (keystone's key_repository)."""
        return self.link / "keys"

    @property
    def real_dir(self) -> Path:
        return self.fleet.node("node1").directory


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        find_sshd()
    except FleetUnsupported as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("hostile")
    with Fleet(root / "fleet", 3) as fleet:
        (root / "links").mkdir()
        link = root / "links" / "node1"
        link.symlink_to(fleet.node("node1").directory.parent)
        owner = {"owner": 0, "group": 0} if ROOT else {}
        config = fleet_config(fleet, root / "ctl", repository=owner)
        text = config.read_text().replace(str(fleet.node("node1").directory), str(link / "keys"))
        config.write_text(text)
        world = World(fleet, config, root / "ctl" / "keys", root / "outside", link)
        assert run(world, "init") == 0
        assert run(world, "rotate") == 0  # {0, 1, 2}: primary 2
        yield world


def run(world: World, *args: str) -> int:
    return main(["-c", str(world.config), *args])


def controller_keys(world: World) -> dict[int, str]:
    return {int(n): (world.controller / n).read_text() for n in os.listdir(world.controller)}


def reset(world: World) -> None:
    """Put node1 back in sync by hand and rebuild the outside decoys."""
    world.link.unlink()
    world.link.symlink_to(world.real_dir.parent)
    directory = world.real_dir
    if directory.is_symlink():
        directory.unlink()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    for name in os.listdir(world.controller):
        (directory / name).write_bytes((world.controller / name).read_bytes())
        (directory / name).chmod(0o600)
    shutil.rmtree(world.outside, ignore_errors=True)
    world.outside.mkdir()
    (world.outside / "decoy").write_text("not a key: must never change\n")
    (world.outside / "decoy").chmod(0o644)
    (world.outside / "key").write_bytes(Fernet.generate_key())
    (world.outside / "key").chmod(0o644)
    (world.outside / "dir").mkdir()
    (world.outside / "dir" / "1").write_text("an integer-named file that is not ours\n")
    os.mkfifo(world.outside / "fifo")
    (world.outside / "alt" / "keys").mkdir(parents=True)
    (world.outside / "alt" / "keys" / "5").write_text("junk\n")


def snapshot(top: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Return every path below ``top``: type, mode, owner, content digest or link target."""
    found: dict[str, tuple] = {}
    for base, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(base) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                what = os.readlink(path)
            else:
                what = ""
            found[str(path)] = (stat.S_IFMT(info.st_mode), info.st_mode & 0o7777, info.st_uid,
                                what)  # fmt: skip
    return found


def assert_loads_exactly_the_controllers_keys(world: World) -> None:
    files, keys = get_key_files(str(world.node_dir))
    assert keys == controller_keys(world)
    for index, path in files.items():
        assert os.path.basename(path) == str(index)
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, path
        if ROOT:
            assert (info.st_uid, info.st_gid) == (0, 0), path
    names = [n for n in os.listdir(world.node_dir) if _is_int(n)]
    assert sorted(names) == sorted(str(i) for i in keys), "nothing else at a key name"


def _is_int(name: str) -> bool:
    try:
        int(name)
    except ValueError:
        return False
    return True


def assert_no_session_left(world: World) -> None:
    """The node's sshd has no session process left (a FIFO opened by sftp would leave one)."""
    pid = world.fleet.node("node1").pid
    assert pid is not None
    deadline = time.monotonic() + 5.0
    while descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants(pid) == []


# --- the cases ----------------------------------------------------------------------------

Plant = Callable[[World, Path], None]


@dataclass(frozen=True)
class Case:
    """``expect``: converge (sync fixes it), force (diverged: sync refuses, --force fixes),
    invalid (a directory: sync reports it; fixed after the operator removes it)."""

    id: str
    plant: Plant
    expect: str
    named: str  # what verify's output must name
    fix: Plant | None = None  # the operator's fix for "invalid"


def key_file(name: str, content: bytes | None = None) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).write_bytes(Fernet.generate_key() if content is None else content)

    return plant


def copy_of(index: int, name: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).write_bytes((world.controller / str(index)).read_bytes())

    return plant


def symlink(name: str, target: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).unlink(missing_ok=True)
        (node / name).symlink_to(world.outside / target)

    return plant


def fifo(name: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).unlink(missing_ok=True)
        os.mkfifo(node / name)

    return plant


def unix_socket(name: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(node / name))

    return plant


def directory(name: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).unlink(missing_ok=True)
        (node / name).mkdir()
        (node / name / "inside").write_text("x\n")

    return plant


def remove_directory(name: str) -> Plant:
    def fix(world: World, node: Path) -> None:
        shutil.rmtree(node / name)

    return fix


def huge(name: str) -> Plant:
    def plant(world: World, node: Path) -> None:
        with open(node / name, "wb") as handle:
            handle.truncate(16 << 20)  # 16 MiB, sparse

    return plant


def chmod(name: str, mode: int) -> Plant:
    def plant(world: World, node: Path) -> None:
        (node / name).chmod(mode)

    return plant


def chown(name: str, uid: int) -> Plant:
    def plant(world: World, node: Path) -> None:
        os.chown(node / name, uid, uid)

    return plant


def hard_link(name: str) -> Plant:
    """The key file is also an outside file's name (same inode), mode 0644: a chmod of the
    key would change the outside file too."""

    def plant(world: World, node: Path) -> None:
        outside = world.outside / "hardlinked"
        os.link(node / name, outside)
        outside.chmod(0o644)

    return plant


def many(count: int) -> Plant:
    """``count`` files named -1, -2, ...: keystone loads each (as a negative key id)."""

    def plant(world: World, node: Path) -> None:
        for number in range(1, count + 1):
            (node / f"-{number}").write_bytes(b"x")

    return plant


def remove_many(world: World, node: Path) -> None:
    for name in os.listdir(node):
        if name.startswith("-"):
            (node / name).unlink()


def repository_link(world: World, node: Path) -> None:
    shutil.rmtree(world.real_dir)
    world.real_dir.symlink_to(world.outside / "dir")


def restore_repository(world: World, node: Path) -> None:
    world.real_dir.unlink()
    world.real_dir.mkdir(mode=0o700)


def relinked_parent(world: World, node: Path) -> None:
    world.link.unlink()
    world.link.symlink_to(world.outside / "alt")


def directory_mode(world: World, node: Path) -> None:
    node.chmod(0o755)


CASES = [
    Case("099-valid-key", key_file("099"), "force", "'099'"),
    Case("01-copy-of-key-1", copy_of(1, "01"), "converge", "'01'"),
    Case("01-other-key", key_file("01"), "converge", "'01'"),
    Case("minus-1", key_file("-1"), "converge", "'-1'"),
    Case("trailing-space-1", key_file("1 "), "converge", "'1 '"),
    Case("leading-space-2", copy_of(2, " 2"), "converge", "' 2'"),
    Case("plus-3", key_file("+3"), "force", "'+3'"),
    Case("arabic-indic-3", key_file("\u0663"), "force", "'\\u0663'"),
    Case("underscore-1_0", key_file("1_0"), "force", "'1_0'"),
    Case("newline-0-junk", key_file("\n0", b"junk\n"), "converge", "'\\n0'"),
    Case("link-1-to-outside-file", symlink("1", "decoy"), "converge", "symlink"),
    Case("link-5-to-outside-key", symlink("5", "key"), "force", "'5'"),
    Case("link-0-to-outside-dir", symlink("0", "dir"), "converge", "symlink"),
    Case("link-7-to-outside-dir", symlink("7", "dir"), "converge", "symlink"),
    Case("dangling-link-1", symlink("1", "nothing-here"), "converge", "symlink"),
    Case("link-2-to-outside-fifo", symlink("2", "fifo"), "converge", "symlink"),
    Case("fifo-at-0", fifo("0"), "converge", "fifo"),
    Case("fifo-at-9", fifo("9"), "converge", "fifo"),
    Case("socket-at-6", unix_socket("6"), "converge", "socket"),
    Case("directory-at-8", directory("8"), "invalid", "'8'", remove_directory("8")),
    Case("directory-at-0", directory("0"), "invalid", "'0'", remove_directory("0")),
    Case("huge-file-at-3", huge("3"), "converge", "extra key 3"),
    Case("huge-file-at-0", huge("0"), "converge", "different key 0"),
    Case("empty-primary-2", key_file("2", b""), "converge", "missing key 2"),
    Case("junk-in-key-1", key_file("1", b"junk\n"), "converge", "different key 1"),
    Case("other-key-at-0", key_file("0"), "converge", "different key 0"),
    Case("mode-0644-key-1", chmod("1", 0o644), "converge", "wrong mode or owner: key 1"),
    Case("hard-link-out-0644", hard_link("1"), "converge", "wrong mode or owner: key 1"),
    Case("directory-mode-0755", directory_mode, "converge", "wrong mode or owner: the directory"),
    Case("repository-is-a-symlink", repository_link, "invalid", "is a symlink", restore_repository),
    Case("parent-relinked", relinked_parent, "converge", "missing keys 2, 1 and 0"),
    Case("three-hundred-odd-names", many(300), "converge", "and 280 more entries"),
    Case("thousand-and-one-names", many(1001), "invalid", "more than 1000", remove_many),
]
if ROOT:
    CASES.append(
        Case("wrong-owner-key-1", chown("1", 65534), "converge", "wrong mode or owner: key 1")
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_entry_on_a_node(
    world: World, case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(world)
    assert run(world, "verify") == 0, "node1 starts in sync"
    case.plant(world, world.node_dir)
    # the parent case moves the repository itself there: it is the node's repository now
    skip = world.outside / "alt" / "keys" if case.id == "parent-relinked" else None
    outside = snapshot(world.outside, skip)
    nodes = {n.name: snapshot(n.directory) for n in world.fleet.nodes if n.name != "node1"}
    capsys.readouterr()

    assert run(world, "verify") == 1
    out = capsys.readouterr().out
    node1 = next(line for line in out.splitlines() if line.startswith("  node1 "))
    assert case.named in node1, out
    assert_no_session_left(world)

    code = run(world, "sync")
    out = capsys.readouterr().out
    if case.expect == "force":
        assert code == 1 and "diverged" in out and "sync --force" in out, out
        assert run(world, "sync", "--force") == 0
    elif case.expect == "invalid":
        assert code == 1 and "invalid_entry" in out, out
        assert_no_session_left(world)
        assert case.fix is not None
        case.fix(world, world.node_dir)  # what the operator is told to do
        assert run(world, "sync") == 0
    else:
        assert code == 0, out
    assert_loads_exactly_the_controllers_keys(world)
    assert run(world, "verify") == 0
    assert snapshot(world.outside, skip) == outside, "nothing outside the repository changed"
    assert {n.name: snapshot(n.directory) for n in world.fleet.nodes if n.name != "node1"} == nodes
    assert_no_session_left(world)


def not_utf8_name(world: World, node: Path) -> None:
    with open(os.path.join(os.fsencode(node), b"\xff1"), "wb") as handle:
        handle.write(Fernet.generate_key())  # keystone's int() never sees an integer here


def temp_named_link(world: World, node: Path) -> None:
    (node / ".keysyncd-0.tmp").symlink_to(world.outside / "decoy")


def word_name(world: World, node: Path) -> None:
    (node / "one").write_bytes(Fernet.generate_key())


IGNORED = [not_utf8_name, temp_named_link, word_name]


@pytest.mark.parametrize("plant", IGNORED, ids=[plant.__name__ for plant in IGNORED])
def test_names_keystone_cannot_load_are_left_alone(world: World, plant: Plant) -> None:
    reset(world)
    plant(world, world.node_dir)
    outside = snapshot(world.outside)
    listing = sorted(os.listdir(os.fsencode(world.node_dir)))
    assert run(world, "verify") == 0
    assert run(world, "sync") == 0
    assert sorted(os.listdir(os.fsencode(world.node_dir))) == listing
    assert snapshot(world.outside) == outside
    assert_loads_exactly_the_controllers_keys(world)
    assert_no_session_left(world)


def test_every_report_stays_small_whatever_a_node_holds(world: World) -> None:
    """Thousands of odd entries on a node: each report names twenty, counts the rest."""
    reset(world)
    many(900)(world, world.node_dir)
    assert run(world, "sync") == 0
    reports = sorted((world.config.parent / "reports").glob("*.json"))
    assert reports[-1].stat().st_size < 32_000, reports[-1].stat().st_size
    state = world.config.parent / "state" / "repositories" / "fernet-tokens.json"
    assert state.stat().st_size < 32_000
    assert_loads_exactly_the_controllers_keys(world)


@pytest.mark.parametrize("swap_to", ["outside-file", "fifo"])
def test_a_file_swapped_between_listing_and_read_is_never_trusted(
    world: World, swap_to: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node's owner renames a symlink over key 1 after it was listed, before it is read
    (what an inotify watcher on the node can do): the outside file's digest never reaches a
    report, and a FIFO behind it costs the node one operation_timeout, nothing more."""
    reset(world)
    secret = world.outside / "secret"
    secret.write_text("root-only secret\n")
    secret.chmod(0o600)
    target = secret if swap_to == "outside-file" else world.outside / "fifo"
    real_read, real_read_many = sftp.NodeSession.read, sftp.NodeSession.read_many
    swapped: list[str] = []

    def race(self: sftp.NodeSession, entries: Any) -> None:
        if self.node.name == "node1" and "1" in [e.name for e in entries] and not swapped:
            swapped.append("1")
            (world.node_dir / "swap").symlink_to(target)
            os.rename(world.node_dir / "swap", world.node_dir / "1")

    def racing_read(self: sftp.NodeSession, entry: Any) -> bytes | None:
        race(self, [entry])
        result: bytes | None = real_read(self, entry)
        return result

    def racing_read_many(self: sftp.NodeSession, entries: Any) -> list[bytes | None]:
        race(self, entries)  # between the listing and the batch of opens
        result: list[bytes | None] = real_read_many(self, entries)
        return result

    monkeypatch.setattr(sftp.NodeSession, "read", racing_read)
    monkeypatch.setattr(sftp.NodeSession, "read_many", racing_read_many)
    started = time.monotonic()
    assert run(world, "verify") == 1
    elapsed = time.monotonic() - started
    monkeypatch.undo()
    out = capsys.readouterr().out
    assert swapped, "the race was run"
    report = sorted((world.config.parent / "reports").glob("*-verify-*.json"))[-1].read_text()
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in report
    if swap_to == "fifo":
        assert re.search(r"node1\s+failed.*timeout", out), out
        assert elapsed < world_operation_timeout(world) + 5, elapsed
        release_fifo_readers(world.outside / "fifo")  # the blocked opener on the node (see note)
    assert run(world, "sync") == 0
    assert_loads_exactly_the_controllers_keys(world)
    assert secret.read_text() == "root-only secret\n"
    assert_no_session_left(world)


def world_operation_timeout(world: World) -> float:
    return float(yaml.safe_load(world.config.read_text())["ssh"]["operation_timeout"])


def release_fifo_readers(fifo: Path) -> None:
    """Open the FIFO for writing and close it: a reader blocked in open() gets EOF and ends.

    SFTP v3 has no O_NOFOLLOW or O_NONBLOCK, so a name swapped for a FIFO between listing and
    open blocks the node's sftp-server until a writer comes; keysyncd gives up on it after
    operation_timeout, and this is what lets the node's process end.
    """
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader (yet): ENXIO
            time.sleep(0.05)
            continue
        os.close(descriptor)
        return
