"""Prometheus exposition of the fleet: a collector reading snapshots at scrape time, and its
HTTP endpoint. Needs the ``metrics`` extra (``pip install '.[metrics]'`` in the project's folder) for the
collector and the server; the snapshot and tally modules need nothing beyond the package."""

from fleet_hwmon.metrics.catalogue import METRICS, MetricSpec, exposed_names, markdown_list
from fleet_hwmon.metrics.snapshot import FleetSnapshot, WorkerState, fleet_snapshot, store_counters
from fleet_hwmon.metrics.tally import BucketCounts, TaskTally

__all__ = ["METRICS", "BucketCounts", "FleetSnapshot", "MetricSpec", "TaskTally", "WorkerState",
           "checked_port", "exposed_names", "fleet_snapshot", "markdown_list", "port_argument",
           "start_metrics_server", "store_counters"]


def checked_port(port: object) -> int:
    """``port`` when it is a TCP port the metrics server can bind: a whole number from 0 (any
    free port) to 65535; else ``ValueError`` saying so."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"the metrics port must be a whole number from 0 to 65535 (0: any free port), not {port!r}")
    return port


def port_argument(text: str) -> int:
    """``argparse`` type of a ``--metrics-port`` option (see :func:`checked_port`)."""
    import argparse

    try:
        port: object = int(text)
    except ValueError:
        port = text
    try:
        return checked_port(port)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def start_metrics_server(*args, **kwargs):
    """See :func:`fleet_hwmon.metrics.server.start_metrics_server`; raises ``ImportError`` with
    the install command when prometheus_client is missing."""
    try:
        from fleet_hwmon.metrics.server import start_metrics_server as start
    except ImportError as err:
        raise ImportError("the metrics endpoint needs prometheus_client: "
                          "pip install '.[metrics]' in the project's folder") from err
    return start(*args, **kwargs)
