"""Prometheus exposition of the fleet: a collector reading snapshots at scrape time, and its
HTTP endpoint. Needs the ``metrics`` extra (``pip install 'fleet-hwmon[metrics]'``) for the
collector and the server; the snapshot and tally modules need nothing beyond the package."""

from fleet_hwmon.metrics.catalogue import METRICS, MetricSpec, exposed_names, markdown_list
from fleet_hwmon.metrics.snapshot import FleetSnapshot, WorkerState, fleet_snapshot, store_counters
from fleet_hwmon.metrics.tally import BucketCounts, TaskTally

__all__ = ["METRICS", "BucketCounts", "FleetSnapshot", "MetricSpec", "TaskTally", "WorkerState",
           "exposed_names", "fleet_snapshot", "markdown_list", "start_metrics_server", "store_counters"]


def start_metrics_server(*args, **kwargs):
    """See :func:`fleet_hwmon.metrics.server.start_metrics_server`; raises ``ImportError`` with
    the install command when prometheus_client is missing."""
    try:
        from fleet_hwmon.metrics.server import start_metrics_server as start
    except ImportError as err:
        raise ImportError("the metrics endpoint needs prometheus_client: pip install 'fleet-hwmon[metrics]'") \
            from err
    return start(*args, **kwargs)
