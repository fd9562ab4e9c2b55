"""IO: everything that touches the world, in three rooms that show its layers.

- ``keysyncd.io.local``: the controller's disk (key directory, state journal, lock, reports,
  trust checks);
- ``keysyncd.io.remote``: the nodes (SSH, SFTP, failure classification, fan-out, phases);
- ``keysyncd.io.runtime``: the running process (watch, notify, children, hooks, metrics).

``local`` imports neither of the others; ``remote`` and ``runtime`` import ``local`` and
never each other. May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.errors``.
Never: ``keysyncd.actions`` or ``keysyncd.commands``. It makes no decisions: what to write
comes from core values it is handed.
"""
