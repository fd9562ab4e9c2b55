"""The pure plan of ``revoke --all`` (keysyncd.core.newkeyset): what is left to do to replace
every revoked key, from what the controller holds now (a run after a crash plans the rest)."""

from __future__ import annotations

from keysyncd.core.newkeyset import every_token_dies, plan_new_key_set
from keysyncd.core.policy import KeyHistory

HELD = {0: "s", 1: "a", 2: "p"}
REVOKED = ("s", "a", "p")


def test_every_key_at_once_the_staged_key_first_then_the_primary() -> None:
    plan = plan_new_key_set(HELD, REVOKED, {}, "time")
    assert (plan.new_staged, plan.promote, plan.migrate, plan.delete) == (True, True, False, (1, 2))
    assert plan.steps()[0].startswith("replace the staged key 0")


def test_after_a_crash_only_what_is_left() -> None:
    promoted = {0: "n2", 1: "a", 2: "p", 3: "n1"}
    plan = plan_new_key_set(promoted, REVOKED, {}, "time")
    assert (plan.new_staged, plan.promote, plan.delete) == (False, False, (1, 2))
    done = plan_new_key_set({0: "n2", 3: "n1"}, REVOKED, {}, "time")
    assert (done.new_staged, done.promote, done.delete) == (False, False, ())


def test_credential_keys_wait_for_a_migration_past_the_newest_revoked_key() -> None:
    assert plan_new_key_set(HELD, REVOKED, {}, "migration").migrate
    migrated = {3: KeyHistory(created_at=1.0, migrated_at=2.0)}
    assert not plan_new_key_set(HELD, REVOKED, migrated, "migration").migrate


def test_what_dies_is_said() -> None:
    assert "every token dies" in every_token_dies("time")
    assert "is lost" in every_token_dies("migration")
