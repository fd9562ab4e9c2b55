"""The local key directory on disk: load, validate, write atomically; makes no decisions.
Every write is an exclusive 0600 temp file + fsync + rename, under umask 0o177; the
directory is checked before each read or write (``repolinks``)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keysyncd.core.keyring import Key, KeySet
from keysyncd.core.kinds import KeyKind
from keysyncd.core.names import (
    MAX_KEY_FILE,
    TEMP_PREFIX,
    canonical_index,
    key_index,
    show_name,
    too_large,
)
from keysyncd.core.policy import RotationPlan
from keysyncd.errors import RepositoryError
from keysyncd.io.local.fsutil import (
    describe_os_error,
    fsync_directory,
    read_key_file,
    remove_temp_files,
    write_temp,
)
from keysyncd.io.local.repolinks import (
    check_controller_directory,
    local_others,
    refusal,
    symmetric_file,
)

LAX = 0o027  # group-writable, or any access for others


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run the block with umask 0o177 so every file created is 0600 at most."""
    previous = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class Scan:
    """What is on disk: the valid keys found and every problem (file name + what is wrong)."""

    keyset: KeySet
    problems: tuple[str, ...]


def read_key(path: Path, index: int, kind: KeyKind) -> tuple[Key | None, str | None]:
    """Return the key at ``path`` (loaded by keystone as key ``index``), or None and what is wrong:
    a non-canonical name, not a regular file, unreadable, too large, not of ``kind``."""
    if canonical_index(path.name) is None:
        return None, f"non-canonical key name keystone loads as key {index}"
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None, "not a regular file"
        content = read_key_file(path)
    except ValueError as error:
        return None, str(error)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return None, "not a regular file"
        return None, f"cannot read: {describe_os_error(error)}"
    if len(content) > MAX_KEY_FILE:  # read_key_file stopped there: never read whole
        return None, too_large(MAX_KEY_FILE)
    problem = kind.problem(content)
    return (None, problem) if problem else (Key(index, content), None)


