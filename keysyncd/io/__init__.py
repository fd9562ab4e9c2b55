"""IO: everything that touches the world. Disk, SSH, state and report files, metrics, hooks.

What lives here: the local key directory, atomic writes and trust checks (StrictModes), the
state journal's load and save, the lock, the report store and its hash chain, Prometheus
exposition, the SFTP transport and the fan-out over the fleet, hook processes, the local
watch, systemd notify, the daemon's self-description, and the preflight check.

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.errors`` and other IO
modules. Never: ``keysyncd.actions`` or ``keysyncd.commands``. It makes no decisions: what
to write comes from core values it is handed.
"""
