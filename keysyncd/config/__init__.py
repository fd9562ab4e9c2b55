"""Config: the YAML file, validated into frozen values; every error names its path.

May import: ``keysyncd.core``, ``keysyncd.errors`` and PyYAML. Never IO beyond reading the
config file itself, and no other keysyncd layer.
"""

from keysyncd.config.load import load_config, parse_config
from keysyncd.config.model import (
    DEFAULT_PATH,
    ClockConfig,
    Config,
    DriftConfig,
    Hooks,
    MetricsConfig,
    NodeConfig,
    ReportsConfig,
    RepositoryConfig,
    SshConfig,
)

__all__ = [
    "DEFAULT_PATH",
    "ClockConfig",
    "Config",
    "DriftConfig",
    "Hooks",
    "MetricsConfig",
    "NodeConfig",
    "ReportsConfig",
    "RepositoryConfig",
    "SshConfig",
    "load_config",
    "parse_config",
]
