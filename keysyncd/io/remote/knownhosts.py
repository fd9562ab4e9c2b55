"""known_hosts, parsed into an index: host name -> key type -> key.

Plain names are a dict lookup; only hashed entries are scanned (one HMAC per entry and
name, as ssh does), and the index and its answers are kept while the file does not change.
``@revoked`` revokes a key everywhere; ``@cert-authority`` lines are ignored; host patterns
are not matched (a node is trusted only under its exact name). A line paramiko cannot parse
is an error naming the file and line: a typo must not look like an unknown host.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType

from keysyncd.errors import LocalFileError
from keysyncd.io.local.trust import read_trusted


@dataclass(frozen=True)
class HashedName:
    """A hashed host name ``|1|salt|hash``: HMAC-SHA1(salt, name) == digest. The HMAC keyed
    with the salt is set up once (``base``) and copied per lookup (stdlib ``hmac``)."""

    base: hmac.HMAC
    digest: bytes
    key: paramiko.PKey
    negated: tuple[str, ...] = ()  # the line's "!pattern"s: a name they match is not this

    def matches(self, encoded: bytes) -> bool:
        """Return True if this hashes ``encoded`` and no negated pattern of its line matches it."""
        if any(_pattern_matches(encoded.decode(), pattern) for pattern in self.negated):
            return False
        mac = self.base.copy()
        mac.update(encoded)
        return hmac.compare_digest(mac.digest(), self.digest)


@dataclass
class KnownHosts:
    """The host keys of a known_hosts file, indexed for lookups by name."""

    plain: dict[str, list[paramiko.PKey]] = field(default_factory=dict)
    hashed: list[HashedName] = field(default_factory=list)
    revoked: set[tuple[str, str]] = field(default_factory=set)  # (key type, base64 blob)
    # host patterns keysyncd does not match (wildcards, negations): (line, pattern), kept
    # only to say why a host has no usable key
    patterns: list[tuple[int, str]] = field(default_factory=list)
    _answers: dict[str, dict[str, list[paramiko.PKey]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add(self, names: list[str], key: paramiko.PKey, line: int = 0) -> None:
        """Record ``key`` for every host name (or hashed name) in ``names`` (of ``line``); a
        pattern (``*``, ``?``, ``!``) is only remembered, to explain a refusal. As ssh: a
        name that a negated pattern of the line matches gets none of its keys."""
        negated = tuple(name[1:] for name in names if name.startswith("!"))
        for name in names:
            if name.startswith("!") or "*" in name or "?" in name:
                self.patterns.append((line, name))
            elif name.startswith("|1|"):
                salt, digest = _hashed(name)  # the known_hosts format's HMAC is HMAC-SHA1
                base = hmac.new(salt, digestmod=hashlib.sha1)
                self.hashed.append(HashedName(base, digest, key, negated))
            elif any(_pattern_matches(name, pattern) for pattern in negated):
                continue  # "node1,!node1": ssh rejects the line for node1
            else:
                self.plain.setdefault(name, []).append(key)
        self._answers.clear()

    def lookup(self, name: str) -> dict[str, list[paramiko.PKey]]:
        """Return key type -> every key listed for host ``name`` (``[host]:port`` when not port
        22); a host may list several keys of one type (during a host key rollover)."""
        answer = self._answers.get(name)
        if answer is None:
            answer = self._answers[name] = self._lookup(name)
        return {key_type: list(keys) for key_type, keys in answer.items()}

    def _lookup(self, name: str) -> dict[str, list[paramiko.PKey]]:
        found = list(self.plain.get(name, []))
        encoded = name.encode()
        found += [entry.key for entry in self.hashed if entry.matches(encoded)]
        by_type: dict[str, list[paramiko.PKey]] = {}
        for key in found:
            if (key.get_name(), key.get_base64()) not in self.revoked:
                by_type.setdefault(key.get_name(), []).append(key)
        return by_type

    def why_unusable(self, name: str) -> str:
        """Return which rule leaves host ``name`` without a usable key: all ``@revoked``, named only
        by a pattern keysyncd ignores (a wildcard, a negation), or not listed."""
        listed = list(self.plain.get(name, []))
        listed += [entry.key for entry in self.hashed if entry.matches(name.encode())]
        if listed and all(self.is_revoked(key) for key in listed):
            return f"every host key listed for {name} is marked @revoked"
        for line, pattern in self.patterns:
            negated = pattern.startswith("!")
            if _pattern_matches(name, pattern.removeprefix("!")):
                rule = "a negated pattern that excludes it" if negated else "a wildcard pattern"
                return (
                    f"{name} is named only by {rule} ({pattern!r}, line {line}), which keysyncd "
                    "does not accept: list the host by its exact name"
                )
        return f"{name} is not listed"

    def is_revoked(self, key: paramiko.PKey) -> bool:
        """Return True if ``key`` is listed under ``@revoked``."""
        return (key.get_name(), key.get_base64()) in self.revoked


def _pattern_matches(name: str, pattern: str) -> bool:
    """Return True if ssh's host ``pattern`` (``*`` and ``?`` only: ``[`` is literal, as in
    ``[host]:port``) matches ``name``."""
    regex = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


# the last file content parsed (its SHA-256 -> index), so that repeated actions of the
# daemon reuse the index and the answers of hashed lookups
_PARSED: dict[bytes, KnownHosts] = {}
_PARSED_LOCK = threading.Lock()


def _hashed(name: str) -> tuple[bytes, bytes]:
    _, _, salt, digest = name.split("|", 3)
    return base64.b64decode(salt), base64.b64decode(digest)


def _line_key(line: str) -> tuple[list[str], paramiko.PKey | None]:
    """Return (host names, key) of one entry line; key None for a type paramiko cannot use. Raise
    ValueError if the line is not an entry at all."""
    fields = line.split()
    if len(fields) < 3:
        raise ValueError("expected: names key-type base64-key")
    names, key_type, blob = fields[0].split(","), fields[1], fields[2]
    for name in names:
        if name.startswith("|1|"):
            _hashed(name)
    try:
        return names, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
    except UnknownKeyType:  # e.g. a security-key type: it can never match ours
        return names, None


def parse_known_hosts(text: str, source: str) -> KnownHosts:
    """Return the KnownHosts in ``text``; raise LocalFileError naming ``source`` and the line."""
    known = KnownHosts()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
        try:
            if marker not in ("", "@revoked", "@cert-authority"):
                raise ValueError(f"unknown marker {marker!r}")
            names, key = _line_key(line)
        except (ValueError, binascii.Error, paramiko.SSHException):
            raise LocalFileError(f"{source} line {number}: not a valid known_hosts entry") from None
        if key is None or marker == "@cert-authority":
            continue
        if marker == "@revoked":
            known.revoked.add((key.get_name(), key.get_base64()))
        else:
            known.add(names, key, number)
    return known


def load_known_hosts(path: Path) -> KnownHosts:
    """Return the KnownHosts in ``path``; raise LocalFileError if missing, unsafe or damaged."""
    content = read_trusted(path, limit=64 << 20, follow=True)
    if content is None:
        raise LocalFileError(f"known_hosts {path} does not exist")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalFileError(f"known_hosts {path} is not UTF-8 text") from None
    digest = hashlib.sha256(content).digest()
    with _PARSED_LOCK:
        if digest in _PARSED:
            return _PARSED[digest]
    known = parse_known_hosts(text, f"known_hosts {path}")
    with _PARSED_LOCK:
        _PARSED.clear()  # the newest content only: a changed file is parsed again
        _PARSED[digest] = known
    return known
