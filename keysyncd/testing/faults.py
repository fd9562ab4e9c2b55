"""Faults the test fleet simulates on a node's key directory: read-only, full and stalled
(mount, chattr, fsfreeze).

Each fault is a context manager that hands its undo action to ``guard`` (``Fleet._fault``),
which runs it on exit or in ``Fleet.stop()``, whichever comes first.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keysyncd.testing.processes import FleetUnsupported, is_root, run

Undo = Callable[[], None]
Guard = Callable[[Undo], contextlib.AbstractContextManager[None]]


@functools.cache
def can_mount() -> bool:
    """Return True when running as root and a bind mount works here (else mount faults skip)."""
    if not is_root() or shutil.which("mount") is None:
        return False
    probe = tempfile.mkdtemp(prefix="fleet-mount-probe-")
    try:
        run("mount", "--bind", probe, probe)
        run("umount", probe)
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


def unmount(target: Path) -> None:
    """Unmount ``target`` if it is the last mount point there (lazily if busy)."""
    if mounts_under(target)[-1:] == [str(target)]:
        try:
            run("umount", str(target))
        except subprocess.CalledProcessError:  # busy (an open session): detach lazily
            run("umount", "-l", str(target))


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


def fill_up(directory: Path) -> Path:
    """Fill ``directory``'s file system with one file until not even 44 bytes fit; return
    the file (removing it gives the space back)."""
    stats = os.statvfs(directory)
    _fill(directory, stats.f_blocks * stats.f_frsize)
    return directory / ".fill"


@contextlib.contextmanager
def tiny_tmpfs(directory: Path, size_kib: int = 64) -> Iterator[Path]:
    """Mount a ``size_kib`` tmpfs (mode 0700) at ``directory`` until exit, then unmount it.

    Needs can_mount() (the caller checks it). A directory of its own file system: fill it
    with ``fill_up`` to see what a full disk does to whoever writes there.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    options = f"size={size_kib}k,mode=0700"
    run("mount", "-t", "tmpfs", "-o", options, "keysyncd-tiny", str(directory))
    try:
        yield directory
    finally:
        unmount(directory)


@contextlib.contextmanager
def readonly(
    directory: Path, method: str, guard: Guard, mount_works: Callable[[], bool] = can_mount
) -> Iterator[None]:
    """Make ``directory`` read-only for the login user until exit (see Fleet.make_readonly).

    Raise FleetUnsupported if the method cannot work here, ValueError if it is unknown.
    """
    path = str(directory)
    method = ("mount" if is_root() else "chmod") if method == "auto" else method
    if method == "chmod":
        undo = functools.partial(directory.chmod, directory.stat().st_mode & 0o7777)
        directory.chmod(0o500)
    elif method == "mount" and mount_works():
        run("mount", "--bind", path, path)
        undo = functools.partial(unmount, directory)
    elif method == "immutable" and is_root() and shutil.which("chattr"):
        run("chattr", "+i", path)
        undo = functools.partial(run, "chattr", "-i", path)
    elif method in ("mount", "immutable"):
        raise FleetUnsupported(f"make_readonly({method!r}) needs root and mount/chattr")
    else:
        raise ValueError(f"unknown make_readonly method {method!r}")
    with guard(undo):
        if method == "mount":
            run("mount", "-o", "remount,bind,ro", path)
        yield


def _give_back(directory: Path, mountpoint: Path) -> None:
    """Unmount what covers ``directory``, give it the contents of ``mountpoint/keys``, then
    unmount and remove ``mountpoint`` (whatever failed before)."""
    try:
        unmount(directory)
        shutil.rmtree(directory)
        shutil.copytree(mountpoint / "keys", directory, symlinks=True)
    finally:
        unmount(mountpoint)
        mountpoint.rmdir()


@contextlib.contextmanager
def full(directory: Path, tmpfs: Path, size_kib: int, guard: Guard) -> Iterator[None]:
    """Put ``directory`` on a tiny, completely full tmpfs mounted at ``tmpfs`` until exit.

    Needs can_mount() (the caller checks it); see Fleet.make_full for the layout.
    """
    pages = sum(2 + p.lstat().st_size // 4096 for p in directory.rglob("*"))
    size = max(size_kib * 1024, (pages + 16) * 4096)
    tmpfs.mkdir(mode=0o700, exist_ok=True)
    opts = f"size={size},mode=0700"
    run("mount", "-t", "tmpfs", "-o", opts, "keysyncd-fleet-full", str(tmpfs))
    inner = tmpfs / "keys"

    with guard(functools.partial(_give_back, directory, tmpfs)):
        shutil.copytree(directory, inner, symlinks=True)
        for path in inner.rglob("*"):
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)
        _fill(tmpfs, size)
        run("mount", "--bind", str(inner), str(directory))
        yield


@dataclass(frozen=True)
class Freezer:
    """A node directory on its own filesystem, which ``freeze`` stalls: every read still
    answers, every write (create, write, rename, unlink) waits in the kernel until ``thaw``."""

    mountpoint: Path

    def freeze(self) -> None:
        """Stall every write on the node's filesystem (fsfreeze -f)."""
        run("fsfreeze", "-f", str(self.mountpoint))

    def thaw(self) -> None:
        """Let the stalled writes go on (fsfreeze -u); a filesystem not frozen is left as is."""
        with contextlib.suppress(subprocess.CalledProcessError):
            run("fsfreeze", "-u", str(self.mountpoint))


@contextlib.contextmanager
def freezable(directory: Path, mountpoint: Path, guard: Guard) -> Iterator[Freezer]:
    """Put ``directory`` on a small ext4 filesystem (a loop device mounted at ``mountpoint``,
    its ``keys`` subdirectory bind mounted over the directory) until exit; yield its Freezer.

    Raise FleetUnsupported unless root can mount loop devices and fsfreeze exists.
    """
    if not can_mount() or not all(shutil.which(t) for t in ("fsfreeze", "mkfs.ext4")):
        raise FleetUnsupported("a stalled node needs root, loop mounts, mkfs.ext4 and fsfreeze")
    image = mountpoint.with_name(f"{mountpoint.name}.img")
    with image.open("wb") as sparse:
        sparse.truncate(16 * 1024 * 1024)
    run("mkfs.ext4", "-q", "-F", str(image))
    mountpoint.mkdir(mode=0o700)
    run("mount", "-o", "loop", str(image), str(mountpoint))
    freezer, inner = Freezer(mountpoint), mountpoint / "keys"

    def undo() -> None:
        freezer.thaw()
        try:
            _give_back(directory, mountpoint)
        finally:
            image.unlink()

    with guard(undo):
        shutil.copytree(directory, inner, symlinks=True)
        run("mount", "--bind", str(inner), str(directory))
        yield freezer
