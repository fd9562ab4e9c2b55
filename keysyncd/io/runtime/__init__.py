"""IO of the running process: watch, notify, children and hooks, metrics. May import core,
config, errors, ``keysyncd.io.local``; never ``keysyncd.io.remote`` (only actions reach nodes),
actions or commands."""
