"""Hook commands that once passed the trust check while an untrusted file really ran as
root (issue 18 review), and the rule that closes them (keysyncd/io/local/hooktrust.py): every
word of a hook (and of an ``sh -c`` string) that names a file must be trusted like the
program, a word that is a program on PATH is checked as it resolves, whatever makes the
lookup uncertain (PATH=, env options, cd, unknown shell options) is refused, and every
hook runs in ``/``. Also: a known_hosts line whose negated pattern matches a name gives that
name none of its keys, as in OpenSSH.

Each bypass is shown both ways: ``hook_problem`` names the file or the rule, and
``run_hooks`` (which checks right before it starts a hook) does not run it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from keysyncd.io.local.hooktrust import hook_problem
from keysyncd.io.remote.knownhosts import parse_known_hosts
from keysyncd.io.runtime.hooks import run_hooks

UNSAFE = "is unsafe: writable by group or others (mode 0777)"


def plant(directory: Path, mode: int) -> Path:
    """Return ``directory`` (created with ``mode``, not sticky) holding 0777 files 'migrate'
    (a #!/bin/sh script), 'evil.sh' and 'evil.py' (no #!), each touching <dir>/RAN when run."""
    directory.mkdir()
    marker = directory / "RAN"
    for name, head in (("migrate", "#!/bin/sh\n"), ("evil.sh", ""), ("evil.py", "")):
        program = directory / name
        body = f"open({str(marker)!r}, 'w')\n" if name.endswith(".py") else f"touch {marker}\n"
        program.write_text(head + body)
        program.chmod(0o777)
    directory.chmod(mode)
    return directory


@pytest.fixture
def open_dir(tmp_path: Path) -> Path:
    """An open directory (0777): anyone may replace what is in it."""
    return plant(tmp_path / "open", 0o777)


@pytest.fixture
def tidy_dir(tmp_path: Path) -> Path:
    """A trusted directory (0755) whose programs are writable by anyone: only a check of the
    program itself (not of the directory a word names) notices them."""
    return plant(tmp_path / "tidy", 0o755)


def assert_refused_and_not_run(argv: list[str], reason: str, directory: Path) -> None:
    """``hook_problem`` says ``reason``; run_hooks records it and does not start the hook."""
    problem = hook_problem(argv)
    assert problem is not None and reason in problem, problem
    [run] = run_hooks("after_rotate", (tuple(argv),), b"{}", 10)
    assert (run.status, run.output) == (None, problem)
    assert not (directory / "RAN").exists(), f"{argv} ran"


def test_the_plain_program_is_refused(open_dir: Path) -> None:
    """The baseline: the same file named directly is refused, so the cases below bypassed."""
    assert hook_problem([str(open_dir / "migrate")]) == f"hook program {open_dir}/migrate {UNSAFE}"


# (id, argv for the directory holding the planted files, what the refusal says)
BYPASSES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    # a PATH set by the hook: the program was looked up on keysyncd's PATH, not this one
    (
        "env PATH=open migrate",
        lambda d: ["env", f"PATH={d}:/usr/bin:/bin", "migrate"],
        "PATH= in a hook: keysyncd cannot tell which programs it finds",
    ),
    (
        "sh -c PATH=open migrate",
        lambda d: ["sh", "-c", f"PATH={d}:/usr/bin:/bin migrate"],
        "PATH= in a hook",
    ),
    # env options: -u's argument was taken for the program; --chdir moves './migrate'
    (
        "env -u X prog",
        lambda d: ["env", "-u", "X", f"{d}/migrate"],
        "env option '-u' in a hook: keysyncd cannot tell what env runs",
    ),
    (
        "env --chdir=open ./migrate",
        lambda d: ["env", f"--chdir={d}", "./migrate"],
        "env option '--chdir=",
    ),
    # shell options the old parser gave up on
    (
        "sh -c -- prog",
        lambda d: ["sh", "-c", "--", f"{d}/migrate"],
        "program run by 'sh -c' {d}/migrate " + UNSAFE,
    ),
    (
        "bash -O extglob -c prog",
        lambda d: ["bash", "-O", "extglob", "-c", f"{d}/migrate"],
        "program run by 'bash -c' {d}/migrate " + UNSAFE,
    ),
    # a script given to a shell or an interpreter as an argument
    ("sh script", lambda d: ["sh", f"{d}/evil.sh"], "sh argument {d}/evil.sh " + UNSAFE),
    (
        "python3 script",
        lambda d: ["python3", f"{d}/evil.py"],
        "python3 argument {d}/evil.py " + UNSAFE,
    ),
    # not only the first word of a shell string
    (
        "sh -c 'true; prog'",
        lambda d: ["sh", "-c", f"true; {d}/migrate"],
        "program run by 'sh -c' {d}/migrate " + UNSAFE,
    ),
    (
        "sh -c '. script'",
        lambda d: ["sh", "-c", f". {d}/evil.sh"],
        "program run by 'sh -c' {d}/evil.sh " + UNSAFE,
    ),
    (
        "sh -c newline prog",
        lambda d: ["sh", "-c", f"true\n{d}/migrate"],
        "program run by 'sh -c' {d}/migrate " + UNSAFE,
    ),
    (
        "sh -c glob",
        lambda d: ["sh", "-c", f'for f in {d}/*.sh; do . "$f"; done'],
        "program run by 'sh -c' {d}/evil.sh " + UNSAFE,
    ),
    (
        "sh -c backquoted prog",
        lambda d: ["sh", "-c", f"echo `{d}/migrate`"],
        "program run by 'sh -c' {d}/migrate " + UNSAFE,
    ),
]


