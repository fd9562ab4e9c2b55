"""Actions: what keysyncd does, each as load -> decide -> act -> commit.

What lives here: init and adopt, rotate, sync, verify, the drift checks and the read-only
views (status, plan), and the job recipes the command line and the daemon both run. Each
action loads the state, asks core for a decision (a plan value), carries it out through IO,
and commits once: report, then state, then metrics.

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.io``, ``keysyncd.errors``.
Never: ``keysyncd.commands``.
"""
