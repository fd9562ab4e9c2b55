"""Commands: keysyncd's face. The command line, the daemon, and how results are shown.

What lives here: argparse and exit codes (the only place that prints to the terminal), the
daemon's lifecycle (signals, systemd notify, reload, graceful stop), the APScheduler wiring
(it only wires: jobs hand work to the daemon's queue), rendering, logging setup.

May import every other layer. Nothing outside this package imports it.
"""
