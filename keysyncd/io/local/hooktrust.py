"""The config file and its hook commands, trusted as OpenSSH's StrictModes trusts its files:
whoever may edit the config (or swap it) chooses the hooks keysyncd runs as root and where it
deletes keys, so every command, and the daemon's reload, loads it with ``load_trusted_config``.
Hooks run as keysyncd's user (root, or keystone) in ``/`` (RUN_DIRECTORY): every file that
decides what a hook runs must be as safe as the config, owned by root or keysyncd's user and
writable by no one else, and so every directory on the way (a sticky one such as /tmp
excepted). Rather than parse what a shell will do, the rule errs on the side of refusal:

- the program (argv[0]) as it will run: found on PATH as subprocess finds it (and every PATH
  directory searched before it: whoever may write one may put a program of that name
  there), links resolved, a script's ``#!`` interpreter in turn; ``env``'s program likewise;
- every word of the hook, and every word of each argument split as a shell splits it (so
  the whole of an ``sh -c`` string, ``;``, ``|``, ``&``, ``(``, backquotes and newlines
  included), with the VALUE of ``NAME=VALUE`` and its ``:`` parts, that names an existing
  file or directory - absolute, or relative to ``/``, or matched by a ``*?[`` pattern - must
  be trusted like the program (a directory itself too, sticky or not: a script or a module
  could be planted there); device files and sockets are not looked at;
- every such word without a ``/`` that is a program on PATH is checked as that program;
- what moves a lookup where keysyncd cannot follow is refused with its reason: a ``PATH=``
  assignment, an ``env`` option (only ``NAME=VALUE`` is plain), ``cd``/``pushd``/``chroot``,
  a shell option keysyncd does not know, a shell script named without a ``/``
  (``keysyncd.io.local.hookwords``), and programs nested deeper than MAX_DEPTH.

A program that cannot be found is not a trust problem: running it fails anyway."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from keysyncd.config import Config, load_config
from keysyncd.errors import ConfigError, LocalFileError
from keysyncd.io.local.repolinks import repository_problems
from keysyncd.io.local.trust import check_directory, trust_problems

RUN_DIRECTORY = "/"  # the working directory of every hook (io/hooks.py)
MAX_DEPTH = 6  # programs followed through #! lines and env (the kernel nests 4 #!)
SHEBANG_LIMIT = 256  # what the kernel reads of a #! line (BINPRM_BUF_SIZE)
GLOB_LIMIT = 256  # files a pattern in a hook's words may match that are looked at
EVENTS = ("before_rotate", "after_rotate", "on_failure")


def hook_problem(argv: Sequence[str]) -> str | None:
    """Return why hook command ``argv`` must not run, as one line naming the unsafe file (or what
    makes it uncertain), or None when every file that decides what it runs is trusted. Example:
    ``"hook program /usr/local/bin/migrate is unsafe: writable by group or others (mode 0666)"``."""
    if not argv:
        return None
    return _command_problem(argv, "hook program", 0)


def _command_problem(argv: Sequence[str], role: str, depth: int) -> str | None:
    """Return why command ``argv`` (its program is ``role`` to the hook) is unsafe."""
    if depth > MAX_DEPTH:
        return f"{role} {argv[0]} nests programs deeper than {MAX_DEPTH} levels"
    # the words' rules (shlex) and glob below are imported with a hook only: every command
    # loads the config through this module, and most configs have no hooks
    from keysyncd.io.local.hookwords import uncertainty as _uncertainty

    return (
        _uncertainty(argv)
        or _program_problem(argv[0], role, depth)
        or _arguments_problem(argv, depth)
    )


def _program_problem(name: str, role: str, depth: int) -> str | None:
    """Return why program ``name`` (``role`` says what it is to the hook) is unsafe."""
    path, searched = _resolve(name)
    for directory in searched:
        try:
            check_directory(Path(directory), "PATH directory")
        except LocalFileError as error:
            return f"{error}: whoever may write it may put a program {name!r} there"
    if path is None or not os.path.exists(path):
        return None  # running it fails: check-config says so, the hook run records it
    return _file_problem(path, role, depth)


def _file_problem(path: str, role: str, depth: int) -> str | None:
    """Return why existing file or directory ``path`` is unsafe (its #! interpreter too)."""
    try:
        kind = os.stat(path).st_mode
    except OSError:
        return None  # gone, or not to be reached: nothing runs from it
    if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) or stat.S_ISSOCK(kind):
        return None  # /dev/null; only root makes devices, a socket holds no code
    real = os.path.realpath(path)
    shown = path if real == path else f"{path} -> {real}"
    if stat.S_ISDIR(kind):
        try:
            check_directory(Path(path), role)
        except LocalFileError as error:
            return str(error)
        return None
    problems = trust_problems(Path(path))
    if problems:
        return f"{role} {shown} is unsafe: {problems[0]}"
    interpreter = _shebang(real)
    if interpreter is None:
        return None
    return _command_problem(interpreter, f"#! interpreter of {real},", depth + 1)


