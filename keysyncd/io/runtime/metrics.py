"""Prometheus metrics, computed at collection time from what is on disk (state journal,
``daemon.json``), so the textfile and the HTTP endpoint agree and survive restarts; and the
HTTP listener of ``metrics.listen``, bounded in threads, in time and in address: unlike
prometheus_client's server (a thread per connection, no timeout), at most MAX_CONNECTIONS
connections get a thread (the rest are closed at once) and one silent for IDLE_TIMEOUT
seconds is dropped. An empty host binds every address, IPv6 and IPv4."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from keysyncd.config import Config
from keysyncd.core.journal import Durations
from keysyncd.errors import KeysyncError
from keysyncd.io.local.fsutil import atomic_write
from keysyncd.io.local.state import load_state
from keysyncd.io.runtime.children import read_daemon_info
from keysyncd.io.runtime.metricfamilies import Families

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 16  # one scrape at a time is the norm; a few Prometheus servers at most
IDLE_TIMEOUT = 5.0  # seconds a connection may stay silent (a scrape sends at once)
# seconds a connection may last in all: a client trickling a byte now and then never stays
# silent for IDLE_TIMEOUT, and 16 of them would otherwise lock every scrape out
CONNECTION_DEADLINE = 2 * IDLE_TIMEOUT


class StateCollector(Collector):
    """Collects every keysyncd metric from ``config``'s state and reports."""

    def __init__(
        self, config: Callable[[], Config], clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config  # a callable, so a reloaded config is used at the next scrape
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (see the module docstring)."""
        now = self.clock()
        config = self.config()
        f = Families(config.clock.max_skew)
        durations: dict[str, Durations] = {}
        for repository in config.repositories:
            try:
                state = load_state(config.state_dir, repository.name)
            except KeysyncError:
                continue
            f.add_repository(repository.name, state, [n.name for n in config.nodes], now)
            f.add_rotation_due(repository, state, now)
            for action, histogram in state.durations.items():
                durations[action] = _merged(durations.get(action), histogram)
        f.add_durations(durations)
        yield from f.all()
        # reloads that kept the previous config (0 when no daemon runs; from its start)
        info = read_daemon_info(config.state_dir) or {}
        failures = info.get("config_reload_failures", 0)
        counter = CounterMetricFamily(
            "keysyncd_config_reload_failures",
            "Config reloads rejected (invalid or unsafe config; the previous one was kept)",
        )
        counter.add_metric([], failures if isinstance(failures, int) and failures >= 0 else 0)
        yield counter


def _merged(first: Durations | None, second: Durations) -> Durations:
    if first is None:
        return second
    buckets = tuple(a + b for a, b in zip(first.buckets, second.buckets, strict=True))
    return Durations(buckets, first.count + second.count, first.total + second.total)


def registry_for(config: Callable[[], Config]) -> CollectorRegistry:
    """Return a registry holding keysyncd's collector for the config ``config()`` returns."""
    registry = CollectorRegistry()
    registry.register(StateCollector(config))
    return registry


def write_metrics(config: Config) -> None:
    """Write the textfile (atomically, as prometheus_client does) if one is configured."""
    if config.metrics.textfile is None:
        return
    try:
        config.metrics.textfile.parent.mkdir(parents=True, exist_ok=True)
        # Our own atomic write (exclusive random temp name, then rename), not
        # write_to_textfile's predictable temp name in a directory others may write to.
        # Metrics hold no secrets, and node_exporter runs as another user: 0644.
        content = generate_latest(registry_for(lambda: config))
        atomic_write(config.metrics.textfile, content, mode=0o644)
    except OSError as error:
        log.warning("cannot write metrics to %s: %s", config.metrics.textfile, error)


def serve_metrics(config: Callable[[], Config]) -> Any:
    """Return the server of ``metrics.listen`` (None if unset); raise KeysyncError if unbound."""
    listen = config().metrics.listen
    if not listen:
        return None
    host, port = listen.rsplit(":", 1)
    try:  # an empty host is every address, as config.yaml says (see below)
        server = serve(host, int(port), registry_for(config))
    except OSError as error:
        raise KeysyncError(f"cannot serve metrics on {listen}: {error.strerror}") from None
    return server


class _QuietHandler(WSGIRequestHandler):
    """Serves one connection; its socket times out after IDLE_TIMEOUT of silence."""

    timeout = IDLE_TIMEOUT  # StreamRequestHandler.setup() applies it to the socket

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing per request: a scrape every 15 s would flood the journal."""


CONNECTION_THREAD = "keysyncd-metrics-connection"


class BoundedServer(ThreadingMixIn, WSGIServer):
    """A threading WSGI server with at most ``MAX_CONNECTIONS`` connections being served."""

    daemon_threads = True
    block_on_close = False  # shutdown() never waits for a client that stopped talking
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler]) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if address[0] == "" and socket.has_dualstack_ipv6():
            self.address_family = socket.AF_INET6
            address = ("::", address[1])
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind; an IPv6 wildcard also accepts IPv4 (every address, not only IPv6's)."""
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve ``request`` in a thread if a slot is free; else close it at once."""
        if not self.slots.acquire(blocking=False):
            log.debug("metrics: %d connections open, closing a new one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()  # the thread never started: its slot is free again
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection (in its thread), then free its slot."""
        threading.current_thread().name = CONNECTION_THREAD  # countable among the daemon's
        deadline = threading.Timer(CONNECTION_DEADLINE, _cut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed connection in one line (no traceback on stderr)."""
        log.debug("metrics: connection from %s failed", client_address, exc_info=True)


def _cut(request: socket.socket) -> None:
    """End a connection past CONNECTION_DEADLINE: its thread fails, ends, frees its slot."""
    with contextlib.suppress(OSError):  # already closed
        request.shutdown(socket.SHUT_RDWR)


def serve(host: str, port: int, registry: CollectorRegistry) -> BoundedServer:
    """Serve ``registry`` on ``host:port`` (empty host: every address) in a daemon thread;
    return the server (``shutdown()`` stops it). Raise OSError if it cannot be bound."""
    server = make_server(
        host, port, make_wsgi_app(registry), server_class=BoundedServer, handler_class=_QuietHandler
    )
    if not isinstance(server, BoundedServer):  # make_server returns server_class
        raise TypeError("make_server ignored server_class")
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server
