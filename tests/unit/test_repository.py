"""The local key repository: keystone compatibility, validation, atomic writes, failures."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from keysyncd.core.kinds import KINDS
from keysyncd.core.names import canonical_index, show_name
from keysyncd.core.policy import Policy, plan_rotation
from keysyncd.errors import RepositoryError
from keysyncd.io.local.repository import Repository
from tests.keystone_compat import fernet_rotate, fernet_setup, load_keys, multifernet
from tests.local_harness import LocalHarness

NOW = 1_800_000_000.0
POLICY = Policy(3, 3600, 0)


def make_repository(path: Path) -> Repository:
    return Repository(path, KINDS["fernet"])


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Return every entry's content and mode, to prove a directory did not change."""
    return {
        name: ((path / name).read_bytes(), stat.S_IMODE((path / name).stat().st_mode))
        for name in sorted(os.listdir(path))
    }


def initialised(tmp_path: Path) -> tuple[Repository, LocalHarness]:
    harness = LocalHarness(tmp_path, POLICY, NOW)
    harness.init()
    return harness.repository, harness


def rotate_once(harness: LocalHarness, now: float) -> None:
    harness.now = now
    harness.rotate()


def test_init_creates_keystone_layout_with_private_modes(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even with a careless umask, keys must stay private
    try:
        repository, _ = initialised(tmp_path)
    finally:
        os.umask(old_umask)
    assert sorted(os.listdir(repository.path)) == ["0", "1"]
    assert stat.S_IMODE(repository.path.stat().st_mode) == 0o700
    for name in ("0", "1"):
        assert stat.S_IMODE((repository.path / name).stat().st_mode) == 0o600


def test_keystone_loader_reads_what_keysyncd_writes(tmp_path: Path) -> None:
    repository, harness = initialised(tmp_path)
    rotate_once(harness, NOW + 10)
    keyset = repository.load()
    loaded = load_keys(str(repository.path))
    assert loaded[0].encode() == keyset.primary.material  # primary first
    assert loaded[-1].encode() == keyset.staged.material  # staged last
    assert loaded == [m.decode() for m in keyset.keystone_order()]
    token = Fernet(keyset.primary.material).encrypt(b"t")
    assert multifernet(str(repository.path)).decrypt(token) == b"t"


def test_keystone_repository_is_adopted_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "keystone"
    fernet_setup(str(path))
    fernet_rotate(str(path))
    fernet_rotate(str(path))
    before = snapshot(path)
    harness = LocalHarness(tmp_path, POLICY, NOW, keys=path)
    keyset, state, foreign = harness.prepare()
    assert snapshot(path) == before
    assert foreign and keyset.indices == (0, 2, 3)
    # adopted secondaries count as demoted now: nothing is retired before it is safe
    assert state.history[2].demoted_at == NOW
    harness.save(state)
    token = Fernet(keyset.primary.material).encrypt(b"t")
    rotate_once(harness, NOW + 1)
    assert multifernet(str(path)).decrypt(token) == b"t"
    assert sorted(int(n) for n in os.listdir(path)) == [0, 2, 3, 4]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("2", b"", "empty key"),
        ("2", b"not a key at all", "malformed key"),
        ("2", Fernet.generate_key()[:43], "malformed key"),
        ("2", b"!" * 44, "malformed key: not urlsafe base64"),
        ("2", b"A" * 4000, "malformed key"),
        ("02", Fernet.generate_key(), "non-canonical key name"),
    ],
)
def test_load_rejects_what_keystone_would_choke_on(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    repository, _ = initialised(tmp_path)
    (repository.path / name).write_bytes(content)
    with pytest.raises(RepositoryError) as raised:
        repository.load()
    shown = name if canonical_index(name) is not None else show_name(name)  # '02', escaped
    assert f"{repository.path}/{shown}: {problem}" in str(raised.value)
    if content:
        assert content.decode(errors="replace") not in str(raised.value)


def test_load_rejects_integer_named_directory(tmp_path: Path) -> None:
    repository, _ = initialised(tmp_path)
    (repository.path / "5").mkdir()
    with pytest.raises(RepositoryError, match="5: not a regular file"):
        repository.load()


@pytest.mark.parametrize(
    ("remove", "problem"), [("0", "missing staged key 0"), ("1", "missing primary key")]
)
def test_load_rejects_missing_staged_or_primary(tmp_path: Path, remove: str, problem: str) -> None:
    repository, _ = initialised(tmp_path)
    (repository.path / remove).unlink()
    with pytest.raises(RepositoryError, match=problem):
        repository.load()


def test_non_integer_names_are_ignored_like_keystone(tmp_path: Path) -> None:
    repository, _ = initialised(tmp_path)
    for name in ("README", "0.tmp", ".keysyncd-old.tmp", "backup.1"):
        (repository.path / name).write_text("whatever")
    assert repository.load().indices == (0, 1)


def test_lax_permissions_are_reported(tmp_path: Path) -> None:
    repository, _ = initialised(tmp_path)
    os.chmod(repository.path, 0o755)  # noqa: S103 - the lax mode is what is tested
    os.chmod(repository.path / "1", 0o644)
    warnings = repository.permission_problems()
    assert any("lax permissions: directory mode 0755" in w for w in warnings)
    assert any(
        w.startswith(f"{repository.path / '1'}: lax permissions: mode 0644") for w in warnings
    )
    os.chmod(repository.path, 0o750)  # noqa: S103 - group may read, as in keystone layouts
    os.chmod(repository.path / "1", 0o640)
    assert repository.permission_problems() == []


def _failing(call, fail_on: int, error: OSError):  # type: ignore[no-untyped-def]
    count = {"n": 0}
    is_open = call is os.open  # decided now: once patched, os.open is this wrapper

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        # os.open also reads key files (O_NOFOLLOW): only opens that create one are writes
        creating = not is_open or bool(args[1] & os.O_CREAT)
        count["n"] += creating
        if creating and count["n"] == fail_on:
            raise error
        return call(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("function", "fail_on", "error", "message"),
    [
        ("write", 1, OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        ("write", 2, OSError(errno.ENOSPC, "No space left on device"), "disk full"),
        ("fsync", 2, OSError(errno.EIO, "Input/output error"), "Input/output error"),
        ("open", 1, PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        ("rename", 1, PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        ("rename", 2, OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    ],
)
def test_write_failure_during_rotation_changes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    fail_on: int,
    error: OSError,
    message: str,
) -> None:
    repository, harness = initialised(tmp_path)
    rotate_once(harness, NOW + 1)
    before = snapshot(repository.path)
    keyset, state, _ = harness.prepare()
    plan = plan_rotation(keyset.indices, state.history, POLICY, NOW + 2)
    new_staged = Fernet.generate_key()
    # the disk writes of the rotation itself (the journal's write-ahead record comes before)
    monkeypatch.setattr(os, function, _failing(getattr(os, function), fail_on, error))
    with pytest.raises(RepositoryError) as raised:
        repository.rotate(keyset, plan, new_staged)
    monkeypatch.undo()
    assert message in str(raised.value) and "nothing changed" in str(raised.value)
    assert snapshot(repository.path) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_real_full_disk_during_rotation_changes_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12k,nr_inodes=6", "tmpfs", str(mount)], check=True
    )
    try:
        harness = LocalHarness(tmp_path, POLICY, NOW, keys=mount / "keys")
        repository = harness.repository
        harness.init()
        filler = 0
        while filler < 100:  # fill every inode and block that is left
            try:
                (mount / f"fill{filler}").write_bytes(b"x" * 4096)
            except OSError:
                break
            filler += 1
        before = snapshot(repository.path)
        with pytest.raises(RepositoryError, match=r"cannot rotate .*: (disk full|no space)"):
            rotate_once(harness, NOW + 1)
        assert snapshot(repository.path) == before
        assert repository.load().indices == (0, 1)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")
def test_owner_and_group_are_applied_as_root(tmp_path: Path) -> None:
    harness = LocalHarness(tmp_path, POLICY, NOW, owner=65534)
    repository = harness.repository
    harness.init()
    rotate_once(harness, NOW + 1)
    for name in ("0", "1", "2"):
        info = (repository.path / name).stat()
        assert (info.st_uid, info.st_gid) == (65534, 65534)


def test_crash_between_renames_is_rolled_back(tmp_path: Path) -> None:
    """A crash after the new primary appeared but before 0 was replaced: roll back."""
    repository, harness = initialised(tmp_path)
    keyset, _, _ = harness.prepare()
    real_rename = os.rename
    calls = {"n": 0}

    def crash_on_second(source, target):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("simulated crash")
        return real_rename(source, target)

    harness.now = NOW + 1
    os.rename = crash_on_second  # type: ignore[assignment]
    try:
        with pytest.raises(SystemExit):
            harness.rotate()
    finally:
        os.rename = real_rename  # type: ignore[assignment]
    crashed = harness.state()
    assert crashed.pending is not None  # the write-ahead record was saved
    assert repository.load().indices == (0, 1, 2)  # still loadable mid-rotation
    harness.now = NOW + 2
    recovered_keyset, recovered, foreign = harness.prepare()
    assert not foreign and recovered.pending is None
    assert recovered_keyset.digests() == keyset.digests()
    assert not [n for n in os.listdir(repository.path) if n.startswith(".keysyncd-")]


def test_recovery_never_deletes_a_key_someone_else_promoted_after_the_crash(
    tmp_path: Path,
) -> None:
    """Crash after the write-ahead record, then keystone's own fernet_rotate: the key it
    made primary (the new primary index, with the old staged content) must survive."""
    repository, harness = initialised(tmp_path)
    keyset, state, _ = harness.prepare()
    plan = plan_rotation(keyset.indices, state.history, POLICY, NOW + 1)
    real_rename = os.rename

    def crash(source, target):  # type: ignore[no-untyped-def]
        raise SystemExit("simulated crash before any rename")

    harness.now = NOW + 1
    os.rename = crash  # type: ignore[assignment]
    try:
        with pytest.raises(SystemExit):
            harness.rotate()
    finally:
        os.rename = real_rename  # type: ignore[assignment]
    assert harness.state().pending is not None
    fernet_rotate(str(repository.path))  # the operator: 0 becomes 2, a new 0

    def keys() -> dict[str, tuple[bytes, int]]:  # the crash left temp files: not keys
        return {k: v for k, v in snapshot(repository.path).items() if not k.startswith(".")}

    after_operator = keys()
    assert sorted(after_operator) == ["0", "1", str(plan.new_primary)]
    harness.now = NOW + 2
    keyset, state, foreign = harness.prepare()
    assert keys() == after_operator, "recovery deleted no key"
    assert foreign and state.pending is None
    assert keyset.primary is not None and keyset.primary.index == plan.new_primary
