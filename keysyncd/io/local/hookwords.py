"""The words of a hook command, and the constructs that move a name's lookup where keysyncd
cannot follow (refused with a reason): what ``keysyncd.io.local.hooktrust`` checks."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Sequence

SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"})
# what a shell command string splits on besides blanks: each starts a new command
PUNCTUATION = ";&|()<>`\n"
# shell flags that change nothing about what runs (c: a command string; o/O take a name)
SHELL_FLAGS = frozenset("abcefhmnuvxCoO")
SHELL_LONG_OPTIONS = frozenset({"--norc", "--noprofile", "--posix"})
# commands that change the directory or the root relative names resolve against
MOVES = frozenset({"cd", "pushd", "popd", "chroot"})
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")


def split_words(text: str) -> list[str]:
    """Return the words of ``text`` as a shell splits them (``;&|()<>``, backquotes and newlines
    words of their own); split on blanks if it does not parse (an unclosed quote)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=PUNCTUATION)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""  # a '#' inside a word starts no comment: check every word
    try:
        return list(lexer)
    except ValueError:
        return text.split()


def candidates(word: str) -> Iterator[str]:
    """Yield ``word`` and, for ``NAME=VALUE`` or ``--opt=VALUE``, VALUE and each of its
    ``:`` parts (``LD_PRELOAD=/x.so``, ``PYTHONPATH=/a:/b`` name files too)."""
    yield word
    if "=" in word:
        value = word.split("=", 1)[1]
        yield value
        yield from value.split(":")


def uncertainty(argv: Sequence[str]) -> str | None:
    """Return why keysyncd cannot tell what hook ``argv`` runs, or None: a PATH assignment, an env
    option (only ``NAME=VALUE`` and ``--`` are plain), ``cd``/``pushd``/``popd``/``chroot``, an
    unknown shell option, a shell script named without a ``/``."""
    for words in [list(argv), *(split_words(word) for word in argv[1:])]:
        for index, word in enumerate(words):
            if word.startswith(("PATH=", "PATH+=")):
                name = word.split("=")[0]
                return f"{name}= in a hook: keysyncd cannot tell which programs it finds"
            if os.path.basename(word) in MOVES:
                return f"{word!r} in a hook: keysyncd cannot tell where relative names resolve"
            if os.path.basename(word) == "env" and (option := _env_option(words[index + 1 :])):
                return f"env option {option!r} in a hook: keysyncd cannot tell what env runs"
    return shell_options(argv)[0] if os.path.basename(argv[0]) in SHELLS else None


def _env_option(words: Sequence[str]) -> str | None:
    """Return the first option given to env (before its program), or None."""
    for index, word in enumerate(words):
        if ASSIGNMENT.match(word) or (index == 0 and word == "--"):
            continue
        return word if word.startswith("-") else None
    return None


def env_program(argv: Sequence[str]) -> int | None:
    """Return the index of the program ``env`` runs in ``argv`` (after a first ``--`` and
    NAME=VALUE: a later ``--`` is the program, as GNU env runs it), or None if none."""
    for index in range(1, len(argv)):
        if not ASSIGNMENT.match(argv[index]) and (index > 1 or argv[index] != "--"):
            return index
    return None


def shell_options(argv: Sequence[str]) -> tuple[str | None, bool]:
    """Return (why ``argv``'s shell options are refused, or None; whether it runs ``-c``)."""
    base = os.path.basename(argv[0])
    command = False
    words = iter(argv[1:])
    for word in words:
        if word in ("--", "-"):
            word = next(words, "")
            break
        if word in SHELL_LONG_OPTIONS:
            continue
        if not word.startswith(("-", "+")):
            break
        if not set(word[1:]) <= SHELL_FLAGS or word.startswith("--"):
            return f"{base} option {word!r} in a hook: keysyncd cannot tell what it runs", command
        command = command or "c" in word
        for _ in range(sum(flag in "oO" for flag in word[1:])):
            next(words, None)  # -o pipefail, -O extglob: the name is no operand
    else:
        word = ""
    if word and not command and "/" not in word:
        return f"{base} script {word!r} has no '/': the shell may look for it on PATH", command
    return None, command
