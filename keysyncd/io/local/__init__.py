"""IO on the controller's own disk: keys, trust checks, state, lock, reports, JWS store.
May import core, config, errors; never ``keysyncd.io.remote``, ``keysyncd.io.runtime``, the
SSH library, actions or commands."""
