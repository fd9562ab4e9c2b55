"""Before an action changes anything: every local file it will rely on is safe and readable
(an unsafe report directory found at the end would come after the keys were rotated)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from keysyncd.config import Config
from keysyncd.errors import LocalFileError
from keysyncd.io.local.reportchain import read_head, report_files
from keysyncd.io.local.state import load_state
from keysyncd.io.local.trust import check_directory, open_trusted, read_trusted


def local_file_problems(config: Config, ssh: bool = True) -> list[str]:
    """Return every problem with the local files an action relies on (empty: none): state_dir,
    report_dir, lock files, each repository's state, the chain head (damage there is no problem) and
    newest report, and with ``ssh`` the identity file and known_hosts."""
    checks: list[Callable[[], object]] = [
        lambda: check_directory(config.state_dir, "state_dir"),
        lambda: check_directory(config.state_dir / "repositories", "state directory"),
        lambda: check_directory(config.report_dir, "report_dir"),
        lambda: _check_existing(config.state_dir / "lock"),
        lambda: _check_existing(config.report_dir / ".lock"),
        lambda: read_head(config.state_dir),
        lambda: [read_trusted(path) for path in report_files(config.report_dir)[-1:]],
    ]
    checks += [
        functools.partial(load_state, config.state_dir, repository.name)
        for repository in config.repositories
    ]
    if ssh and config.nodes:
        checks += [
            functools.partial(_check_ssh_file, config, "known_hosts"),
            functools.partial(_check_ssh_file, config, "identity_file"),
        ]
    problems: list[str] = []
    for check in checks:
        try:
            check()
        except LocalFileError as error:
            if str(error) not in problems:  # two checks may meet the same unsafe directory
                problems.append(str(error))
    return problems


def check_local_files(config: Config, ssh: bool) -> None:
    """Raise LocalFileError naming the first unsafe or damaged file (``local_file_problems``)."""
    problems = local_file_problems(config, ssh)
    if problems:
        raise LocalFileError(problems[0])


def _check_ssh_file(config: Config, which: str) -> None:
    # the SSH library only when it is needed
    from keysyncd.io.remote.knownhosts import load_known_hosts
    from keysyncd.io.remote.ssh import load_identity

    if which == "known_hosts" and config.ssh.known_hosts is not None:
        load_known_hosts(config.ssh.known_hosts)
    elif which == "identity_file" and config.ssh.identity_file is not None:
        load_identity(config.ssh.identity_file)


def _check_existing(path: Path) -> None:
    try:
        descriptor = open_trusted(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    os.close(descriptor)
