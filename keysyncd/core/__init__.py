"""Core: the pure model and every decision keysyncd makes (key sets and kinds, keystone's view,
node plans, rotation policy, the journal and its transitions, reports, words, cron, times).
May import: the standard library's pure modules, ``keysyncd.errors``, other core modules and
libraries that compute (cryptography, APScheduler's cron trigger). Never: the file system,
sockets, subprocesses, threads, the clock, or any other keysyncd layer. Time is passed in.
"""
