"""keysyncd trusts its own inputs only as StrictModes would (SPEC rule 8): the config file and
the directories above it, every hook program (as it will run: PATH, links, ``#!``, ``sh -c``,
``env``) and every repository directory (absolute, normalised, outside pseudo file systems,
apart from every other one).

Every case goes through the real entry point (``main``, as tests/unit/test_check_config.py
does; each command's refusal as a ``keysyncd`` process), with a real other owner (uid 65534)
where ownership matters: exit 2, exactly one clear line, no traceback, and nothing changed
anywhere below the test's directory.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.commands.cli import main
from tests.filetree import tree

OTHER_UID = 65534  # nobody: a real other owner (the suite runs as root)


class Controller:
    """A controller without nodes whose config passes check-config: the config in its own
    0755 directory, one fernet repository with a trusted after_rotate script hook."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.bin = root / "bin"
        for directory in (self.etc, self.bin):
            directory.mkdir(mode=0o755)
        self.config = self.etc / "config.yaml"
        self.hook = self.bin / "migrate"
        self.marker = root / "hook-ran"
        self.hook.write_text(f"#!/bin/sh\ntouch {self.marker}\n")
        self.hook.chmod(0o755)
        self.data: dict[str, Any] = {
            "state_dir": str(root / "state"),
            "report_dir": str(root / "reports"),
            "repositories": [
                {
                    "name": "fernet-tokens",
                    "path": str(root / "keys"),
                    "max_active_keys": 5,
                    "hooks": {"after_rotate": [str(self.hook)], "timeout": 10},
                }
            ],
        }
        self.write()

    def write(self) -> None:
        self.config.write_text(yaml.safe_dump(self.data))

    def hooks(self, *commands: Any) -> None:
        self.data["repositories"][0]["hooks"] = {"after_rotate": list(commands), "timeout": 10}
        self.write()

    def add_repository(self, **fields: Any) -> None:
        self.data["repositories"].append(fields)
        self.write()

    def run(self, capsys: pytest.CaptureFixture[str], *command: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["-c", str(self.config), *command])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    return Controller(tmp_path)


def loose_directory(c: Controller, name: str, mode: int = 0o777) -> Path:
    """Return a new directory ``name`` that others may write (chmod: no umask)."""
    path = c.root / name
    path.mkdir()
    path.chmod(mode)
    return path


# --- the config file --------------------------------------------------------------------------


def config_writable_by_others(c: Controller) -> None:
    c.config.chmod(0o666)


def config_directory_group_writable(c: Controller) -> None:
    c.etc.chmod(0o775)


def config_reached_through_a_loose_directory(c: Controller) -> None:
    """The config named is a link in a safe directory to a file in a loose one."""
    loose = loose_directory(c, "loose")
    real = loose / "config.yaml"
    c.config.rename(real)
    c.config.symlink_to(real)


def config_through_a_link_in_a_loose_directory(c: Controller) -> None:
    """Neither where the config is named nor where it lies is loose, but a link on the way
    lies in a loose directory: whoever may write there may point it elsewhere."""
    real = c.root / "real"
    real.mkdir(mode=0o755)
    c.config.rename(real / "config.yaml")
    hop = loose_directory(c, "hops") / "hop"
    hop.symlink_to(real / "config.yaml")
    c.config.symlink_to(hop)


def config_owned_by_another_uid(c: Controller) -> None:
    os.chown(c.config, OTHER_UID, OTHER_UID)


# --- hooks ------------------------------------------------------------------------------------


def hook_writable_by_others(c: Controller) -> None:
    c.hook.chmod(0o777)


def hook_in_a_writable_directory(c: Controller) -> None:
    c.bin.chmod(0o777)


def hook_a_link_to_a_writable_file(c: Controller) -> None:
    target = c.root / "real-migrate"
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o777)
    link = c.bin / "migrate-link"
    link.symlink_to(target)
    c.hooks(str(link))


def sh_c_running_an_unsafe_program(c: Controller) -> None:
    c.hook.chmod(0o757)
    c.hooks(["sh", "-c", f"exec {c.hook} --all"])


def sh_c_whose_shell_is_unsafe(c: Controller) -> None:
    shells = loose_directory(c, "shells")
    (shells / "sh").symlink_to("/bin/sh")
    c.hooks([str(shells / "sh"), "-c", "true"])


def sh_c_found_after_a_loose_path_directory(c: Controller) -> None:
    loose_directory(c, "path-first")  # PATH (set by the test) searches it before /bin
    c.hooks("sh -c true")


