"""Commands: keysyncd's face. The command line, the daemon, and how results are shown.

What lives here: the command line (``cli``: entry point and error handling; ``parser``: the
grammar and help; ``exits``: the exit-code table; ``output``: stdout, stderr and --json;
one module per group of commands, imported only when one of them runs: ``check``, ``views``,
``reports``, ``acting``, ``docs`` for completion and the man page), the daemon's lifecycle
(signals, systemd notify, reload, graceful stop), the APScheduler wiring (it only wires: jobs
hand work to the daemon's queue), rendering, logging setup. Only this package prints.

May import every other layer. Nothing outside this package imports it.
"""
