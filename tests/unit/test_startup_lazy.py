"""Start-up, continued (tests/unit/test_startup.py): what ``check-config``, ``status`` and
``plan`` of fernet keys without hooks do not load since issue 20's second pass, each a cost
to their start (tests/unit/test_startup_time.py), read from ``sys.modules`` of a fresh
interpreter that ran the command: no timing.

Not loaded: the JWS key pair model and its planners (``keysyncd.core.jws*``, ``access``, the
JWS store: a jws repository's), the report model (the acting commands'), the hook words'
rules and the modules the hook checks use (``glob``, ``shlex``), the child process runner's
``signal`` and systemd notify's ``socket`` (``keysyncd.io.runtime.children`` is loaded: status
reads daemon.json with it), the metrics server, and ``shutil`` with the compression modules
it loads (argparse asks it the terminal's width; ``keysyncd.commands.parser.terminal_columns``
answers the same), and since the third pass the node views' entries (``keysyncd.core.view``:
keystone's file names are ``keysyncd.core.names``), the revocation records (a state with a
revoked key only) and, for check-config, hashlib (OpenSSL's
load: only when something is digested). The controls show the check sees each one where it
is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.test_startup import heavy, loaded

JWS = (
    "keysyncd.core.jws",
    "keysyncd.core.jwsconverge",
    "keysyncd.core.jwsplan",
    "keysyncd.core.jwskeys",
    "keysyncd.core.access",
    "keysyncd.io.local.jwsstore",
)
ELSE = (
    "keysyncd.core.report",
    "keysyncd.core.view",
    "keysyncd.core.revocation",
    "keysyncd.io.local.hookwords",
    "keysyncd.io.runtime.metrics",
    "keysyncd.io.runtime.hooks",
    "shutil",
    "bz2",
    "lzma",
    "glob",
    "shlex",
    "signal",
    "socket",
    "selectors",
)


@pytest.mark.parametrize(
    ("config", "argv"),
    [
        ("plain", ["check-config"]),  # with nodes it loads paramiko, and paramiko shutil
        ("nodes", ["status"]),
        ("nodes", ["status", "--json"]),
        ("nodes", ["plan"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_fernet_views_load_no_jws_model_report_model_hook_checks_or_shutil(
    tmp_path: Path, startup_controller: dict[str, Path], config: str, argv: list[str]
) -> None:
    code, modules = loaded(tmp_path, "-c", str(startup_controller[config]), *argv)
    assert code in (0, 1, 2)
    assert heavy(modules, (*JWS, *ELSE)) == [], argv
    assert "keysyncd.io.runtime.children" in modules or argv == ["plan"]


def test_check_config_loads_no_hashlib_and_status_does_for_its_digests(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    _, modules = loaded(tmp_path, "-c", str(startup_controller["plain"]), "check-config")
    assert {"hashlib", "_hashlib"} & modules == set()
    _, modules = loaded(tmp_path, "-c", str(startup_controller["nodes"]), "status")
    assert "_hashlib" in modules  # the control: status shows the keys' digests


def changed(tmp_path: Path, startup_controller: dict[str, Path], **repository: object) -> Path:
    """Return a copy of the plain config whose repository has ``repository``'s fields (one
    None: without that field)."""
    document = yaml.safe_load(startup_controller["plain"].read_text())
    document["repositories"][0].update(repository)
    document["repositories"][0] = {k: v for k, v in document["repositories"][0].items() if v}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_jws_repository_loads_the_jws_model_and_plan_its_planner(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    """The control: the JWS model and store come with a jws repository (its state, its
    store), the planner and the access views with its plan."""
    jws = {"kind": "jws", "path": str(tmp_path / "jws"), "max_active_keys": None}
    config = changed(tmp_path, startup_controller, algorithm="ES256", **jws)
    for argv in (["check-config"], ["status"]):
        code, modules = loaded(tmp_path, "-c", str(config), *argv)
        assert code in (0, 1, 2)
        assert {"keysyncd.core.jws", "keysyncd.io.local.jwsstore"} <= modules, argv
        assert "keysyncd.core.jwsconverge" not in modules, argv
    _, modules = loaded(tmp_path, "-c", str(config), "plan")
    assert {"keysyncd.core.jwsconverge", "keysyncd.core.jwsplan", "keysyncd.core.access"} <= (
        modules
    )


def test_check_config_loads_the_hook_checks_when_there_are_hooks(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    """The control: a hook run by name (looked up in PATH, with shutil) brings the hook
    words' rules, the word splitting and glob back."""
    config = changed(tmp_path, startup_controller, hooks={"after_rotate": ["true --flag"]})
    _, modules = loaded(tmp_path, "-c", str(config), "check-config")
    assert {"keysyncd.io.local.hookwords", "shutil", "shlex", "glob"} <= modules


def test_the_acting_commands_load_the_report_model(
    tmp_path: Path, startup_controller: dict[str, Path]
) -> None:
    """The control: reports are the report model's (``report list`` reads them)."""
    _, modules = loaded(tmp_path, "-c", str(startup_controller["plain"]), "report", "list")
    assert "keysyncd.core.report" in modules
