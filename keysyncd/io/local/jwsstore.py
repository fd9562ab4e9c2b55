"""The controller's JWS key store: ``state_dir/jws/<repository>/public`` (every public key
the nodes must hold) and ``/private`` (private keys not yet installed on their node). Every
file is a regular 0600 file, written atomically and read without following a link."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from keysyncd.config import Config, RepositoryConfig
from keysyncd.core.jwskeys import (
    algorithm_of_public,
    private_algorithm,
    public_problem,
)
from keysyncd.core.names import MAX_PEM, TEMP_PREFIX, show_name, too_large
from keysyncd.errors import LocalFileError, RepositoryError
from keysyncd.io.local.fsutil import (
    atomic_write,
    describe_os_error,
    read_key_file,
    remove_temp_files,
)
from keysyncd.io.local.trust import check_directory, problem_of


@dataclass(frozen=True)
class StoreScan:
    """What the store holds: PEMs by file name, what is wrong, and each public key's algorithm (a
    former ``algorithm``'s keys stay until the rotation that replaces them)."""

    public: dict[str, bytes]
    private: dict[str, bytes]
    problems: tuple[str, ...]
    algorithms: dict[str, str] = field(default_factory=dict)


class JwsStore:
    """One ``jws`` repository's key store on the controller."""

    def __init__(self, root: Path, algorithm: str) -> None:
        self.root = root
        self.algorithm = algorithm
        self.public_dir = root / "public"
        self.private_dir = root / "private"

    def scan(self) -> StoreScan:
        """Return the keys in the store and every problem (file name + what is wrong). Raise
        RepositoryError if a directory cannot be read (LocalFileError if unsafe)."""
        check_directory(self.root, "JWS key store")
        _check_directory(self.public_dir)
        _check_directory(self.private_dir, secret=True)
        public, problems = self._read(self.public_dir)
        private, more = self._read(self.private_dir, secret=True)
        problems += more
        algorithms = {}
        for name, content in public.items():
            # a key of another supported algorithm is one from before a change of algorithm
            if found := algorithm_of_public(content):
                algorithms[name] = found
            elif problem := public_problem(content, self.algorithm):
                problems.append(f"{self.public_dir}/{show_name(name)}: {problem}")
        for name, content in private.items():
            if private_algorithm(content) is None:
                problems.append(f"{self.private_dir}/{show_name(name)}: not a private key")
        return StoreScan(public, private, tuple(problems), algorithms)

    def _read(self, directory: Path, secret: bool = False) -> tuple[dict[str, bytes], list[str]]:
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return {}, []
        except OSError as error:
            reason = describe_os_error(error)
            raise RepositoryError(f"cannot list {directory}: {reason}") from None
        found, problems = {}, []
        check = functools.partial(problem_of, secret=secret)  # only its owner may change (read)
        for name in names:
            if name.startswith(TEMP_PREFIX):
                continue  # a crash leftover: removed under the lock
            try:
                content = read_key_file(directory / name, MAX_PEM, check)
                if len(content) > MAX_PEM:
                    raise ValueError(too_large(MAX_PEM))
                found[name] = content
            except (OSError, ValueError) as error:
                detail = describe_os_error(error) if isinstance(error, OSError) else str(error)
                problems.append(f"{directory}/{show_name(name)}: {detail}")
        return found, problems

    def ensure(self) -> None:
        """Create the store's directories (0700); raise RepositoryError if impossible."""
        check_directory(self.root, "JWS key store")
        try:
            for directory in (self.root.parent, self.root, self.public_dir, self.private_dir):
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)  # never through a link (mkdir does not follow)
                _check_directory(directory, secret=directory == self.private_dir)
        except OSError as error:
            reason = describe_os_error(error)
            raise RepositoryError(f"cannot create {self.root}: {reason}") from None

    def write(self, public: dict[str, bytes], private: dict[str, bytes]) -> None:
        """Write key files (private keys first: a public key never exists without its pair
        in the store); raise RepositoryError if the disk refuses."""
        self.ensure()
        try:
            for name, content in private.items():
                atomic_write(self.private_dir / name, content)
            for name, content in public.items():
                atomic_write(self.public_dir / name, content)
        except OSError as error:
            raise RepositoryError(
                f"cannot write keys to {self.root}: {describe_os_error(error)}"
            ) from None

    def remove(self, public: tuple[str, ...] = (), private: tuple[str, ...] = ()) -> None:
        """Delete key files (missing ones are fine); raise RepositoryError on failure."""
        try:
            for directory, names in ((self.private_dir, private), (self.public_dir, public)):
                for name in names:
                    with contextlib.suppress(FileNotFoundError):
                        (directory / name).unlink()
        except OSError as error:
            raise RepositoryError(
                f"cannot delete keys in {self.root}: {describe_os_error(error)}"
            ) from None

    def remove_temp_files(self) -> None:
        """Delete temp files a crash left (call only under the lock)."""
        for directory in (self.public_dir, self.private_dir):
            remove_temp_files(directory)


def _check_directory(directory: Path, secret: bool = False) -> None:
    """Raise LocalFileError unless ``directory`` (if it exists) is a real directory only its owner
    may change (``secret``: or list): a link there would lead key files elsewhere."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return
    problem = "a symlink" if stat.S_ISLNK(info.st_mode) else problem_of(info, directory=True)
    if problem is None and secret and stat.S_IMODE(info.st_mode) & 0o077:
        problem = f"open to group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem:
        raise LocalFileError(f"JWS key store {directory} is unsafe: {problem}")


def store_root(config: Config, repository: RepositoryConfig) -> Path:
    """Return where the controller keeps ``repository``'s keys: in state_dir (never readable
    by others, and not a directory keystone itself reads; ``path`` describes the nodes)."""
    return Path(config.state_dir) / "jws" / repository.name
