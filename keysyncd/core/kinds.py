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
    """A kind of key repository: its default size and its key format."""

    name: str
    default_max_active_keys: int
    description: str

    def generate(self) -> bytes:
        """Return fresh key material for this kind (Fernet keys for every kind so far)."""
        return Fernet.generate_key()

    def problem(self, content: bytes) -> str | None:
        """Return why ``content`` is not a valid key of this kind, or None when it is."""
        return _fernet_key_problem(content)


KINDS: dict[str, KeyKind] = {
    "fernet": KeyKind("fernet", 3, "keystone Fernet token keys"),
    "credential": KeyKind("credential", 3, "keystone credential encryption keys"),
    # JWS key pairs: one per node (keysyncd.core.jws); max_active_keys does not apply
    "jws": KeyKind("jws", 2, "keystone JWS token signing key pairs"),
}