def script_with_an_unsafe_interpreter(c: Controller) -> None:
    interpreter = c.root / "interp"
    interpreter.write_text("#!/bin/sh\nexit 0\n")
    interpreter.chmod(0o777)
    c.hook.write_text(f"#!{interpreter} -e\nexit 0\n")


def script_run_by_env_with_an_unsafe_program(c: Controller) -> None:
    programs = c.root / "progs"
    programs.mkdir(mode=0o755)
    program = programs / "keysyncd-test-interpreter"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o775)
    c.hook.write_text("#!/usr/bin/env keysyncd-test-interpreter\nexit 0\n")


def sh_c_running_an_unsafe_program_found_on_path(c: Controller) -> None:
    script_run_by_env_with_an_unsafe_program(c)  # the same unsafe program in a PATH directory
    c.hooks(["bash", "-o", "pipefail", "-ec", "LANG=C keysyncd-test-interpreter --all | cat"])


# --- repository directories -------------------------------------------------------------------


def fernet_and_credential_share_a_path(c: Controller) -> None:
    c.add_repository(name="credential-keys", kind="credential", path=str(c.root / "keys"))


def jws_public_path_is_a_fernet_path(c: Controller) -> None:
    c.add_repository(
        name="jws", kind="jws", path=str(c.root / "jws"), public_path=str(c.root / "keys")
    )


def nested_paths(c: Controller) -> None:
    c.add_repository(name="credential-keys", kind="credential", path=str(c.root / "keys/sub"))


def path(value: str) -> Callable[[Controller], None]:
    def edit(c: Controller) -> None:
        c.data["repositories"][0]["path"] = value.format(root=c.root)
        c.write()

    return edit


def node_path(value: str, repositories: int = 1) -> Callable[[Controller], None]:
    def edit(c: Controller) -> None:
        if repositories > 1:
            c.data["repositories"].append(
                {"name": "credential-keys", "kind": "credential", "path": str(c.root / "cred")}
            )
        c.data["ssh"] = {"user": "keystone", "known_hosts": str(c.root / "known_hosts")}
        c.data["nodes"] = [{"name": "n1", "host": "192.0.2.1", "path": value}]
        c.write()

    return edit


