"""IO: everything that touches the world, and makes no decisions. ``local`` (the controller's
disk), ``remote`` (the nodes), ``runtime`` (the running process): ``local`` imports neither
of the others, which never import each other. May import ``keysyncd.core``, ``.config``,
``.errors``; never ``keysyncd.actions`` or ``keysyncd.commands``."""
