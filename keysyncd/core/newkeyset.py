"""``keysyncd revoke --all`` of a symmetric repository (fernet, credential), pure: a brand-new
key set, every token dies. The plan is the single-key revocation's steps applied to every key
at once, from what the controller holds now (so a run after a crash plans what is left): the
staged key replaced on every node, the new staged key promoted once every node holds it, a
credential migration to the new primary, then every revoked key deleted everywhere at once.
No IO."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from keysyncd.core.policy import History, migrated_past


@dataclass(frozen=True)
class KeySetPlan:
    """What a new key set takes, in order: ``new_staged`` (the staged key is revoked), then
    ``promote`` (the primary is revoked: the new staged key becomes the primary, the gate
    first), ``migrate`` (credential keys: a migration to the new primary first), ``delete``
    (the indices of the revoked keys, on the controller and every node at once)."""

    revoked: tuple[str, ...]
    new_staged: bool
    promote: bool
    migrate: bool
    delete: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the plan as a report's ``details.plan`` shows it (digests only)."""
        return {"revoke": "all", "revoked": list(self.revoked), "steps": self.steps()}

    def steps(self) -> list[str]:
        """Return the plan's steps in words, in order."""
        said = []
        if self.new_staged:
            said.append("replace the staged key 0 with a new one on every node")
        if self.promote:
            said.append("promote the new staged key on every node (the gate first), new staged 0")
        if self.migrate:
            said.append("run the after_rotate migration with the new primary")
        if self.delete:
            keys = ", ".join(str(index) for index in self.delete)
            said.append(f"delete keys {keys} on the controller and every node at once")
        said.append("read every node back: no node may hold a revoked key")
        return said


def plan_new_key_set(
    digests: Mapping[int, str], revoked: Collection[str], history: History, retire_by: str
) -> KeySetPlan:
    """Return what is left to do to replace every ``revoked`` key of a repository holding
    ``digests`` (index -> digest); credential keys (``retire_by`` "migration") are deleted only
    after a migration past the newest of them (or forced)."""
    held = sorted(index for index, digest in digests.items() if index > 0 and digest in revoked)
    primary = max(digests, default=0)
    promote = primary > 0 and digests[primary] in revoked
    newest = max(held, default=0)
    return KeySetPlan(
        revoked=tuple(revoked),
        new_staged=digests.get(0) in revoked,
        promote=promote,
        migrate=retire_by == "migration" and bool(held) and not migrated_past(newest, history),
        delete=tuple(held),
    )


def every_token_dies(retire_by: str) -> str:
    """Return what ``--all`` kills, in words (said before it runs, and by ``--dry-run``)."""
    if retire_by == "migration":
        return (
            "revoking every key (a new key set): every credential not re-encrypted by the "
            "after_rotate migration (keystone-manage credential_migrate) is lost"
        )
    return (
        "revoking every key (a new key set): every token dies (every user signs in again); "
        "tokens issued with the new primary are valid on every node"
    )
