"""JWS key pairs as keystone makes and reads them (``keystone-manage create_jws_keypair``):
PKCS#8 private and SubjectPublicKeyInfo public PEM. Material never goes into a message.
cryptography is imported when a key is handled (tests/unit/test_startup_time.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keysyncd.core.names import MAX_PEM

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

ALGORITHMS = ("ES256", "ES384", "ES512", "EdDSA")


def _curve(algorithm: str) -> type[ec.EllipticCurve]:
    """Return the curve of ECDSA ``algorithm``; raise KeyError for any other algorithm."""
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, SECP384R1, SECP521R1

    curves = {"ES256": SECP256R1, "ES384": SECP384R1, "ES512": SECP521R1}
    return curves[algorithm]


def generate_pair(algorithm: str) -> tuple[bytes, bytes]:
    """Return a new (private PEM, public PEM) for ``algorithm`` (ES256, ES384, ES512, EdDSA)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(_curve(algorithm)())
    return _private_pem(private), _public_pem(private.public_key())


def _private_pem(key: PrivateKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _public_pem(key: PublicKeyTypes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_public(content: bytes) -> PublicKeyTypes | None:
    """Return the public key PEM ``content`` holds (cryptography skips text around the
    block), or None if it holds none."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_public_key(content)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _fits(key: PublicKeyTypes, algorithm: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _curve(algorithm))


def public_problem(content: bytes, algorithm: str) -> str | None:
    """Return why ``content`` is not a public key keystone can verify ``algorithm`` tokens
    with, or None when it is one."""
    if not content.strip():
        return "empty file"
    if len(content) > MAX_PEM:
        return f"larger than {MAX_PEM} bytes: not a public key"
    key = _load_public(content)
    if key is None:
        return "not a PEM public key (SubjectPublicKeyInfo)"
    if content.strip() != _public_pem(key).strip():
        # cryptography skips text around the PEM block, keystone's PyJWT does not (it reads a
        # file starting "ecdsa-sha2-..." as an SSH key): only the one block may be trusted
        return "not exactly one PEM public key (other text around or inside it)"
    if not _fits(key, algorithm):
        return f"a public key, but not one for {algorithm}"
    return None


def algorithm_of_public(content: bytes) -> str | None:
    """Return the algorithm (ES256, ES384, ES512, EdDSA) public key ``content`` verifies, or
    None if it is no public key for any of them."""
    return next((name for name in ALGORITHMS if public_problem(content, name) is None), None)


def private_algorithm(content: bytes) -> str | None:
    """Return the algorithm private key ``content`` signs with, or None (no key of ours)."""
    return next((name for name in ALGORITHMS if public_of_private(content, name) is not None), None)


def public_of_private(content: bytes, algorithm: str) -> bytes | None:
    """Return the public PEM of private key ``content``, or None if it is not a private key
    for ``algorithm`` (keystone could not sign with it)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if len(content) > MAX_PEM:
        return None
    try:
        key = serialization.load_pem_private_key(content, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    public = key.public_key()
    return _public_pem(public) if _fits(public, algorithm) else None


def same_public_key(first: bytes, second: bytes) -> bool:
    """Return True if two public PEMs hold the same key, each exactly one PEM block (text
    around a block would be read otherwise by keystone: see ``public_problem``)."""
    one, two = _exact_public(first), _exact_public(second)
    return one is not None and two is not None and _public_pem(one) == _public_pem(two)


def _exact_public(content: bytes) -> PublicKeyTypes | None:
    """Return the public key ``content`` holds if it is exactly one PEM block (surrounding
    whitespace aside), else None (see ``public_problem``)."""
    if len(content) > MAX_PEM:
        return None
    key = _load_public(content)
    return key if key is not None and content.strip() == _public_pem(key).strip() else None
