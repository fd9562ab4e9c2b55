"""Config: the YAML file, validated into frozen values; every error names its path.
May import: ``keysyncd.core``, ``keysyncd.errors`` and PyYAML. Never IO beyond reading the
config file itself, and no other keysyncd layer.
"""

from keysyncd.config.load import load_config as load_config
from keysyncd.config.load import parse_config as parse_config
from keysyncd.config.model import DEFAULT_PATH as DEFAULT_PATH
from keysyncd.config.model import ClockConfig as ClockConfig
from keysyncd.config.model import Config as Config
from keysyncd.config.model import DriftConfig as DriftConfig
from keysyncd.config.model import Hooks as Hooks
from keysyncd.config.model import MetricsConfig as MetricsConfig
from keysyncd.config.model import NodeConfig as NodeConfig
from keysyncd.config.model import ReportsConfig as ReportsConfig
from keysyncd.config.model import RepositoryConfig as RepositoryConfig
from keysyncd.config.model import SshConfig as SshConfig