UNSAFE = "is writable by group or others (mode 0777) and not sticky"
HOOK = "At 'repositories[0].hooks.after_rotate[0]': "
# (id, edit, the line's prefix, what the line says)
BAD: list[tuple[str, Callable[[Controller], None], str, str]] = [
    ("config-writable-by-others", config_writable_by_others, "error",
     "config file {config} is unsafe: writable by group or others (mode 0666)"),
    ("config-directory-group-writable", config_directory_group_writable, "error",
     "config file {config} is unsafe: {root}/etc is writable by group or others (mode 0775) "
     "and not sticky"),
    ("config-reached-through-a-loose-directory", config_reached_through_a_loose_directory,
     "error", f"config file {{config}} is unsafe: {{root}}/loose {UNSAFE}"),
    ("config-through-a-link-in-a-loose-directory", config_through_a_link_in_a_loose_directory,
     "error", f"config file {{config}} is unsafe: {{root}}/hops {UNSAFE}"),
    ("config-owned-by-another-uid", config_owned_by_another_uid, "error",
     "config file {config} is unsafe: owned by uid 65534, not by root or the user"),
    ("hook-writable-by-others", hook_writable_by_others, "error",
     HOOK + "hook program {hook} is unsafe: writable by group or others (mode 0777)"),
    ("hook-in-a-writable-directory", hook_in_a_writable_directory, "error",
     HOOK + f"hook program {{hook}} is unsafe: {{root}}/bin {UNSAFE}"),
    ("hook-a-link-to-a-writable-file", hook_a_link_to_a_writable_file, "error",
     HOOK + "hook program {root}/bin/migrate-link -> {root}/real-migrate is unsafe: writable "
     "by group or others (mode 0777)"),
    ("sh-c-running-an-unsafe-program", sh_c_running_an_unsafe_program, "error",
     HOOK + "program run by 'sh -c' {hook} is unsafe: writable by group or others (mode 0757)"),
    ("sh-c-whose-shell-is-unsafe", sh_c_whose_shell_is_unsafe, "error",
     HOOK + "hook program {root}/shells/sh -> "),
    ("sh-c-found-after-a-loose-path-directory", sh_c_found_after_a_loose_path_directory,
     "error", HOOK + "PATH directory {root}/path-first is unsafe: writable by group or others "
     "(mode 0777): whoever may write it may put a program 'sh' there"),
    ("script-with-an-unsafe-interpreter", script_with_an_unsafe_interpreter, "error",
     HOOK + "#! interpreter of {hook}, {root}/interp is unsafe: writable by group or others "
     "(mode 0777)"),
    ("script-run-by-env-with-an-unsafe-program", script_run_by_env_with_an_unsafe_program,
     "error", HOOK + "program run by env {root}/progs/keysyncd-test-interpreter is unsafe: "
     "writable by group or others (mode 0775)"),
    ("sh-c-running-an-unsafe-program-found-on-path",
     sh_c_running_an_unsafe_program_found_on_path, "error",
     HOOK + "program run by 'bash -c' {root}/progs/keysyncd-test-interpreter is unsafe: "
     "writable by group or others (mode 0775)"),
    ("fernet-and-credential-share-a-path", fernet_and_credential_share_a_path, "config error",
     "At 'repositories[1].path': {root}/keys is {root}/keys ('repositories[0].path'): every "
     "repository needs a directory of its own"),
    ("jws-public-path-is-a-fernet-path", jws_public_path_is_a_fernet_path, "config error",
     "At 'repositories[1].public_path': {root}/keys is {root}/keys ('repositories[0].path')"),
    ("nested-paths", nested_paths, "config error",
     "At 'repositories[1].path': {root}/keys/sub is nested with {root}/keys "
     "('repositories[0].path')"),
    ("path-is-root", path("/"), "config error",
     "At 'repositories[0].path': must not be '/': give the repository a directory of its own"),
    ("path-under-proc", path("/proc/self"), "config error",
     "At 'repositories[0].path': /proc/self is inside /proc, a pseudo file system"),
    ("path-under-sys", path("/sys/kernel/keys"), "config error",
     "At 'repositories[0].path': /sys/kernel/keys is inside /sys, a pseudo file system"),
    ("path-with-dot-dot", path("{root}/keys/../etc"), "config error",
     "At 'repositories[0].path': must be a normalised path (no '..', '.', '//' or trailing "
     "'/'), got '{root}/keys/../etc': write '{root}/etc' if that is what is meant"),
    ("path-with-a-trailing-slash", path("{root}/keys/"), "config error",
     "At 'repositories[0].path': must be a normalised path"),
    ("path-is-state-dir", path("{root}/state"), "config error",
     "At 'repositories[0].path': {root}/state is {root}/state ('state_dir')"),
    ("path-holds-the-report-dir", path("{root}"), "config error",
     "At 'repositories[0].path': {root} is nested with {root}/state ('state_dir')"),
    ("node-path-override-colliding", node_path("/etc/keystone/keys", repositories=2),
     "config error", "At 'nodes[0].path': one path for all 2 repositories would make them "
     "overwrite each other's keys on this node"),
    ("node-path-is-root", node_path("/"), "config error", "At 'nodes[0].path': must not be '/'"),
    ("node-path-with-double-slash", node_path("//srv/keys"), "config error",
     "At 'nodes[0].path': must be a normalised path"),
]  # fmt: skip


