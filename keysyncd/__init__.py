"""keysyncd: keep keystone-style key repositories in step across a fleet."""

__version__ = "0.1.0"
