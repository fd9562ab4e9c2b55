"""Hooks on a ``jws`` repository run as they do for Fernet, through the one action shell,
against a real OpenSSH fleet:

- after_rotate and on_failure read the hook document and the report on stdin;
- a failing after_rotate makes the rotation ``partial`` and blocks the next rotation
  (deferred, journaled) until it succeeds;
- a failing before_rotate means no private key changes anywhere.

The hook scripts pass the trust checks (root-owned, not group or world writable), as in
tests/integration/test_after_rotate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keysyncd.actions import operations
from keysyncd.commands.cli import main
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_rotate import reports
from tests.jws_world import World, act


def names(world: World) -> list[str]:
    return [node.name for node in world.fleet.nodes]


def signing(world: World) -> dict[str, str]:
    """Return each node's private.pem digest (what it signs with)."""
    return {name: world.private_digest(name) for name in names(world)}


def journal(world: World) -> dict:
    path = world.path.parent / "state" / "repositories" / "fernet-tokens.json"
    return json.loads(path.read_text())


def rotate(world: World) -> int:
    return main(["-c", str(world.path), "rotate"])


def test_after_rotate_and_on_failure_read_the_report_and_a_failure_blocks_until_it_succeeds(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    after_in, told = tmp_path / "after.json", tmp_path / "told.json"
    migrate = tmp_path / "migrate"
    set_hooks(
        world.path,
        after_rotate=[script(migrate, f"cat > {after_in}; exit 3")],
        on_failure=[script(tmp_path / "page", f"cat > {told}")],
    )
    before = signing(world)
    assert rotate(world) == 1
    [report] = reports(world.path, "rotate")
    assert report["outcome"] == "partial", report
    rotated = signing(world)
    assert all(rotated[n] != before[n] for n in names(world)), "the rotation itself happened"
    document = json.loads(after_in.read_text())
    assert document["repository"] == "fernet-tokens"
    assert document["generation"] == report["generation"]
    stdin = json.loads(told.read_text())
    assert (stdin["repository"], stdin["action"], stdin["outcome"]) == (
        "fernet-tokens",
        "rotate",
        "partial",
    )
    assert stdin["id"] == report["id"]
    assert [hook["event"] for hook in report["details"]["hooks"]] == ["after_rotate"]
    block = journal(world)["hook_block"]
    assert block is not None and block["status"] == 3, block

    # blocked: the next rotation retries the hook first, which still fails: nothing rotates
    assert rotate(world) == 1
    blocked = reports(world.path, "rotate")[-1]
    assert blocked["outcome"] == "deferred", blocked
    assert any("rotation blocked: after_rotate hook" in m for m in blocked["messages"])
    assert signing(world) == rotated, "a blocked rotation installed new private keys"
    assert journal(world)["hook_block"] is not None
    assert json.loads(told.read_text())["outcome"] == "deferred"

    script(migrate, f"cat > {after_in}; exit 0")
    assert rotate(world) == 0  # the retried hook succeeds: unblocked, rotated
    assert journal(world)["hook_block"] is None
    assert reports(world.path, "rotate")[-1]["outcome"] == "ok"
    assert all(signing(world)[n] != rotated[n] for n in names(world))


def test_status_json_shows_what_blocks_a_jws_rotation(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    set_hooks(world.path, after_rotate=[script(tmp_path / "migrate", "exit 3")])
    assert rotate(world) == 1
    capsys.readouterr()
    main(["-c", str(world.path), "--json", "status"])
    [repository] = json.loads(capsys.readouterr().out)["repositories"]
    blocked_by = repository["rotation_blocked_by"]
    assert blocked_by is not None and blocked_by["status"] == 3, blocked_by


def test_a_failing_before_rotate_rotates_nothing(world: World, tmp_path: Path) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    told, veto_in = tmp_path / "told.json", tmp_path / "veto.json"
    veto = tmp_path / "veto"
    set_hooks(
        world.path,
        before_rotate=[script(veto, f"cat > {veto_in}; exit 1")],
        on_failure=[script(tmp_path / "page", f"cat > {told}")],
    )
    before = signing(world)
    assert rotate(world) == 1
    [report] = reports(world.path, "rotate")
    assert report["outcome"] == "failed", report
    assert any(m.startswith("not rotated: before_rotate hook") for m in report["messages"])
    assert signing(world) == before, "a vetoed rotation installed a private key"
    # before_rotate reads the plan the rotation would have carried out
    assert json.loads(veto_in.read_text())["plan"] == report["details"]["plan"]
    assert json.loads(told.read_text())["outcome"] == "failed"
    assert journal(world)["hook_block"] is None

    script(veto, "exit 0")
    assert rotate(world) == 0
    assert all(signing(world)[n] != before[n] for n in names(world))