@pytest.mark.parametrize(("argv", "reason"), [(b[1], b[2]) for b in BYPASSES],
                         ids=[b[0] for b in BYPASSES])  # fmt: skip
def test_an_untrusted_file_behind_a_wrapper_is_refused(
    open_dir: Path, argv: Callable[[Path], list[str]], reason: str
) -> None:
    assert_refused_and_not_run(argv(open_dir), reason.format(d=open_dir), open_dir)


# the same tricks with the program in a trusted directory: only the rule itself refuses them
UNCERTAIN: list[tuple[str, Callable[[Path], list[str]], str]] = [
    (
        "env PATH=tidy migrate",
        lambda d: ["env", f"PATH={d}:/usr/bin:/bin", "migrate"],
        "PATH= in a hook: keysyncd cannot tell which programs it finds",
    ),
    (
        "env --chdir=tidy ./migrate",
        lambda d: ["env", f"--chdir={d}", "./migrate"],
        "env option '--chdir=",
    ),
    (
        "sh -c 'cd tidy && ./migrate'",
        lambda d: ["sh", "-c", f"cd {d} && ./migrate"],
        "'cd' in a hook: keysyncd cannot tell where relative names resolve",
    ),
    (
        "sh script without a slash",
        lambda d: ["sh", "migrate"],
        "sh script 'migrate' has no '/': the shell may look for it on PATH",
    ),
    (
        "bash --login -c",
        lambda d: ["bash", "--login", "-c", "true"],
        "bash option '--login' in a hook: keysyncd cannot tell what it runs",
    ),
    ("sh -i -c", lambda d: ["sh", "-i", "-c", "true"], "sh option '-i' in a hook"),
]


@pytest.mark.parametrize(("argv", "reason"), [(u[1], u[2]) for u in UNCERTAIN],
                         ids=[u[0] for u in UNCERTAIN])  # fmt: skip
def test_what_makes_the_lookup_uncertain_is_refused(
    tidy_dir: Path, argv: Callable[[Path], list[str]], reason: str
) -> None:
    assert_refused_and_not_run(argv(tidy_dir), reason, tidy_dir)


def test_a_directory_named_in_an_assignment_is_checked(tmp_path: Path, open_dir: Path) -> None:
    """PYTHONPATH=<open dir> makes python import what anyone put there."""
    argv = ["env", f"PYTHONPATH={open_dir}", "python3", "-c", "import evil"]
    reason = f"env argument {open_dir} is unsafe: writable by group or others (mode 0777)"
    assert_refused_and_not_run(argv, reason, open_dir)


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "-c", "import json, sys; json.load(sys.stdin)"],
        ["bash", "-eo", "pipefail", "-c", "cat >/dev/null 2>&1; echo done | cat"],
        ["env", "--", "LANG=C", "sh", "-euc", 'test "$(cat)" = "{}"'],
        ["/usr/bin/env", "python3", "-c", "print(1)"],
    ],
)
def test_ordinary_trusted_hooks_still_run(argv: list[str]) -> None:
    """The rule refuses no everyday hook whose files are all trusted (/dev/null included)."""
    assert hook_problem(argv) is None
    [run] = run_hooks("after_rotate", (tuple(argv),), b"{}", 10)
    assert run.ok, run.describe()


def test_a_hook_runs_in_the_root_directory_not_where_keysyncd_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sudo keysyncd rotate` typed in a shared directory: python3 -c would import a json.py
    planted there by nobody; hooks run in / instead, where relative names are checked."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky, anyone may add a file
    marker = tmp_path / "PLANTED-RAN"
    planted = shared / "json.py"
    planted.write_text(f"open({str(marker)!r}, 'w')\n")
    os.chown(planted, 65534, 65534)  # planted by nobody
    monkeypatch.chdir(shared)
    argv = ("python3", "-c", "import json, os, sys; json.load(sys.stdin); print(os.getcwd())")
    assert hook_problem(argv) is None  # the hook itself is trusted
    [run] = run_hooks("after_rotate", (argv,), b"{}", 10)
    assert run.ok, run.describe()
    assert not marker.exists(), f"nobody's {planted} ran as root"
    assert run.output == "/\n"


def new_host_key(tmp_path: Path) -> tuple[str, str]:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")], check=True
    )
    kind, blob = (tmp_path / "hk.pub").read_text().split()[:2]
    return kind, blob


def hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize("form", ["plain", "hashed"])
def test_a_negated_host_gets_no_key_from_that_line(tmp_path: Path, form: str) -> None:
    """`node1,!node1 KEY` (or its hashed form): ssh-keygen -F (the oracle) finds nothing for
    node1, and neither does keysyncd; the refusal names the negated pattern."""
    kind, blob = new_host_key(tmp_path)
    name = "node1.example.com"
    listed = name if form == "plain" else hashed(name)
    text = f"{listed},!{name} {kind} {blob}\nother.example.com,!{name} {kind} {blob}\n"
    (tmp_path / "known_hosts").write_text(text)
    found = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(tmp_path / "known_hosts")],
        check=False,
        capture_output=True,
    )
    assert found.returncode == 1, "OpenSSH does not match this line for node1"
    known = parse_known_hosts(text, "known_hosts")
    assert known.lookup(name) == {}
    assert "a negated pattern that excludes it" in known.why_unusable(name)
    assert list(known.lookup("other.example.com")) == [kind], "the other name keeps its key"
