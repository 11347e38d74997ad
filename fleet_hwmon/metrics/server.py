"""The ``/metrics`` endpoint: prometheus_client's own HTTP server over a :class:`FleetCollector`.

Example::

    server = start_metrics_server(integration.metrics_snapshot, 9464)   # http://127.0.0.1:9464/metrics
    ...
    server.stop()
"""

from __future__ import annotations

import threading
from typing import Callable

from prometheus_client import CollectorRegistry, start_http_server

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


def start_metrics_server(source: Callable[[], FleetSnapshot], port: int, addr: str = "127.0.0.1", *,
                         registry: CollectorRegistry | None = None) -> MetricsServer:
    """Serve ``source``'s snapshots in the Prometheus text format at ``http://addr:port/metrics``
    on a daemon thread. ``registry``: where the collector is registered (default: a new one
    serving only the fleet's metrics; pass ``prometheus_client.REGISTRY`` to serve the
    process's default metrics too). ``addr`` is 127.0.0.1 by default: bind another address
    only where the scraper needs it.

    Raises ``OSError`` when the port cannot be bound, ``ValueError`` when the registry already
    holds these metrics (another server of the same registry still runs).
    """
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    # start_http_server returns (server, thread) since prometheus_client 0.20, hence the extra's floor
    collector = FleetCollector(source)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except BaseException:
        registry.unregister(collector)
        raise
    return MetricsServer(server, thread, registry, collector)
