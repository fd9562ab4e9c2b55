"""Commands: keysyncd's face, and the only package that prints: the command line (one module
per group of commands, imported only when one runs), the daemon, rendering, logging.

May import every other layer. Nothing outside this package imports it.
"""
