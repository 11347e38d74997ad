"""The multi-machine backend on Dask distributed (the optional ``cluster`` extra).

- :class:`HardwareMetricsPlugin` (``plugin``): a ``distributed.WorkerPlugin`` that samples the
  worker's own host with the product's sampler and publishes the latest sample, the worker's
  detected capabilities and its own process figures in the worker's heartbeat metrics.
- :class:`ClusterCoordinator` (``coordinator``): the reference coordinator with Dask as the
  transport and the executor: Dask workers are registered as they join and leave, their
  published samples are handed on (to ``integration.update_worker_utilization``), and each task
  runs on the worker the hardware-aware scheduler chose.
- ``preload``: ``dask worker tcp://HOST:8786 --preload fleet_hwmon.cluster.preload``.
- ``remote``: the functions that run on the workers.

``distributed`` is imported only when one of these names is used; without it
:func:`require_distributed` raises :class:`ClusterUnavailableError` saying what to install.

Example::

    from fleet_hwmon.cluster import ClusterCoordinator

    coordinator = ClusterCoordinator("tcp://10.0.0.5:8786")
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path="metrics.duckdb")
    integration.initialize()
    coordinator.register_sample_callback(integration.update_worker_utilization)
    coordinator.start()
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ClusterCoordinator",
    "ClusterUnavailableError",
    "HardwareMetricsPlugin",
    "require_distributed",
]

INSTALL_HINT = "pip install '.[cluster]' in the project's folder"

_LAZY = {
    "ClusterCoordinator": "fleet_hwmon.cluster.coordinator",
    "HardwareMetricsPlugin": "fleet_hwmon.cluster.plugin",
}


class ClusterUnavailableError(ImportError):
    """The cluster backend needs Dask distributed, which is not installed (or cannot be imported)."""


def require_distributed() -> Any:
    """Import and return ``distributed``; raise :class:`ClusterUnavailableError` with the install
    command when it is missing."""
    try:
        import distributed
    except ImportError as err:  # also `sys.modules["distributed"] = None`
        raise ClusterUnavailableError(
            f"the cluster backend needs Dask distributed, which could not be imported ({err}); "
            f"install it with: {INSTALL_HINT}") from err
    return distributed


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_distributed()
    return getattr(importlib.import_module(module), name)
