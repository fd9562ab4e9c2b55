"""keystone can use what keysyncd judges in sync (issue 19): on nodes whose key directories
already exist as ``root:<keystone's group> 0750`` (a layout keystone works with), keysyncd
leaves them as they are, and keystone's own loader and JWS formatter, run as the configured
owner (``nobody:nogroup`` here, a non-root user every test machine has), sign and validate
on every node; a node whose directory that user cannot enter is reported, not in sync; a
node where it cannot pass through a directory above the keys too, and that directory,
which keysyncd does not own, is never changed."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from keysyncd.core.changewords import describe_jws
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.jws_world import World, act, jws_config
from tests.traversable import repoint as moved

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acts as another user: needs root")

USER, GROUP = "nobody", "nogroup"
TESTS = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"  # the venv's interpreter lives where another user cannot run it
# keystone's loader and JWS formatter (tests/keystone_compat.py, tests/keystone_jws.py), run
# as the owner: every directory and key must be reachable by it, not by root
FERNET = """
import sys
from keystone_compat import multifernet
fernet = multifernet(sys.argv[1])
token = fernet.encrypt(b"payload")
for other in sys.argv[2:]:
    assert multifernet(other).decrypt(token) == b"payload", other
"""
JWS = """
import sys
from keystone_jws import sign, validate
token = sign(sys.argv[1], "subject")
for public in sys.argv[2:]:
    assert validate(token, public)["sub"] == "subject", public
