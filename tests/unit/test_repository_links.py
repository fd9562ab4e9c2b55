"""Repository directories and links (issue 18, item 2, as a review found it open).

On the controller the repository directory is never reached through a link, and every
directory above it must be one only root or keysyncd's own user may change: whoever owns
``/etc/keystone`` (the keystone user, while keysyncd runs as root) could otherwise plant
``fernet-keys -> /any/root/directory`` and ``init`` would chmod and chown it, and every action
would read, push and delete keys there. And directories that collide, or land in ``/run`` or
``/proc``, once links resolve, are refused when the config is loaded, as when written so.
Each refusal is one line naming the config path; exit 2; nothing changed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from keysyncd.commands.cli import main
from keysyncd.core.kinds import KINDS
from keysyncd.errors import ConfigError, LocalFileError, RepositoryError
from keysyncd.io.local.hooktrust import load_trusted_config
from keysyncd.io.local.repository import Repository

NOBODY = 65534  # the service user (keystone owns /etc/keystone on many installs)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")


def write(tmp_path: Path, repositories: list[dict[str, Any]]) -> Path:
    data = {"state_dir": str(tmp_path / "state"), "repositories": repositories}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    path.chmod(0o600)
    return path


def snapshot(directory: Path) -> tuple[int, int, dict[str, bytes]]:
    """Return (owner, mode, {name: content}) of ``directory``."""
    info = os.stat(directory)
    content = {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}
    return info.st_uid, stat.S_IMODE(info.st_mode), content


def refused(capsys: pytest.CaptureFixture[str], config: Path, *command: str) -> tuple[int, str]:
    """Run ``command``; return (exit code, its one line on stderr)."""
    code = main(["-c", str(config), *command])
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()  # one clear line, nothing else
    assert "Traceback" not in captured.err
    return code, line


def victim_directory(tmp_path: Path) -> Path:
    victim = tmp_path / "root-only"
    victim.mkdir()
    victim.chmod(0o755)  # root's, empty (say a spool directory)
    return victim


@as_root
def test_init_refuses_a_link_planted_in_a_directory_the_service_user_owns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keystone_etc = tmp_path / "etc-keystone"
    keystone_etc.mkdir()
    os.chown(keystone_etc, NOBODY, NOBODY)
    victim = victim_directory(tmp_path)
    (keystone_etc / "fernet-keys").symlink_to(victim)  # planted by the service user
    os.lchown(keystone_etc / "fernet-keys", NOBODY, NOBODY)
    config = write(
        tmp_path, [{"name": "fernet", "path": f"{keystone_etc}/fernet-keys", "owner": "nobody"}]
    )
    code, line = refused(capsys, config, "init")
    assert code == 2
    assert "At 'repositories[0].path': repository " in line
    assert "is a symlink" in line and "point path at the directory itself" in line
    assert snapshot(victim) == (0, 0o755, {})  # not taken over
    assert not (tmp_path / "state").exists()


@as_root
def test_a_parent_the_service_user_owns_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keysyncd as root, /etc/keystone owned by keystone: refused (keystone could swap the
    repository for a link at any moment), saying how to make it safe."""
    keystone_etc = tmp_path / "etc-keystone"
    keystone_etc.mkdir(mode=0o750)
    os.chown(keystone_etc, NOBODY, NOBODY)
    config = write(tmp_path, [{"name": "fernet", "path": f"{keystone_etc}/fernet-keys"}])
    code, line = refused(capsys, config, "init")
    assert code == 2
    assert (
        f"At 'repositories[0].path': repository {keystone_etc}/fernet-keys is unsafe: "
        f"{keystone_etc} is owned by uid {NOBODY}, not by root or the user keysyncd runs as"
    ) in line
    assert "make it owned by root (or by the user keysyncd runs as)" in line
    assert os.listdir(keystone_etc) == []


@as_root
def test_a_parent_of_the_running_user_is_fine(tmp_path: Path) -> None:
    """Owned by keysyncd's own user (root here) with the group allowed to read: the usual
    /etc/keystone root:keystone 0750."""
    keystone_etc = tmp_path / "etc-keystone"
    keystone_etc.mkdir(mode=0o750)
    os.chown(keystone_etc, 0, NOBODY)
    config = write(tmp_path, [{"name": "fernet", "path": f"{keystone_etc}/fernet-keys"}])
    assert main(["-c", str(config), "init"]) == 0
    assert sorted(os.listdir(keystone_etc / "fernet-keys")) == ["0", "1"]


@pytest.mark.parametrize("command", [["rotate"], ["sync"], ["status"], ["check-config"]])
def test_every_command_refuses_a_repository_that_is_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    real = tmp_path / "keys-real"
    config = write(tmp_path, [{"name": "fernet", "path": str(real)}])
    assert main(["-c", str(config), "init"]) == 0
    capsys.readouterr()
    before = snapshot(real)
    (tmp_path / "keys").symlink_to(real)
    config = write(tmp_path, [{"name": "fernet", "path": str(tmp_path / "keys")}])
    code, line = refused(capsys, config, *command)
    assert code == 2
    assert f"At 'repositories[0].path': repository {tmp_path}/keys is a symlink" in line
    assert snapshot(real) == before


