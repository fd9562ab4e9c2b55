"""Frozen value types for a key repository's content. No IO here. Index 0 is the staged key
(next primary), the highest is the primary, every other a secondary (decrypt only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

STAGED = "staged"
PRIMARY = "primary"
SECONDARY = "secondary"


def digest_of(material: bytes) -> str:
    """Return the SHA-256 hex digest of ``material``: the only form key content is shown in
    (and the form reports are chained by)."""
    import hashlib  # OpenSSL's load is 2.5 ms of a start: only when something is digested

    return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True)
class Key:
    """One key file: its index and material. ``repr`` never shows the material."""

    index: int
    material: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """Return the SHA-256 hex digest of the material."""
        return digest_of(self.material)


@dataclass(frozen=True)
class KeySet:
    """The keys of one repository state, by index."""

    keys: Mapping[int, Key]

    @classmethod
    def of(cls, keys: Iterable[Key]) -> KeySet:
        """Return a KeySet holding ``keys`` (later duplicates of an index win)."""
        return cls(MappingProxyType({key.index: key for key in keys}))

    @property
    def indices(self) -> tuple[int, ...]:
        """Return the indices, ascending."""
        return tuple(sorted(self.keys))

    @property
    def primary_index(self) -> int | None:
        """Return the primary's index (the highest above 0), or None if there is none."""
        return max((index for index in self.keys if index > 0), default=None)

    @property
    def staged(self) -> Key | None:
        """Return the staged key (index 0), or None."""
        return self.keys.get(0)

    @property
    def primary(self) -> Key | None:
        """Return the primary key, or None."""
        index = self.primary_index
        return None if index is None else self.keys[index]

    def role(self, index: int) -> str:
        """Return ``staged``, ``primary`` or ``secondary`` for ``index``."""
        if index == 0:
            return STAGED
        return PRIMARY if index == self.primary_index else SECONDARY

    def digests(self) -> dict[int, str]:
        """Return index -> SHA-256 digest, e.g. ``{0: "9f2c...", 1: "03ab..."}``."""
        return {index: key.digest for index, key in sorted(self.keys.items())}

    def problems(self) -> list[str]:
        """Return what makes this set unusable by keystone (empty list when valid)."""
        problems = []
        if 0 not in self.keys:
            problems.append("missing staged key 0")
        if self.primary_index is None:
            problems.append("missing primary key (no index above 0)")
        return problems

    def keystone_order(self) -> list[bytes]:
        """Return the materials as keystone loads them: primary first, then descending."""
        ordered = sorted((index for index in self.keys if index > 0), reverse=True)
        return [self.keys[index].material for index in ordered] + (
            [self.keys[0].material] if 0 in self.keys else []
        )
