"""The ``/metrics`` endpoint: prometheus_client's WSGI app over a :class:`FleetCollector`.

It always answers in the Prometheus text format (as client_golang's handler does unless
OpenMetrics is enabled), whatever the ``Accept`` header asks: Prometheus prefers OpenMetrics,
which prometheus_client encodes at more than twice the text format's cost per series, and our
metrics use nothing OpenMetrics adds (exemplars, created timestamps). A response is gzipped at
level 1 when the client accepts gzip (Prometheus does): the library's own compression uses
level 9, which takes over ten times as long for a fifth fewer bytes (a 3.7 MB exposition:
111 ms and 156 kB against 8 ms and 194 kB).

Example::

    server = start_metrics_server(integration.metrics_snapshot, 9464)   # http://127.0.0.1:9464/metrics
    ...
    server.stop()
"""

from __future__ import annotations

import gzip
import socket
import threading
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted

from fleet_hwmon.metrics import checked_port
from fleet_hwmon.metrics.collector import FleetCollector
from fleet_hwmon.metrics.snapshot import FleetSnapshot


class MetricsServer:
    """A running endpoint; :meth:`stop` shuts it down, joins its thread and unregisters the
    collector from the registry (so the registry can serve another). ``port`` is the bound
    port (the one the system chose when 0 was asked)."""

    def __init__(self, server, thread: threading.Thread, registry: CollectorRegistry,
                 collector: FleetCollector) -> None:
        self._server = server
        self._thread = thread
        self.registry = registry
        self.collector = collector
        self.addr, self.port = server.server_address[:2]
        self._stopped = False

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()  # releases the port (shutdown alone keeps it bound)
        self._thread.join(timeout=10)
        self.registry.unregister(self.collector)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - one line per scrape is noise
        pass


def text_format_app(registry: CollectorRegistry) -> Callable:
    """A WSGI app serving ``registry`` in the Prometheus text format (version 0.0.4), gzipped at
    level 1 when the request accepts gzip. prometheus_client encodes and answers (its
    ``make_wsgi_app``, ``name[]`` filters included); this only hides the ``Accept`` header from
    it and compresses its answer."""
    app = make_wsgi_app(registry, disable_compression=True)

    def serve(environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ = {key: value for key, value in environ.items() if key != "HTTP_ACCEPT"}
        if not gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            return app(environ, start_response)
        answer: list = []
        body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.extend((status, headers))))
        status, headers = answer
        if status.startswith("200"):
            body = gzip.compress(body, compresslevel=1)
            headers = [*headers, ("Content-Encoding", "gzip")]
        start_response(status, headers)
        return [body]

    return serve


def _serve(app: Callable, addr: str, port: int) -> tuple[ThreadingWSGIServer, threading.Thread]:
    class Server(ThreadingWSGIServer):
        # IPv4 or IPv6 as the address is; "" is every IPv4 interface (the socket module's
        # convention), which getaddrinfo cannot resolve.
        address_family = socket.AF_INET if addr == "" else socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(addr, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="fleet-hwmon-metrics", daemon=True)
    thread.start()
    return server, thread


def start_metrics_server(source: Callable[[], FleetSnapshot], port: int, addr: str = "127.0.0.1", *,
                         registry: CollectorRegistry | None = None) -> MetricsServer:
    """Serve ``source``'s snapshots in the Prometheus text format at ``http://addr:port/metrics``
    (any path answers the same; see :func:`text_format_app`) on a daemon thread.
    ``registry``: where the collector is registered (default: a new one serving only the
    fleet's metrics; pass ``prometheus_client.REGISTRY`` to serve the process's default
    metrics too). ``addr`` is 127.0.0.1 by default: bind another address
    only where the scraper needs it (``""`` or ``"0.0.0.0"``: every IPv4 interface, ``"::"``:
    every interface where the system serves IPv4 on IPv6 sockets).

    Raises ``ValueError`` for a port outside 0-65535, ``OSError`` naming the address when the
    port cannot be bound (in use, say), ``ValueError`` when the registry already holds these
    metrics (another server of the same registry still runs).
    """
    checked_port(port)
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    collector = FleetCollector(source)
    registry.register(collector)
    try:
        server, thread = _serve(text_format_app(registry), addr, port)
    except OSError as err:
        registry.unregister(collector)
        named = OSError(f"cannot serve metrics on {addr}:{port}: {err.strerror or err}")
        named.errno = err.errno
        raise named from err
    except BaseException:
        registry.unregister(collector)
        raise
    return MetricsServer(server, thread, registry, collector)