@pytest.mark.parametrize("action", ["scan", "ensure_directory", "retire", "temp_files"])
def test_a_link_planted_after_the_config_loaded_is_refused_by_each_action(
    tmp_path: Path, action: str
) -> None:
    """The daemon loads its config once: the repository checks again before each action."""
    victim = victim_directory(tmp_path)
    (victim / "1").write_bytes(b"not ours")
    repository = Repository(tmp_path / "keys", KINDS["fernet"], owner=NOBODY)
    (tmp_path / "keys").symlink_to(victim)
    before = snapshot(victim)
    calls = {
        "scan": repository.scan,
        "ensure_directory": repository.ensure_directory,
        "retire": lambda: repository.retire((1,)),
        "temp_files": repository.temp_files,
    }
    with pytest.raises(LocalFileError, match=r"is a symlink .*; keysyncd does not follow it"):
        calls[action]()
    assert snapshot(victim) == before


def test_two_repositories_in_one_directory_through_a_link(tmp_path: Path) -> None:
    fernet = tmp_path / "fernet-keys"
    fernet.mkdir(mode=0o700)
    (tmp_path / "credential-keys").symlink_to(fernet)
    config = write(
        tmp_path,
        [
            {"name": "fernet", "path": str(fernet)},
            {"name": "cred", "kind": "credential", "path": str(tmp_path / "credential-keys")},
        ],
    )
    with pytest.raises(ConfigError) as error:
        load_trusted_config(config)
    assert error.value.problems[0] == (
        f"At 'repositories[1].path': {tmp_path}/credential-keys resolves to {fernet}, which "
        f"is {fernet} ('repositories[0].path'): every repository needs a directory of its "
        "own, apart from every other one and from state_dir and report_dir, or one would "
        "delete or rotate the other's files"
    )


def test_jws_public_directory_is_the_fernet_directory_through_a_link(tmp_path: Path) -> None:
    """A JWS sync empties its public directory of everything but public keys: the Fernet
    keys, on every node."""
    fernet = tmp_path / "fernet-keys"
    fernet.mkdir(mode=0o700)
    (tmp_path / "jws-public").symlink_to(fernet)
    jws = {
        "name": "jws",
        "kind": "jws",
        "path": str(tmp_path / "jws"),
        "private_path": str(tmp_path / "jws-private"),
        "public_path": str(tmp_path / "jws-public"),
    }
    config = write(tmp_path, [{"name": "fernet", "path": str(fernet)}, jws])
    with pytest.raises(ConfigError) as error:
        load_trusted_config(config, strict=False)  # check-config's way too
    [line] = error.value.problems
    assert line.startswith(
        f"At 'repositories[1].public_path': {tmp_path}/jws-public resolves to {fernet}, "
        f"which is {fernet} ('repositories[0].path')"
    )


def test_var_lock_resolves_into_run(tmp_path: Path) -> None:
    """/var/lock is a link to /run/lock (Debian, Ubuntu, Fedora): a tmpfs emptied at boot."""
    if os.path.realpath("/var/lock") != "/run/lock":
        pytest.skip("/var/lock is not a link to /run/lock here")
    config = write(tmp_path, [{"name": "fernet", "path": "/var/lock/keystone-fernet"}])
    with pytest.raises(ConfigError) as error:
        load_trusted_config(config)
    assert error.value.problems == [
        "At 'repositories[0].path': /var/lock/keystone-fernet resolves to "
        "/run/lock/keystone-fernet: /run/lock/keystone-fernet is inside /run, a pseudo file "
        "system: keys cannot live there"
    ]


def test_a_link_into_proc_is_refused_by_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keys").symlink_to("/proc/self")
    config = write(tmp_path, [{"name": "fernet", "path": str(tmp_path / "keys")}])
    code, line = refused(capsys, config, "check-config")
    assert code == 2
    assert line.startswith(
        f"keysyncd: config error: At 'repositories[0].path': {tmp_path}/keys resolves to "
        f"/proc/{os.getpid()}: /proc/{os.getpid()} is inside /proc, a pseudo file system"
    )


def test_a_repository_that_is_the_state_dir_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keysyncd's own journal and lock would be 'retired' as stray files."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (tmp_path / "keys").symlink_to(state)
    config = write(tmp_path, [{"name": "fernet", "path": str(tmp_path / "keys")}])
    code, line = refused(capsys, config, "init")
    assert code == 2
    assert (
        f"At 'repositories[0].path': {tmp_path}/keys resolves to {state}, which is {state} "
        "('state_dir')"
    ) in line
    assert os.listdir(state) == []


def test_a_repository_nested_in_another_through_a_linked_parent(tmp_path: Path) -> None:
    fernet = tmp_path / "fernet-keys"
    fernet.mkdir(mode=0o700)
    (tmp_path / "elsewhere").symlink_to(fernet)
    config = write(
        tmp_path,
        [
            {"name": "fernet", "path": str(fernet)},
            {"name": "cred", "kind": "credential", "path": f"{tmp_path}/elsewhere/cred"},
        ],
    )
    with pytest.raises(ConfigError, match=r"which is nested with .*'repositories\[0\]\.path'"):
        load_trusted_config(config)


def test_init_sets_mode_and_owner_through_the_directory_never_a_link_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link swapped in between the check and the chmod (only root or keysyncd's user could,
    once the parents are trusted; simulated here) is not followed: the directory's mode and
    owner are set through a descriptor opened with O_NOFOLLOW."""
    victim = victim_directory(tmp_path)
    repository = Repository(tmp_path / "keys", KINDS["fernet"], owner=NOBODY)

    def swap(path: Path) -> None:
        path.symlink_to(victim)

    monkeypatch.setattr("keysyncd.io.local.repository.check_controller_directory", swap)
    with pytest.raises(RepositoryError, match=r"cannot create repository .*/keys: "):
        repository.ensure_directory()
    assert snapshot(victim) == (0, 0o755, {})