def _arguments_problem(argv: Sequence[str], depth: int) -> str | None:
    """Return why a file named by a word of ``argv`` after the program is unsafe."""
    from keysyncd.io.local.hookwords import SHELLS, env_program, shell_options

    base = os.path.basename(argv[0])
    if base == "env" and (index := env_program(argv)) is not None:
        words = [*argv[1:index]]  # the assignments: env's program is checked as one
        return _words_problem(words, f"{base} argument", False, depth) or _command_problem(
            argv[index:], "program run by env", depth + 1
        )
    shell_command = base in SHELLS and shell_options(argv)[1]
    role = f"'{base} -c'" if shell_command else f"{base} argument"
    return _words_problem(argv[1:], role, shell_command, depth)


def _words_problem(words: Sequence[str], role: str, shell: bool, depth: int) -> str | None:
    """Return why a file named by ``words`` (each split as a shell would, too) is unsafe."""
    from keysyncd.io.local.hookwords import candidates, split_words

    for word in words:
        for part in dict.fromkeys([word, *split_words(word)]):
            for name in candidates(part):
                if problem := _name_problem(name, role, shell, depth):
                    return problem
    return None


def _name_problem(name: str, role: str, shell: bool, depth: int) -> str | None:
    """Return why the file ``name`` names (in RUN_DIRECTORY) or its program on PATH is unsafe."""
    if not name:
        return None
    import glob

    path = os.path.normpath(os.path.join(RUN_DIRECTORY, name))
    # a shell expands a pattern ("for f in /etc/hooks.d/*"): what it matches is named too
    matches = sorted(glob.glob(path))[:GLOB_LIMIT] if glob.has_magic(path) else []
    for match in dict.fromkeys([path, *matches]):
        if not os.path.lexists(match):
            continue
        executable = os.path.isfile(match) and os.access(match, os.X_OK)
        shown = _shell_role(role, executable) if shell else role
        if problem := _file_problem(match, shown, depth + 1):
            return problem
    if "/" in name or not _resolve(name)[0]:
        return None
    return _program_problem(name, _shell_role(role, True) if shell else role, depth + 1)


def _shell_role(command: str, executable: bool) -> str:
    return f"program run by {command}" if executable else f"file named by {command}"


def _resolve(name: str) -> tuple[str | None, list[str]]:
    """Return (the file that runs for ``name``, or None if there is none; the PATH
    directories searched before it), as subprocess resolves a program run in RUN_DIRECTORY."""
    if "/" in name:
        return os.path.normpath(os.path.join(RUN_DIRECTORY, name)), []
    searched: list[str] = []
    for directory in os.get_exec_path():
        folder = os.path.normpath(os.path.join(RUN_DIRECTORY, directory or "."))
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, searched
        searched.append(folder)
    return None, searched


def _shebang(path: str) -> list[str] | None:
    """Return [interpreter, optional argument] of a script's #! line as the kernel reads it, None if
    it has none; never blocks (a FIFO swapped in is opened non-blocking)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with contextlib.closing(os.fdopen(descriptor, "rb")) as handle:
        try:
            head = handle.read(SHEBANG_LIMIT) or b""
        except OSError:
            return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip(b" \t")
    words = line.split(None, 1)
    return [os.fsdecode(word.strip()) for word in words] or None


def config_file_problems(path: Path) -> list[str]:
    """Return one line per reason the config file ``path`` cannot be trusted (empty: it can, or it
    is missing: the loader says so), e.g. ``["config file /x is unsafe: ..."]``."""
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
    """Return the Config in ``path``; raise ConfigError if it cannot be used. ``strict`` (every
    command but check-config) refuses an unsafe file before parsing it, and an unsafe hook;
    otherwise an unsafe but valid config is returned, its trust problems listed by check-config.
    Repository directories refused as links resolve make it invalid either way."""
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