class Repository:
    """One key directory on the controller."""

    def __init__(
        self, path: Path, kind: KeyKind, owner: int | None = None, group: int | None = None
    ) -> None:
        self.path = path
        self.kind = kind
        self.owner = owner
        self.group = group

    def scan(self) -> Scan:
        """Return keys, problems; raise RepositoryError if unreadable, LocalFileError if unsafe."""
        check_controller_directory(self.path)
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            raise RepositoryError(f"repository {self.path} does not exist") from None
        except OSError as error:
            reason = describe_os_error(error)
            raise RepositoryError(f"cannot list repository {self.path}: {reason}") from None
        keys: list[Key] = []
        problems: list[str] = []
        for name in names:
            index = key_index(name)
            if index is None:
                continue
            key, problem = read_key(self.path / name, index, self.kind)
            if problem:
                shown = name if canonical_index(name) is not None else show_name(name)
                problems.append(f"{self.path}/{shown}: {problem}")
            elif key:
                keys.append(key)
        keyset = KeySet.of(keys)
        if not problems:
            problems.extend(f"{self.path}: {problem}" for problem in keyset.problems())
        return Scan(keyset, tuple(problems))

    def load(self) -> KeySet:
        """Return the repository's valid KeySet; raise RepositoryError naming every problem."""
        scan = self.scan()
        if scan.problems:
            raise RepositoryError("invalid repository: " + "; ".join(scan.problems))
        return scan.keyset

    def holds_keys(self) -> bool:
        """Return True if the directory exists and has any integer-named entry."""
        check_controller_directory(self.path)
        try:
            return any(key_index(name) is not None for name in os.listdir(self.path))
        except FileNotFoundError:
            return False

    def permission_problems(self) -> list[str]:
        """Return lax modes (any access by others, group write): such a repository is invalid."""
        check_controller_directory(self.path)
        warnings = []
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            return []
        if mode & LAX:
            warnings.append(f"{self.path}: lax permissions: directory mode {mode:04o}")
        for name in sorted(os.listdir(self.path)):
            if key_index(name) is None:
                continue
            with contextlib.suppress(OSError):
                file_mode = stat.S_IMODE((self.path / name).lstat().st_mode)
                if file_mode & LAX:
                    shown = name if canonical_index(name) is not None else show_name(name)
                    warnings.append(f"{self.path}/{shown}: lax permissions: mode {file_mode:04o}")
        return warnings

    def ensure_directory(self) -> None:
        """Create the directory (0700, configured owner) if missing; raise RepositoryError if it
        holds other files (changing nothing), LocalFileError if it is or could be a link."""
        check_controller_directory(self.path)
        if others := local_others(self.path, symmetric_file):
            raise RepositoryError(refusal("", self.path, others, "refusing to write keys"))
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # through the directory itself, never a link swapped in after the check
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            descriptor = os.open(self.path, flags)
            try:
                os.fchmod(descriptor, 0o700)
                self._chown(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            reason = describe_os_error(error)
            raise RepositoryError(f"cannot create repository {self.path}: {reason}") from None

    def _chown(self, path: Path | int) -> None:
        if self.owner is None and self.group is None:
            return
        os.chown(
            path, -1 if self.owner is None else self.owner, -1 if self.group is None else self.group
        )

    def _stage(self, content: bytes) -> Path:
        temp = write_temp(self.path, content)
        self._chown(temp)
        return temp

    def create(self, first: bytes, second: bytes) -> None:
        """Write new repository {1: first, 0: second}; raise RepositoryError (undone) on error."""
        self.write_keys({1: first, 0: second}, order=(1, 0))

    def write_keys(self, materials: dict[int, bytes], order: tuple[int, ...]) -> None:
        """Write ``materials`` as key files (replacing those indices), renaming in ``order``, all or
        nothing; raise RepositoryError, the directory restored, on failure."""
        self.ensure_directory()
        staged: dict[int, Path] = {}
        renamed: list[int] = []
        with private_umask():
            try:
                for index in order:
                    staged[index] = self._stage(materials[index])
                for index in order:
                    if (self.path / str(index)).exists():
                        raise RepositoryError(f"key {index} already exists in {self.path}")
                    os.rename(staged.pop(index), self.path / str(index))
                    renamed.append(index)
                fsync_directory(self.path)
            except (OSError, RepositoryError) as error:
                self._undo(staged.values(), renamed)
                if isinstance(error, RepositoryError):
                    raise
                reason = describe_os_error(error)
                raise RepositoryError(f"cannot write keys to {self.path}: {reason}") from None

    def _undo(self, temps: Iterable[Path], renamed: list[int]) -> None:
        """Remove temp files and the keys renamed so far: the directory is as it was."""
        for temp in list(temps):
            with contextlib.suppress(OSError):
                temp.unlink()
        for index in renamed:
            with contextlib.suppress(OSError):
                (self.path / str(index)).unlink()

    def rotate(self, keyset: KeySet, plan: RotationPlan, new_staged: bytes) -> None:
        """Apply ``plan``'s promotion to disk: 0's content appears as the new primary, then the new
        staged key replaces 0 (every intermediate state is loadable); retirement is ``retire``'s.
        Raise RepositoryError on failure, with the directory unchanged."""
        check_controller_directory(self.path)
        staged_key = keyset.staged
        if staged_key is None:
            raise RepositoryError(f"cannot rotate {self.path}: no staged key 0")
        new_primary = self.path / str(plan.new_primary)
        temps: list[Path] = []
        with private_umask():
            try:
                temps.append(self._stage(staged_key.material))
                temps.append(self._stage(new_staged))
                if new_primary.exists():
                    raise RepositoryError(
                        f"cannot rotate {self.path}: key {plan.new_primary} exists"
                    )
                os.rename(temps[0], new_primary)
                try:
                    os.rename(temps[1], self.path / "0")
                except OSError:
                    new_primary.unlink()
                    raise
                fsync_directory(self.path)
            except (OSError, RepositoryError) as error:
                self._undo(temps, [])
                if isinstance(error, RepositoryError):
                    raise
                reason = f"{describe_os_error(error)}; nothing changed"
                raise RepositoryError(f"cannot rotate {self.path}: {reason}") from None

    def replace_staged(self, new_staged: bytes) -> None:
        """Replace staged key 0 by ``new_staged`` in one rename (0 is never missing); raise
        RepositoryError on failure, with the directory unchanged."""
        check_controller_directory(self.path)
        with private_umask():
            temp = None
            try:
                temp = self._stage(new_staged)
                os.replace(temp, self.path / "0")
                fsync_directory(self.path)
            except OSError as error:
                self._undo([temp] if temp is not None else [], [])
                reason = f"{describe_os_error(error)}; nothing changed"
                raise RepositoryError(f"cannot replace key 0 in {self.path}: {reason}") from None

    def retire(self, indices: tuple[int, ...]) -> None:
        """Delete the key files ``indices``; raise RepositoryError naming the first failure. A key
        that cannot be deleted is only kept longer, which is always safe."""
        check_controller_directory(self.path)
        try:
            for index in indices:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / str(index)).unlink()
            fsync_directory(self.path)
        except OSError as error:
            raise RepositoryError(
                f"cannot retire key {index} in {self.path}: {describe_os_error(error)}"
            ) from None

    def temp_files(self) -> tuple[str, ...]:
        """Return the names of leftover ``.keysyncd-*`` temp files (nothing is removed)."""
        check_controller_directory(self.path)
        try:
            return tuple(sorted(n for n in os.listdir(self.path) if n.startswith(TEMP_PREFIX)))
        except FileNotFoundError:
            return ()

    def remove_temp_files(self) -> list[str]:
        """Delete leftover ``.keysyncd-*`` temp files (call only under the lock); return them."""
        check_controller_directory(self.path)
        return remove_temp_files(self.path)
