"""Core: the pure model and every decision keysyncd makes. No IO here.

What lives here: key sets and kinds, keystone's view of a directory, the node plan (what a
node needs), rotation and retirement policy, the state journal as a value and its pure
transitions, the report value, the vocabulary (node status, outcome), cron arithmetic and
timestamp formatting. Time is always passed in.

May import: the standard library's pure modules, ``keysyncd.errors`` and other core modules,
and libraries that compute (cryptography, APScheduler's cron trigger). Never: the file
system, sockets, subprocesses, threads, the clock, or any other keysyncd layer.
"""
