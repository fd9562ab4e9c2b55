"""IO on the controller's own disk: key directory, atomic writes, trust checks, state
journal, lock, reports, JWS key store. May import ``keysyncd.core``, ``.config``,
``.errors``; never ``keysyncd.io.remote``, ``keysyncd.io.runtime``, the SSH library,
``keysyncd.actions`` or ``keysyncd.commands``."""
