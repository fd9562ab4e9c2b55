"""The JWS part of the read-only shell (``readonly``): the store checked, every node verified
and, with ``on_remote_drift: repair``, brought back by a converge."""

from __future__ import annotations

from functools import partial

from keysyncd.actions import readonly
from keysyncd.actions.context import ActionResult, Run, write_ahead
from keysyncd.actions.jws import Options, converge
from keysyncd.actions.jwsload import Connections, JwsFleetExpect, Keys, expect, load, store_of
from keysyncd.actions.readonly import Later, Only
from keysyncd.core.journal import RepositoryState
from keysyncd.core.vocabulary import Action
from keysyncd.io.local.state import load_state
from keysyncd.io.remote.jwsfleet import JwsFleet


class JwsReads:
    """Every node holds every public key and its own private key (``readonly.Kind``)."""

    words = ("key store", "nothing pushed")

    def found(self, run: Run) -> tuple[RepositoryState, tuple[str, ...], None]:
        state = load_state(run.config.state_dir, run.repository.name)
        return state, store_of(run).scan().problems, None

    def changed(
        self, run: Run, state: RepositoryState, keys: None, started: float, revalidated: bool
    ) -> ActionResult | None:
        """Nothing to push: a valid store is what the journal names (``jwsload.load``)."""
        if revalidated:
            write_ahead(run, state)
        return None

    def load(self, run: Run) -> tuple[RepositoryState, Keys, JwsFleetExpect]:
        keys = load(run)
        return keys.state, keys, expect(keys)

    def connect(self, run: Run, only: Only) -> Connections:
        return Connections(run, only)

    def repair(self, run: Run, fleet: JwsFleet, keys: Keys) -> Later:
        """Return a converge of every node, run once the check's connections are closed."""
        return lambda: converge(run, Options(), Action.DRIFT)


# the JWS kind's drift flows: the shell's, with its part
check_store = partial(readonly.check_local, kind=JwsReads())
check_nodes = partial(readonly.check_fleet, kind=JwsReads())
