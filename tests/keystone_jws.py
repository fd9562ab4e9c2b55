"""keystone's JWS token provider, transcribed from keystone/token/providers/jws/core.py.

The tests carry what matters (keystone itself: see tests/keystone_compat.py): it signs with
``<private>/private.pem`` and validates a token by trying every file in ``<public>``,
reading each one (whatever its name); a key that does not verify is skipped
(InvalidSignatureError, DecodeError), anything else raises and the token is rejected.
"""

from __future__ import annotations

import os
import time

import jwt


def private_key(private_repo: str) -> str:
    """Return ``private.pem`` as keystone's ``JWSFormatter.private_key`` reads it."""
    with open(os.path.join(private_repo, "private.pem")) as handle:
        return handle.read()


def public_keys(public_repo: str) -> list[str]:
    """Return every file's content, as keystone's ``JWSFormatter.public_keys`` reads them."""
    keys = []
    for keyfile in os.listdir(public_repo):
        with open(os.path.join(public_repo, keyfile)) as handle:
            keys.append(handle.read())
    return keys


def sign(private_repo: str, subject: str, algorithm: str = "ES256", lifetime: int = 3600) -> str:
    """Return a token signed as keystone's ``create_token`` signs it."""
    now = int(time.time())
    payload = {"sub": subject, "iat": now, "exp": now + lifetime}
    return jwt.encode(payload, private_key(private_repo), algorithm=algorithm)


def validate(token: str, public_repo: str, algorithm: str = "ES256") -> dict[str, object]:
    """Return the payload, as keystone's ``_decode_token_from_id``; raise LookupError when no
    key verifies it (keystone's TokenNotFound), or whatever reading the keys raised."""
    for public_key in public_keys(public_repo):
        try:
            payload: dict[str, object] = jwt.decode(
                token, public_key, algorithms=[algorithm], options={"verify_exp": False}
            )
            return payload
        except (jwt.InvalidSignatureError, jwt.DecodeError):
            pass  # keystone tries every public key
    raise LookupError("no public key verifies this token")
