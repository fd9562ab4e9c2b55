"""IO on the controller's own disk: the key directory, atomic writes and trust checks
(StrictModes), the state journal's load and save, the lock, the report store and its hash
chain, the JWS key store, and the rules for directories ``init`` would take over.

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.errors`` and other modules of
``keysyncd.io.local``. Never: ``keysyncd.io.remote``, ``keysyncd.io.runtime``, the SSH library,
``keysyncd.actions`` or ``keysyncd.commands``.
"""
