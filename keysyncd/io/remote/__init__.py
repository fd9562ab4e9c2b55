"""IO on the nodes: SSH connections strictly checked against known_hosts, the SFTP session
and its pipelined wire, failure classification, the fan-out over the fleet, each kind's
fleet-wide phases, and the preflight check of every file an action relies on.

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.errors``, ``keysyncd.io.local``
and other modules of ``keysyncd.io.remote``. Never: ``keysyncd.io.runtime``,
``keysyncd.actions`` or ``keysyncd.commands``.
"""
