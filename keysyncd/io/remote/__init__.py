"""IO on the nodes: SSH, SFTP, the fan-out over the fleet, each kind's phases, preflight.
May import core, config, errors, ``keysyncd.io.local``; never ``keysyncd.io.runtime``,
actions or commands."""
