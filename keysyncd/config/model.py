"""The configuration as frozen values. Pure: ``keysyncd.config.load`` builds them from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from keysyncd.core.kinds import KINDS, KeyKind
from keysyncd.core.policy import Policy
from keysyncd.errors import UsageError

DEFAULT_PATH = "/etc/keysyncd/config.yaml"


@dataclass(frozen=True)
class Hooks:
    """Local commands run around a rotation, each an argv list (never a shell)."""

    before_rotate: tuple[tuple[str, ...], ...] = ()
    after_rotate: tuple[tuple[str, ...], ...] = ()
    on_failure: tuple[tuple[str, ...], ...] = ()
    timeout: float = 300.0


@dataclass(frozen=True)
class RepositoryConfig:
    """One key repository on the controller and its rotation policy."""

    name: str
    kind: str
    path: Path
    max_active_keys: int
    schedule: str
    timezone: str
    token_expiration: int
    allow_expired_window: int
    owner: int | str | None = None
    group: int | str | None = None
    hooks: Hooks = field(default_factory=Hooks)
    algorithm: str = "ES256"  # kind jws: keystone's [jwt_tokens] jws_algorithm
    private_path: Path | None = None  # kind jws: keystone's jws_private_key_repository
    public_path: Path | None = None  # kind jws: keystone's jws_public_key_repository

    @property
    def key_kind(self) -> KeyKind:
        """Return this repository's kind: its model and facts (``keysyncd.core.kinds``)."""
        return KINDS[self.kind]

    def policy(self) -> Policy:
        """Return this repository's rotation Policy (what retires a key is its kind's)."""
        return Policy(
            self.max_active_keys,
            self.token_expiration,
            self.allow_expired_window,
            self.key_kind.retire_by,
        )

    def jws_directories(self, base: Path | None = None) -> tuple[Path, Path]:
        """Return (private, public) directories of a ``jws`` repository on a node whose base
        directory is ``base`` (a node's own ``path``), else this repository's."""
        root = base or self.path
        if base is None:
            return self.private_path or root / "private", self.public_path or root / "public"
        return root / "private", root / "public"


@dataclass(frozen=True)
class SshConfig:
    """How keysyncd reaches nodes: SFTP over paramiko with strict host keys."""

    user: str
    identity_file: Path | None
    known_hosts: Path | None
    port: int = 22
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    concurrency: int = 32


@dataclass(frozen=True)
class NodeConfig:
    """One node of the fleet; ``path`` overrides the repository path there."""

    name: str
    host: str
    port: int
    path: Path | None = None


@dataclass(frozen=True)
class DriftConfig:
    """What to do about changes keysyncd did not make."""

    watch_local: bool = True
    on_local_change: str = "sync"
    verify_interval: int = 300
    on_remote_drift: str = "repair"


@dataclass(frozen=True)
class MetricsConfig:
    """Where Prometheus metrics go; both optional."""

    textfile: Path | None = None
    listen: str | None = None


@dataclass(frozen=True)
class ReportsConfig:
    """Report retention: the newest ``keep_count`` reports younger than ``keep_days``."""

    keep_count: int = 1000
    keep_days: int = 90


@dataclass(frozen=True)
class ClockConfig:
    """How far the controller's clock may be from the nodes' before keysyncd stops retiring
    and rotating (SPEC safety rule 10)."""

    max_skew: float = 300.0


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path
    state_dir: Path
    report_dir: Path
    repositories: tuple[RepositoryConfig, ...]
    ssh: SshConfig
    nodes: tuple[NodeConfig, ...] = ()
    drift: DriftConfig = field(default_factory=DriftConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)

    def repository(self, name: str) -> RepositoryConfig:
        """Return the repository called ``name``; raise UsageError if there is none."""
        for repository in self.repositories:
            if repository.name == name:
                return repository
        known = ", ".join(r.name for r in self.repositories)
        raise UsageError(f"no repository named {name!r} (configured: {known})")

    def node(self, name: str) -> NodeConfig:
        """Return the node called ``name``; raise UsageError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise UsageError(f"no node named {name!r} (configured: {known})")