"""


@pytest.fixture
def nodes_root(traversable_root: Path) -> Path:
    """A directory every user can pass through (pytest's own tmp is root's alone), with
    a ``python`` path holding keystone's code and PyJWT for the interpreter the owner runs
    (copied: the tree under test may be one only root can read)."""
    root = traversable_root
    (root / "python").mkdir(mode=0o755)
    (root / "python" / "jwt").symlink_to(Path(jwt.__file__).parent)
    for module in ("keystone_compat.py", "keystone_jws.py"):
        shutil.copyfile(TESTS / module, root / "python" / module)
        (root / "python" / module).chmod(0o644)
    return root


def as_owner(script: str, *paths: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as the owner (its uid and gid, no other group), as keystone would."""
    return subprocess.run(
        [PYTHON, "-c", script, *map(str, paths)],
        user=USER,
        group=GROUP,
        extra_groups=[],
        env={"PYTHONPATH": str(root / "python"), "PYTHONDONTWRITEBYTECODE": "1"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def keystone_layout(directory: Path) -> None:
    """Create ``directory`` as ``root:<owner's group> 0750``, as packages often ship it."""
    directory.mkdir(parents=True)
    os.chown(directory, 0, grp.getgrnam(GROUP).gr_gid)
    directory.chmod(0o750)


def layout_of(directory: Path) -> tuple[int, int, int]:
    info = directory.lstat()
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def repoint(config: Path, fleet: Fleet, root: Path, **repository: object) -> dict[str, Path]:
    """Point every node of ``config`` at ``root/<node>/keys``, owned by the owner; return
    them by node."""
    return moved(config, fleet, root, owner=USER, group=GROUP, **repository)


def converged(
    fleet: Fleet, tmp_path: Path, nodes_root: Path
) -> tuple[Path, dict[str, Path], Callable[..., int]]:
    """Return (config, node directories, a runner) of a Fernet fleet whose directories exist
    as ``root:<owner's group> 0750`` and that went through init, rotate, sync and verify
    (each exit 0)."""
    config = fleet_config(fleet, tmp_path / "ctl")
    paths = repoint(config, fleet, nodes_root)
    for path in paths.values():
        keystone_layout(path)
    run: Callable[..., int] = lambda *args: main(["-c", str(config), *args])  # noqa: E731
    for action in ("init", "rotate", "sync", "verify"):
        assert run(action) == 0, action
    return config, paths, run


def test_fernet_directories_keystone_can_use_stay_and_keystone_loads_the_keys(
    fleet: Fleet, tmp_path: Path, nodes_root: Path
) -> None:
    config, paths, run = converged(fleet, tmp_path, nodes_root)
    keys = list(paths.values())
    for path in keys:
        assert layout_of(path) == (0, grp.getgrnam(GROUP).gr_gid, 0o750), "left as it was"
        done = as_owner(FERNET, path, *keys, root=nodes_root)
        assert done.returncode == 0, f"keystone as {USER} on {path}: {done.stderr[-400:]}"

    paths["node2"].chmod(0o700)  # root:nogroup 0700: nobody cannot enter it any more
    os.chown(paths["node2"], 0, 0)
    assert as_owner(FERNET, paths["node2"], root=nodes_root).returncode != 0
    assert run("verify") != 0
    report = sorted((config.parent / "reports").glob("*-verify-*.json"))[-1].read_text()
    uid = pwd.getpwnam(USER).pw_uid
    assert f"{USER} (uid {uid}) cannot list {paths['node2']} (0:0 0700)" in report
    assert str(paths["node1"]) not in report and str(paths["node3"]) not in report

    assert run("sync") == 0, "keysyncd fixes a directory it is responsible for"
    assert layout_of(paths["node2"]) == (uid, grp.getgrnam(GROUP).gr_gid, 0o700)
    assert as_owner(FERNET, paths["node2"], *keys, root=nodes_root).returncode == 0
    assert run("verify") == 0


@pytest.fixture
def owned_world(make_fleet: Callable[..., Fleet], tmp_path: Path, nodes_root: Path) -> World:
    """The JWS world (tests/jws_world.py) with its nodes under ``nodes_root``, owned by
    ``nobody:nogroup``, both directories already there as ``root:nogroup 0750``."""
    fleet = make_fleet(3)
    path = jws_config(fleet, tmp_path / "ctl")
    paths = repoint(path, fleet, nodes_root)
    for base in paths.values():
        for directory in ("private", "public"):
            keystone_layout(base / directory)
    for node in fleet.nodes:  # the world's helpers look at node.directory
        node.directory = paths[node.name]
    return World(fleet, path)


def test_jws_directories_keystone_can_use_stay_and_keystone_signs_and_validates(
    owned_world: World, nodes_root: Path
) -> None:
    world = owned_world
    names = [node.name for node in world.fleet.nodes]
    publics = [world.public(name) for name in names]
    group = grp.getgrnam(GROUP).gr_gid
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.rotate, False, False).outcome == "ok"
    assert act(world, operations.sync, None, False, False).outcome == "ok"
    assert act(world, operations.verify, None).outcome == "ok"
    for name in names:
        for directory in (world.private(name), world.public(name)):
            assert layout_of(directory) == (0, group, 0o750), "left as it was"
        done = as_owner(JWS, world.private(name), *publics, root=nodes_root)
        assert done.returncode == 0, f"keystone as {USER} on {name}: {done.stderr[-400:]}"

    os.chown(world.public("node3"), 0, 0)  # root:root 0750: nobody cannot list it any more
    checked = act(world, operations.verify, None)
    statuses = {name: node.status for name, node in checked.nodes.items()}
    assert statuses == {"node1": "in_sync", "node2": "in_sync", "node3": "differs"}
    uid = pwd.getpwnam(USER).pw_uid
    reported = describe_jws(checked.nodes["node3"].changes)
    assert f"{USER} (uid {uid}) cannot list {world.public('node3')} (0:0 0750)" in reported

    assert act(world, operations.sync, None, False, False).outcome == "ok"
    assert layout_of(world.public("node3")) == (uid, group, 0o700)
    assert layout_of(world.private("node3")) == (0, group, 0o750), "keystone could use it"
    done = as_owner(JWS, world.private("node3"), *publics, root=nodes_root)
    assert done.returncode == 0, done.stderr[-400:]
    assert act(world, operations.verify, None).outcome == "ok"


def latest_report(config: Path, action: str) -> str:
    return sorted((config.parent / "reports").glob(f"*-{action}-*.json"))[-1].read_text()


def test_a_directory_above_the_keys_the_owner_cannot_pass_is_reported_and_never_changed(
    fleet: Fleet, tmp_path: Path, nodes_root: Path
) -> None:
    config, paths, run = converged(fleet, tmp_path, nodes_root)

    above = paths["node2"].parent  # root:root 0755 -> 0700: nobody cannot pass through it
    above.chmod(0o700)
    assert as_owner(FERNET, paths["node2"], root=nodes_root).returncode != 0
    uid = pwd.getpwnam(USER).pw_uid
    blocked = f"{USER} (uid {uid}) cannot enter {above} (0:0 0700)"
    assert run("verify") != 0
    report = latest_report(config, "verify")
    assert blocked in report
    assert str(paths["node1"].parent) not in report and str(paths["node3"].parent) not in report

    (paths["node2"] / "0").unlink()  # a key to push: it is pushed, the node is still not ok
    keys_before = layout_of(paths["node2"])
    assert run("sync") != 0
    report = latest_report(config, "sync")
    assert blocked in report and '"permission"' in report
    assert layout_of(above) == (0, 0, 0o700), "keysyncd never changes a directory above"
    assert layout_of(paths["node2"]) == keys_before
    assert (paths["node2"] / "0").read_bytes() == (paths["node1"] / "0").read_bytes()
    assert run("sync") != 0, "the same again: nothing to write, the same failure"
    assert blocked in latest_report(config, "sync")
    assert layout_of(above) == (0, 0, 0o700)

    above.chmod(0o755)  # the node's administrator lets the owner through again
    assert run("verify") == 0
    keys = list(paths.values())
    assert as_owner(FERNET, paths["node2"], *keys, root=nodes_root).returncode == 0


def test_jws_a_directory_above_the_key_directories_the_owner_cannot_pass_is_reported(
    owned_world: World,
) -> None:
    world = owned_world
    assert act(world, operations.init, False).outcome == "ok"
    assert act(world, operations.verify, None).outcome == "ok"
    above = world.private("node1").parent  # root:root 0755, above private/ and public/
    above.chmod(0o700)
    checked = act(world, operations.verify, None)
    statuses = {name: node.status for name, node in checked.nodes.items()}
    assert statuses == {"node1": "differs", "node2": "in_sync", "node3": "in_sync"}
    uid = pwd.getpwnam(USER).pw_uid
    blocked = f"{USER} (uid {uid}) cannot enter {above} (0:0 0700)"
    assert blocked in describe_jws(checked.nodes["node1"].changes)

    synced = act(world, operations.sync, None, False, False)
    assert synced.outcome != "ok"
    assert blocked in (synced.nodes["node1"].error or "")
    assert synced.nodes["node1"].reason == "permission"
    assert layout_of(above) == (0, 0, 0o700), "keysyncd never changes a directory above"
    above.chmod(0o755)
    assert act(world, operations.verify, None).outcome == "ok"
