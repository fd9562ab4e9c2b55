"""Hook programs, trusted as OpenSSH's StrictModes trusts its files.

keysyncd runs hooks as its own user (root, or keystone), so every file that decides what a
hook runs must be as safe as the config that names it: the program as it will actually be
run (found on PATH as subprocess finds it, links resolved), the ``#!`` interpreter of a
script, and for ``sh -c 'COMMAND'`` (or ``env PROGRAM``) the program COMMAND starts with.
Each must be owned by root or keysyncd's user and writable by no one else, and so must every
directory on the way to it (a sticky one such as /tmp excepted) and every PATH directory
searched before it (whoever may write one of those may put a program of the same name
there). A program that cannot be found is not a trust problem: running it fails anyway.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from keysyncd.errors import LocalFileError
from keysyncd.io.trust import check_directory, trust_problems

SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"})
MAX_DEPTH = 6  # programs followed through #! lines, env and sh -c (the kernel nests 4 #!)
SHEBANG_LIMIT = 256  # what the kernel reads of a #! line (BINPRM_BUF_SIZE)


def hook_problem(argv: Sequence[str]) -> str | None:
    """Return why hook command ``argv`` must not run, as one line naming the unsafe file,
    or None when every file that decides what it runs is trusted.

    Example: ``"hook program /usr/local/bin/migrate is unsafe: writable by group or others
    (mode 0666)"``.
    """
    if not argv:
        return None
    return _program_problem(argv[0], "hook program", 0) or _wrapped_problem(argv, 0)


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
    real = os.path.realpath(path)
    shown = path if real == path else f"{path} -> {real}"
    problems = trust_problems(Path(path))
    if problems:
        return f"{role} {shown} is unsafe: {problems[0]}"
    interpreter = _shebang(real)
    if interpreter is None or depth >= MAX_DEPTH:
        return None
    return _program_problem(
        interpreter[0], f"#! interpreter of {real},", depth + 1
    ) or _wrapped_problem(interpreter, depth + 1)


def _resolve(name: str) -> tuple[str | None, list[str]]:
    """Return (the file that runs for ``name``, or None if there is none; the PATH
    directories searched before it), as subprocess resolves a program."""
    if "/" in name:
        return os.path.abspath(name), []
    searched: list[str] = []
    for directory in os.get_exec_path():
        candidate = os.path.abspath(os.path.join(directory or ".", name))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate, searched
        searched.append(os.path.abspath(directory or "."))
    return None, searched


def _shebang(path: str) -> list[str] | None:
    """Return [interpreter, optional argument] of a script's #! line, None if it has none.

    As the kernel reads it: the interpreter up to the first blank, then at most one argument
    (the rest of the line). Never blocks: a FIFO swapped in is opened non-blocking.
    """
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


def _wrapped_problem(argv: Sequence[str], depth: int) -> str | None:
    """Return the problem of the program that ``env PROGRAM`` or ``sh -c 'PROGRAM ...'``
    runs, or None (also when ``argv`` is neither)."""
    base = os.path.basename(argv[0])
    program = None
    if base == "env":
        # a #! line gives env its options and program as one argument ("-S python3 -u")
        words = [word for argument in argv[1:] for word in argument.split()]
        program = next((w for w in words if not w.startswith("-") and "=" not in w), None)
        role = f"program run by {base}"
    elif base in SHELLS:
        command = _shell_command(argv[1:])
        program = _first_program(command) if command is not None else None
        role = f"program run by '{base} -c'"
    if program is None or depth >= MAX_DEPTH:
        return None
    return _program_problem(program, role, depth + 1)


def _shell_command(arguments: Sequence[str]) -> str | None:
    """Return the command string of a shell's ``-c`` (``-ec``, ``-o pipefail -c``), or None."""
    command_mode = False
    words = iter(arguments)
    for word in words:
        if word in ("-o", "+o"):
            next(words, None)
        elif word.startswith(("-", "+")) and word not in ("-", "--"):
            command_mode = command_mode or (not word.startswith("--") and "c" in word[1:])
        else:
            return word if command_mode and word != "--" else None
    return None


def _first_program(command: str) -> str | None:
    """Return the program a shell command starts with (after VAR=value and exec), or None."""
    try:
        words = shlex.split(command)
    except ValueError:  # the shell will refuse it too
        return None
    for word in words:
        if "=" in word.split("/", 1)[0] or word in ("exec", "command", "--"):
            continue
        return word
    return None
