"""Key kinds: how a kind's keys are made and checked. A small strategy, not if-chains."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.fernet import Fernet


def _fernet_key_problem(content: bytes) -> str | None:
    """Return why ``content`` is not a Fernet key, or None; never echoes the content."""
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


@dataclass(frozen=True)
class KeyKind:
    """A kind of key repository: its default size, its key format, and what retires a key
    ("time": no token it protected can still be valid; "migration": no credential is still
    encrypted with it). ``fixed_max_active_keys``: the only size keystone itself works with
    (None: any size from 2)."""

    name: str
    default_max_active_keys: int
    description: str
    retire_by: str = "time"
    fixed_max_active_keys: int | None = None

    def generate(self) -> bytes:
        """Return fresh key material for this kind (Fernet keys for every kind so far)."""
        return Fernet.generate_key()

    def problem(self, content: bytes) -> str | None:
        """Return why ``content`` is not a valid key of this kind, or None when it is."""
        return _fernet_key_problem(content)


KINDS: dict[str, KeyKind] = {
    "fernet": KeyKind("fernet", 3, "keystone Fernet token keys"),
    # keystone's credential provider always keeps 3 keys (credential/providers/fernet/core.py
    # MAX_ACTIVE_KEYS); its keys encrypt credentials, so only a migration retires them
    "credential": KeyKind(
        "credential", 3, "keystone credential encryption keys", "migration", fixed_max_active_keys=3
    ),
    # JWS key pairs: one per node (keysyncd.core.jws); max_active_keys does not apply
    "jws": KeyKind("jws", 2, "keystone JWS token signing key pairs"),
}
