"""The demo's fleet on Dask (``--cluster local`` or ``--scheduler-address``).

Imported by ``run_coordinator_with_hardware_monitoring.py`` only when one of those options is
given, so the embedded demo never needs ``distributed``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("fleet_hwmon.demo")


def build_cluster_coordinator(args: argparse.Namespace) -> Any:
    """A :class:`ClusterCoordinator` for the demo's options: a new ``LocalCluster`` of
    ``--num-workers`` processes (``--cluster local``) or a client of ``--scheduler-address``.

    Raises ``ClusterUnavailableError`` (an ImportError) without the ``cluster`` extra and
    ``OSError`` when the scheduler cannot be reached.
    """
    from fleet_hwmon.cluster import require_distributed

    require_distributed()
    from fleet_hwmon.cluster.coordinator import ClusterCoordinator
    from fleet_hwmon.cluster.plugin import HardwareMetricsPlugin

    plugin = HardwareMetricsPlugin(args.update_interval, args.monitoring_level)
    options = {"plugin": plugin, "max_tasks_per_worker": args.max_tasks_per_worker, "seed": args.seed}
    # Dask logs every join, leave and close at INFO; the demo shows warnings only.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.scheduler_address:
        return ClusterCoordinator(args.scheduler_address, **options)
    # One Dask thread per task slot, so every task the coordinator starts really runs.
    return ClusterCoordinator.local(args.num_workers, cluster_kwargs={
        "threads_per_worker": args.max_tasks_per_worker, "silence_logs": logging.WARNING}, **options)


class ClusterFleet:
    """Stands where the embedded demo's ``WorkerSampling`` stands: samples come from the Dask
    workers' plugin, so ``start`` only connects and waits for ``--num-workers`` workers."""

    def __init__(self, coordinator: Any, integration: Any, args: argparse.Namespace) -> None:
        self._coordinator = coordinator
        self._integration = integration
        self._workers = args.num_workers
        self._timeout_s = min(60.0, args.duration)

    def start(self) -> None:
        self._coordinator.register_sample_callback(self._integration.update_worker_utilization)
        self._coordinator.connect()
        if not self._coordinator.wait_for_workers(self._workers, timeout_s=self._timeout_s):
            log.warning("only %d of %d Dask workers joined within %.0f s; going on with them",
                        len(self._coordinator.workers), self._workers, self._timeout_s)

    def push_all(self) -> None:
        """Fetch the workers' latest published samples now (the live view's last frame)."""
        self._coordinator.refresh()

    def stop(self) -> None:
        """Nothing to stop: the coordinator's ``stop`` ends the watching."""
