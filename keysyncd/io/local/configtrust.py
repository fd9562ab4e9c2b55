"""The config file and the hooks it names, trusted as OpenSSH's StrictModes trusts its own.

Whoever may edit the config (or swap it, through a directory above it) chooses the hooks
keysyncd runs as root and the directories it deletes keys in. So the file, as its links
resolve, and every directory on the way to it must be owned by root or keysyncd's user and
writable by no one else; every hook program likewise (``keysyncd.io.local.hooktrust``). Every
command loads its config through ``load_trusted_config``, and the daemon's reload too.
"""

from __future__ import annotations

import os
from pathlib import Path

from keysyncd.config import Config, load_config
from keysyncd.errors import ConfigError
from keysyncd.io.local.hooktrust import hook_problem
from keysyncd.io.local.repolinks import repository_problems
from keysyncd.io.local.trust import trust_problems

EVENTS = ("before_rotate", "after_rotate", "on_failure")


def config_file_problems(path: Path) -> list[str]:
    """Return one line per reason the config file ``path`` cannot be trusted (empty: it can;
    a missing file is left for the loader to report).

    Example: ``["config file /etc/keysyncd/config.yaml is unsafe: writable by group or
    others (mode 0666)"]``.
    """
    if not os.path.exists(path):
        return []
    return [f"config file {path} is unsafe: {problem}" for problem in trust_problems(path)]


def hook_problems(config: Config) -> list[str]:
    """Return one line per hook whose program (or interpreter) cannot be trusted, with its
    place in the config (``At 'repositories[0].hooks.after_rotate[1]': ...``)."""
    found = []
    for index, repository in enumerate(config.repositories):
        for event in EVENTS:
            for number, argv in enumerate(getattr(repository.hooks, event)):
                if problem := hook_problem(argv):
                    found.append(f"At 'repositories[{index}].hooks.{event}[{number}]': {problem}")
    return found


def trust_findings(config: Config) -> list[str]:
    """Return every trust problem of ``config``'s file and hooks (check-config lists them)."""
    return config_file_problems(config.source) + hook_problems(config)


def load_trusted_config(path: Path, strict: bool = True) -> Config:
    """Return the Config in ``path``; raise ConfigError if it cannot be used.

    ``strict`` (every command but check-config, and the daemon's reload): an unsafe file is
    refused before it is even parsed, with one line naming it; an unsafe hook is refused too.
    Otherwise the file's trust problems come with its validation errors, and an unsafe but
    valid config is returned, for check-config to list every problem among its findings.
    Repository directories that collide or land in a pseudo file system as links resolve, or
    a controller repository that is a link or sits below a directory someone else may change,
    make the config invalid in both modes (``keysyncd.io.local.repolinks``).
    """
    problems = config_file_problems(path)
    if strict and problems:
        raise ConfigError(problems[:1])
    try:
        config = load_config(path)
    except ConfigError as error:
        raise ConfigError([*problems, *error.problems]) from None
    if found := repository_problems(config):  # as links resolve: invalid, like paths as written
        raise ConfigError([*problems, *found])
    if strict and (problems := hook_problems(config)):
        raise ConfigError(problems[:1])
    return config
