"""Attack: a failed after_rotate on a ``jws`` repository blocks the next rotation whatever
starts it (the daemon's scheduled job, SIGUSR1, the CLI), and no other action (SIGUSR2's
sync and verify, the periodic check's drift repair) clears the block without the hook
succeeding. The daemon's own job table (``keysyncd.actions.operations.JOBS``), real fleet."""

from __future__ import annotations

from pathlib import Path

from keysyncd.actions import operations
from keysyncd.actions.context import Run
from keysyncd.actions.operations import JOBS
from keysyncd.core.vocabulary import Trigger
from keysyncd.io.local.lock import exclusive
from tests.integration.test_after_rotate import script, set_hooks
from tests.integration.test_jws_hooks import journal, rotate, signing
from tests.jws_world import World, act


def job(world: World, name: str, trigger: Trigger) -> list[str]:
    """Run the daemon's job ``name`` as the daemon does; return its outcomes."""
    config = world.config
    run = Run(config, config.repositories[0], trigger)
    with exclusive(config.state_dir, "daemon"):
        results = JOBS[name](run)
    return [str(result.outcome) for result in results if result is not None]


def test_a_failed_jws_after_rotate_blocks_every_rotation_and_nothing_else_clears_it(
    world: World, tmp_path: Path
) -> None:
    assert act(world, operations.init, False).outcome == "ok"
    ran = tmp_path / "ran"
    migrate = tmp_path / "migrate"
    set_hooks(world.path, after_rotate=[script(migrate, f"echo x >> {ran}; exit 3")])
    assert rotate(world) == 1
    blocked = signing(world)
    assert journal(world)["hook_block"]["status"] == 3

    assert job(world, "rotate", Trigger.CRON) == ["deferred"]
    assert job(world, "rotate", Trigger.SIGNAL) == ["deferred"]
    job(world, "sync", Trigger.SIGNAL)  # SIGUSR2: retries the migration, which fails
    job(world, "check", Trigger.CRON)  # the periodic check (drift: repair)
    (world.private("node2") / "private.pem").unlink()  # drift the repair must fix
    job(world, "check", Trigger.CRON)
    assert signing(world).keys() == blocked.keys()
    assert journal(world)["hook_block"] is not None, "cleared without the hook succeeding"
    assert rotate(world) == 1
    assert {n: d for n, d in signing(world).items() if n != "node2"} == {
        n: d for n, d in blocked.items() if n != "node2"
    }, "a blocked rotation installed new private keys"
    attempts = len(ran.read_text().split())
    assert attempts >= 4  # every rotation and sync retried the hook

    script(migrate, "exit 0")
    assert job(world, "rotate", Trigger.CRON) == ["ok"]
    assert journal(world)["hook_block"] is None