def test_the_good_setup_passes(controller: Controller, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = controller.run(capsys, "check-config")
    assert (code, err) == (0, ""), err
    assert out.startswith(f"OK: {controller.config}")


@pytest.mark.parametrize(
    ("edit", "prefix", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_each_unsafe_input_is_one_error_line_exit_2_and_changes_nothing(
    controller: Controller,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[Controller], None],
    prefix: str,
    expected: str,
) -> None:
    root = controller.root
    monkeypatch.setenv("PATH", f"{root}/path-first:{root}/progs:{os.environ['PATH']}")
    edit(controller)
    before = tree(root)
    code, out, err = controller.run(capsys, "check-config")
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()  # exactly one finding: this one, nothing else
    wanted = expected.format(config=controller.config, root=root, hook=controller.hook)
    assert line.startswith(f"keysyncd: {prefix}: ") and wanted in line, line
    assert tree(root) == before, "nothing changed anywhere"
    assert not controller.marker.exists()


def test_there_are_at_least_twelve_unsafe_cases() -> None:
    assert len({case[0] for case in BAD}) == len(BAD) >= 12


def test_check_config_lists_every_trust_problem_at_once(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    controller.config.chmod(0o606)
    controller.etc.chmod(0o757)
    controller.hook.chmod(0o775)
    code, _, err = controller.run(capsys, "check-config", "--json")
    assert code == 2
    assert len(err.splitlines()) == 3, err
    assert f"config file {controller.config} is unsafe: writable by group or others" in err
    assert f"{controller.etc} is writable by group or others (mode 0757)" in err
    assert f"hook program {controller.hook} is unsafe" in err


COMMANDS = [["rotate"], ["sync"], ["verify"], ["init"], ["status"], ["plan"], ["report", "list"],
            ["adopt", "--from", "n1"], ["run"]]  # fmt: skip


def cli(controller: Controller, *command: str) -> tuple[int, str, str]:
    """Run ``keysyncd -c CONFIG COMMAND`` as a process (bounded: ``run`` must not start)."""
    done = subprocess.run(
        [sys.executable, "-m", "keysyncd", "-c", str(controller.config), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_refuses_an_unsafe_config_before_it_acts(
    controller: Controller, command: list[str]
) -> None:
    os.chown(controller.config, OTHER_UID, OTHER_UID)
    before = tree(controller.root)
    code, out, err = cli(controller, *command)
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()
    assert line.startswith(f"keysyncd: config error: config file {controller.config} is unsafe")
    assert "owned by uid 65534" in line
    assert tree(controller.root) == before


@pytest.mark.parametrize("command", [["rotate"], ["init"], ["status"], ["run"]])
def test_every_command_refuses_an_unsafe_hook_before_it_acts(
    controller: Controller, command: list[str]
) -> None:
    controller.hook.chmod(0o777)
    before = tree(controller.root)
    code, out, err = cli(controller, *command)
    assert (code, out) == (2, ""), err
    [line] = err.splitlines()
    assert f"{HOOK}hook program {controller.hook} is unsafe: writable" in line, line
    assert tree(controller.root) == before


def test_a_hook_made_unsafe_after_the_config_loaded_is_not_run(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    """A before_rotate hook loosens the after_rotate script during the rotation: the script
    is checked again right before it would run, so it never runs; the report says why."""
    assert controller.run(capsys, "init")[0] == 0
    loosen = ["sh", "-c", f"chmod 0777 {controller.hook}"]
    controller.data["repositories"][0]["hooks"]["before_rotate"] = [loosen]
    controller.write()
    code, out, err = controller.run(capsys, "rotate", "--json")
    assert code == 1, err
    assert not controller.marker.exists(), "the untrusted hook ran"
    [report] = json.loads(out)["reports"]
    after = report["details"]["hooks"][-1]
    assert (after["event"], after["status"]) == ("after_rotate", None)
    assert after["output"] == (
        f"hook program {controller.hook} is unsafe: writable by group or others (mode 0777)"
    )


def test_init_refuses_an_existing_directory_that_holds_other_files(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    system = controller.root / "system"
    system.mkdir(mode=0o755)
    (system / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (system / ".keysyncd-leftover").write_text("")  # keysyncd's own: not a reason
    path("{root}/system")(controller)
    before = tree(system)
    code, _, err = controller.run(capsys, "init")
    assert code == 1
    [line] = err.splitlines()
    assert line == (
        f"keysyncd: error: fernet-tokens: init: {system} already exists and holds other "
        "files ('passwd'): keysyncd would change its mode and owner; point path at a "
        "directory of its own"
    )
    assert tree(system) == before, "the directory keeps its files"
    assert stat.S_IMODE(system.stat().st_mode) == 0o755, "and its mode"
    assert not (controller.root / "reports").exists() or not os.listdir(controller.root / "reports")


def test_init_takes_over_an_empty_existing_directory(
    controller: Controller, capsys: pytest.CaptureFixture[str]
) -> None:
    (controller.root / "keys").mkdir(mode=0o755)
    assert controller.run(capsys, "init")[0] == 0
    assert stat.S_IMODE((controller.root / "keys").stat().st_mode) == 0o700
    assert sorted(os.listdir(controller.root / "keys")) == ["0", "1"]


def test_keys_are_never_written_into_a_directory_holding_other_files(tmp_path: Path) -> None:
    """adopt writes through the same Repository.write_keys: it refuses too, changing nothing."""
    from keysyncd.core.kinds import KINDS
    from keysyncd.errors import RepositoryError
    from keysyncd.io.local.repository import Repository

    home = tmp_path / "home"
    home.mkdir(mode=0o751)
    (home / ".profile").write_text("umask 022\n")
    before = tree(tmp_path)
    with pytest.raises(RepositoryError) as refused:
        Repository(home, KINDS["fernet"]).write_keys({1: b"k" * 44, 0: b"s" * 44}, (1, 0))
    assert str(refused.value).startswith(
        f"refusing to write keys: {home} already exists and holds other files ('.profile')"
    )
    assert tree(tmp_path) == before
