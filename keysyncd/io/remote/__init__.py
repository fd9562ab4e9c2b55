"""IO on the nodes: SSH, SFTP, the fan-out over the fleet and each kind's phases, and the
preflight check. May import ``keysyncd.core``, ``.config``, ``.errors``,
``keysyncd.io.local``; never ``keysyncd.io.runtime``, ``keysyncd.actions`` or
``keysyncd.commands``."""
