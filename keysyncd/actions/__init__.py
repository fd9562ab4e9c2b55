"""Actions: what keysyncd does (init, adopt, rotate, sync, verify, drift, the read-only
views, the job recipes), each as load -> decide -> act -> commit (report, state, metrics).

May import: ``keysyncd.core``, ``keysyncd.config``, ``keysyncd.io``, ``keysyncd.errors``; never
``keysyncd.commands``.
"""
