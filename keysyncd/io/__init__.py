"""IO: everything that touches the world, and makes no decisions: ``local`` (the controller's
disk) imports neither ``remote`` (the nodes) nor ``runtime`` (the process), which never import
each other. May import core, config, errors; never actions or commands."""
