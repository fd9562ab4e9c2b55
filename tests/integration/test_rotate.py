"""Fleet-safe rotation against a real OpenSSH fleet: gate, defer, force, bootstrap, hooks, lock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from keysyncd.commands.cli import main
from keysyncd.testing.config import fleet_config
from keysyncd.testing.fleet import Fleet
from tests.keystone_compat import fernet_rotate, fernet_setup


def files_of(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def everything(fleet: Fleet, config: Path) -> dict[str, dict[str, bytes]]:
    """Return the content of the controller's repository and of every node."""
    state = {node.name: files_of(node.directory) for node in fleet.nodes}
    state["controller"] = files_of(config.parent / "keys")
    return state


def reports(config: Path, action: str) -> list[dict]:
    found = sorted((config.parent / "reports").glob(f"*-{action}-*.json"))
    return [json.loads(p.read_text()) for p in found]


def run(config: Path, *args: str) -> int:
    return main(["-c", str(config), *args])


@pytest.fixture
def ready(fleet5: Fleet, tmp_path: Path) -> tuple[Fleet, Path]:
    config = fleet_config(fleet5, tmp_path / "ctl")
    assert run(config, "init") == 0
    return fleet5, config


def test_rotation_defers_while_a_node_is_down(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    fleet.stop_node("node4")
    before = everything(fleet, config)
    capsys.readouterr()
    assert run(config, "rotate") == 1
    out = capsys.readouterr().out
    assert "deferred" in out and "node4 (unreachable)" in out
    assert everything(fleet, config) == before  # nothing changed anywhere
    report = reports(config, "rotate")[-1]
    assert report["outcome"] == "deferred"
    assert report["nodes"]["node4"]["reason"] == "unreachable"
    assert any("node4" in message for message in report["messages"])
    fleet.start_node("node4")
    assert run(config, "rotate") == 0
    assert run(config, "verify") == 0
    local = files_of(config.parent / "keys")
    assert sorted(local) == ["0", "1", "2"]
    assert all(files_of(node.directory) == local for node in fleet.nodes)


def test_rotation_syncs_a_lagging_node_before_promoting(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    lagging = fleet.node("node2").directory
    (lagging / "0").unlink()  # the node lost its staged key: it must get it before promotion
    assert run(config, "rotate") == 0
    assert files_of(lagging) == files_of(config.parent / "keys")


@pytest.mark.parametrize("name", ["099", "+99", " 99", "9_9"])
def test_a_key_keystone_loads_as_a_newer_primary_stops_the_rotation(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A valid key under a name keystone's int() loads above the controller's primary makes
    that node sign with it: the gate never promotes past it; sync --force removes it."""
    fleet, config = ready
    node2 = fleet.node("node2").directory
    (node2 / name).write_bytes(Fernet.generate_key())
    os.chmod(node2 / name, 0o600)
    before = everything(fleet, config)
    capsys.readouterr()
    assert run(config, "rotate") == 1
    out = capsys.readouterr().out
    assert "deferred" in out and "node2" in out, out
    assert everything(fleet, config) == before, "nothing promoted, nothing pushed"
    report = reports(config, "rotate")[-1]
    assert report["outcome"] == "deferred" and report["nodes"]["node2"]["status"] == "diverged"
    assert run(config, "sync") == 1, "a diverged node is left to the operator"
    assert (node2 / name).exists()
    assert run(config, "sync", "--force") == 0
    assert not (node2 / name).exists()
    assert run(config, "rotate") == 0
    local = files_of(config.parent / "keys")
    assert all(files_of(node.directory) == local for node in fleet.nodes)


def test_force_rotates_past_a_dead_node_and_says_so(ready: tuple[Fleet, Path]) -> None:
    fleet, config = ready
    fleet.stop_node("node1")
    assert run(config, "rotate", "--force") == 1
    report = reports(config, "rotate")[-1]
    assert report["forced"] is True and report["outcome"] == "partial"
    assert any(m.startswith("FORCED") and "node1" in m for m in report["messages"])


def test_init_refuses_when_a_node_holds_keys_then_adopt_and_sync(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = fleet.node("node2").directory
    fernet_setup(str(live))  # a live keystone node bootstrapped by someone else
    fernet_rotate(str(live))
    config = fleet_config(fleet, tmp_path / "ctl")
    before = {node.name: files_of(node.directory) for node in fleet.nodes}
    capsys.readouterr()
    assert run(config, "init") == 1
    assert "node node2 already holds keys" in capsys.readouterr().err
    assert {node.name: files_of(node.directory) for node in fleet.nodes} == before
    assert not (tmp_path / "ctl" / "keys").exists() or not os.listdir(tmp_path / "ctl" / "keys")
    assert run(config, "adopt", "--from", "node2") == 0
    assert files_of(tmp_path / "ctl" / "keys") == files_of(live)
    assert run(config, "sync") == 0
    assert all(files_of(node.directory) == files_of(live) for node in fleet.nodes)
    # adopted keys count as demoted at adoption: the next rotation keeps them all
    assert run(config, "rotate") == 0
    assert sorted(int(n) for n in os.listdir(live)) == [0, 1, 2, 3]


def test_init_and_adopt_answer_in_json(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: one document per command, with the exit code, the report and every node."""
    config = fleet_config(fleet, tmp_path / "ctl")
    capsys.readouterr()
    assert run(config, "--json", "init") == 0
    init = json.loads(capsys.readouterr().out)
    assert init["action"] == "init" and init["exit_code"] == 0 and init["errors"] == {}
    (report,) = init["reports"]
    assert report["outcome"] == "ok" and sorted(report["expected"]) == ["0", "1"]
    [result] = init["repositories"][0]["results"]
    assert {name: node["status"] for name, node in result["nodes"].items()} == {
        node.name: "updated" for node in fleet.nodes
    }
    assert result["report_id"] == report["id"]
    assert "nodes" not in report  # each node once: in its result
    written = json.loads((config.parent / "reports" / f"{report['id']}.json").read_text())
    assert written["nodes"] == result["nodes"]
    assert {key: written[key] for key in report} == report  # (the file adds its chain link)

    other = fleet_config(fleet, tmp_path / "other")  # a second controller takes the fleet over
    assert run(other, "--json", "adopt", "--from", "node2") == 0
    adopt = json.loads(capsys.readouterr().out)
    assert adopt["action"] == "adopt" and adopt["exit_code"] == 0, adopt
    assert adopt["source"] == "node2"
    assert [r["name"] for r in adopt["repositories"]] == ["fernet-tokens"]
    (adopted,) = [
        json.loads(p.read_text()) for p in (tmp_path / "other" / "reports").glob("*.json")
    ]
    assert adopted["action"] == "adopt" and adopted["expected"] == report["expected"]
    assert files_of(tmp_path / "other" / "keys") == files_of(fleet.node("node2").directory)


def test_dry_run_matches_the_real_rotation(
    ready: tuple[Fleet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    text = config.read_text().replace("token_expiration: 3600", "token_expiration: 1")
    config.write_text(text)
    assert run(config, "rotate") == 0
    assert run(config, "rotate") == 0
    time.sleep(1.1)  # keys 1 and 2 are now safe to retire
    before = everything(fleet, config)
    capsys.readouterr()
    assert run(config, "rotate", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert everything(fleet, config) == before
    # before: what it would do, and what differs on each node (whole lines)
    lines = dry.splitlines()
    assert (
        "fernet-tokens: would promote staged key 0 to primary 4, stage a new key 0 and "
        "retire keys 1 and 2"
    ) in lines, dry
    for node in fleet.nodes:
        assert (
            f"  {node.name}: differs from the key set with primary 4: missing key 4, "
            "different key 0, extra keys 1 and 2"
        ) in lines, dry
    assert run(config, "rotate") == 0
    # after: what was done, on each node's line (whole lines, the duration aside)
    done = capsys.readouterr().out.splitlines()
    assert (
        "fernet-tokens: promoted staged key 0 to primary 4, staged a new key 0 and "
        "retired keys 1 and 2"
    ) in done, done
    for node in fleet.nodes:
        pattern = (
            rf"  {node.name}  updated +\d+\.\d\ds  added key 4, replaced key 0, "
            "removed keys 1 and 2"
        )
        assert [line for line in done if re.fullmatch(pattern, line)], done
    report = reports(config, "rotate")[-1]
    assert report["details"]["plan"]["new_primary"] == 4
    assert report["details"]["plan"]["retired"] == [1, 2]
    for node in fleet.nodes:
        changes = report["nodes"][node.name]["changes"]
        assert (changes["missing"], changes["changed"], changes["extra"]) == ([4], [0], [1, 2])
    assert sorted(int(n) for n in os.listdir(fleet.nodes[0].directory)) == [0, 3, 4]


def _hook_config(config: Path, hook: Path) -> None:
    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["hooks"] = {"after_rotate": [str(hook)], "timeout": 10}
    config.write_text(yaml.safe_dump(document))


def test_failing_after_rotate_hook_blocks_the_next_rotation(
    ready: tuple[Fleet, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet, config = ready
    hook = tmp_path / "migrate.sh"
    seen = tmp_path / "stdin.json"
    hook.write_text(f"#!/bin/sh\ncat > {seen}\necho migrating\nexit 3\n")
    hook.chmod(0o755)
    _hook_config(config, hook)
    assert run(config, "rotate") == 1  # rotated and pushed, but the hook failed
    report = reports(config, "rotate")[-1]
    assert report["details"]["hooks"][0]["status"] == 3
    assert "migrating" in report["details"]["hooks"][0]["output"]
    assert json.loads(seen.read_text())["repository"] == "fernet-tokens"
    before = everything(fleet, config)
    capsys.readouterr()
    assert run(config, "rotate") == 1
    out = capsys.readouterr().out
    assert f"after_rotate hook '{hook}' exited with status 3" in out
    assert "blocked" in out
    assert everything(fleet, config) == before
    hook.write_text("#!/bin/sh\nexit 0\n")  # the migration is fixed
    assert run(config, "rotate") == 0
    assert sorted(files_of(config.parent / "keys")) == ["0", "1", "2", "3"]


def holding_hook(config: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Give ``config``'s repository a before_rotate hook that touches ``started`` and then
    waits (30 s at most) until ``release`` exists: a rotation that holds the lock, for the
    test to meet; return (started, release)."""
    started, release = tmp_path / "hook-started", tmp_path / "hook-release"
    hook = (
        f"touch {started}; for i in $(seq 600); do [ -e {release} ] && exit 0; sleep 0.05; done; "
        "exit 1"
    )
    document = yaml.safe_load(config.read_text())
    document["repositories"][0]["hooks"] = {"before_rotate": [["sh", "-c", hook]]}
    config.write_text(yaml.safe_dump(document))
    return started, release


def test_two_concurrent_rotations_never_both_rotate(
    make_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = make_fleet(3)
    config = fleet_config(fleet, tmp_path / "ctl")
    assert run(config, "init") == 0
    # The first rotation's before_rotate hook says it runs (inside the lock) and then waits
    # for the test to release it: the second rotation surely meets a held lock.
    started, release = holding_hook(config, tmp_path)
    command = [sys.executable, "-m", "keysyncd", "-c", str(config), "rotate"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # bounded: 30 s
            if started.exists() or first.poll() is not None:
                break
            time.sleep(0.05)
        assert started.exists(), "the first rotation never reached its before_rotate hook"
        lock = tmp_path / "ctl" / "state" / "lock"
        assert json.loads(lock.read_text())["pid"] == first.pid, "the first rotation holds it"
        second = subprocess.run(command, capture_output=True, text=True, timeout=30)
    finally:
        release.touch()
    _, first_err = first.communicate(timeout=30)
    assert first.returncode == 0, first_err
    assert second.returncode == 1
    assert f"another keysyncd holds the lock: PID {first.pid} (rotate) since" in second.stderr
    assert second.stderr.count("\n") == 1
    assert sorted(files_of(tmp_path / "ctl" / "keys")) == ["0", "1", "2"]  # exactly one rotation
    waited = subprocess.run([*command, "--wait", "20"], capture_output=True, text=True, timeout=60)
    assert waited.returncode == 0, waited.stderr
