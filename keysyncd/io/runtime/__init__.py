"""IO of the running process: the local watch, systemd notify, child processes and hooks,
Prometheus metrics and their listener, and the daemon's self-description.

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.errors``, ``keysyncd.io.local``
and other modules of ``keysyncd.io.runtime``. Never: ``keysyncd.io.remote`` (nodes are
reached only by actions), ``keysyncd.actions`` or ``keysyncd.commands``.
"""
