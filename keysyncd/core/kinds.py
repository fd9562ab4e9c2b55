"""Key kinds, registered once (``KINDS``): each kind's name, model (its rules and pure
planners), size, what retires its keys and its config fields. No code tests a kind by its
name; ``keysyncd.actions.operations`` binds each model to its actions.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from keysyncd.core import policy

if TYPE_CHECKING:
    from keysyncd.core.jws import JwsState
    from keysyncd.core.jwsconverge import ConvergePlan, ConvergeRequest, PairLifecycle


class SymmetricModel:
    """Every node holds the same numbered keys in one directory (keystone's key repository):
    a rotation promotes staged key 0 and retires by ``policy`` (``plan_rotation``)."""

    name = "symmetric"
    pairs_per_node = False  # one key set, the same everywhere
    plan_rotation = staticmethod(policy.plan_rotation)
    lifecycles = staticmethod(policy.simulate)


class JwsModel:
    """Each node signs with its own key pair and every node holds every public key: one
    planner (``plan``) decides every write action's new pairs and retired public keys."""

    name = "jws"
    pairs_per_node = True  # a private and a public directory; the controller's in state_dir

    # the planners, the functions themselves, imported when first asked for: a status or
    # plan of fernet and credential keys loads no JWS model (tests/unit/test_startup_lazy.py)
    @property
    def plan(
        self,
    ) -> Callable[
        [JwsState, Mapping[str, str], ConvergeRequest, Mapping[str, str | None]], ConvergePlan
    ]:
        """Return ``keysyncd.core.jwsconverge.plan_converge``."""
        from keysyncd.core.jwsconverge import plan_converge

        return plan_converge

    @property
    def lifecycles(
        self,
    ) -> Callable[[JwsState, Collection[str], float, float, list[float]], list[PairLifecycle]]:
        """Return ``keysyncd.core.jwsconverge.simulate``."""
        from keysyncd.core.jwsconverge import simulate

        return simulate


Model = SymmetricModel | JwsModel
SYMMETRIC = SymmetricModel()
JWS = JwsModel()
M = TypeVar("M", SymmetricModel, JwsModel)


@dataclass(frozen=True)
class KeyKind:
    """A kind of key repository: its model, default size, key format, and what retires a key
    ("time": no token it protected is valid; "migration": no credential needs it).
    ``fixed_max_active_keys``: the only size keystone works with (None: any from 2); ``fields``:
    the config fields only this kind takes."""

    name: str
    description: str
    model: Model
    default_max_active_keys: int = 3
    retire_by: str = "time"
    fixed_max_active_keys: int | None = None
    fields: frozenset[str] = frozenset()

    @property
    def sized(self) -> bool:
        """Return True if ``max_active_keys`` sizes this kind (False: one pair per node)."""
        return not self.model.pairs_per_node

    @property
    def pairs_per_node(self) -> bool:
        """Return True if each node holds its own key pair (a private and a public
        directory on the nodes, the controller's keys in state_dir)."""
        return self.model.pairs_per_node

    def model_as(self, model: type[M]) -> M:
        """Return this kind's model, which the caller (one model's steps or views) needs to
        be a ``model``. Raise TypeError if it is another: a kind bound to wrong actions."""
        if not isinstance(self.model, model):
            raise TypeError(f"kind {self.name} has the {self.model.name} model, not {model.name}")
        return self.model

    def generate(self) -> bytes:
        """Return fresh key material for this kind (Fernet keys for the symmetric kinds)."""
        from cryptography.fernet import Fernet  # here: the read-only commands never need it

        return Fernet.generate_key()

    def problem(self, content: bytes) -> str | None:
        """Return why ``content`` is not a valid key of this kind (a Fernet key), or None when
        it is; never echoes the content."""
        if not content.strip():
            return "empty key"
        text = content.rstrip(b"\n")
        if len(text) != 44:
            return f"malformed key: expected 44 base64 characters, found {len(text)} bytes"
        try:
            raw = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return "malformed key: not urlsafe base64"
        if len(raw) != 32:
            return "malformed key: does not decode to 32 bytes"
        return None


KINDS: dict[str, KeyKind] = {
    kind.name: kind
    for kind in (
        KeyKind("fernet", "keystone Fernet token keys", SYMMETRIC),
        # keystone's credential provider always keeps 3 keys (credential/providers/fernet/
        # core.py MAX_ACTIVE_KEYS); its keys encrypt credentials: only a migration retires them
        KeyKind(
            "credential",
            "keystone credential encryption keys",
            SYMMETRIC,
            retire_by="migration",
            fixed_max_active_keys=3,
        ),
        # one pair per node (keysyncd.core.jws); max_active_keys does not apply
        KeyKind(
            "jws",
            "keystone JWS token signing key pairs",
            JWS,
            default_max_active_keys=2,
            fields=frozenset({"algorithm", "private_path", "public_path"}),
        ),
    )
}
# the fields only some kinds take
KIND_FIELDS: frozenset[str] = frozenset().union(*(kind.fields for kind in KINDS.values()))
