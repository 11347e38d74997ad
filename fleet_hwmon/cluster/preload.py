"""Start the hardware metrics plugin on a Dask worker from the command line::

    dask worker tcp://SCHEDULER:8786 --preload fleet_hwmon.cluster.preload \\
        --hwmon-interval 1.0 --hwmon-level standard

(``--hwmon-*`` options are optional.) The plugin then runs from the worker's start, before
any client registers it; a coordinator started with ``register_plugin=False`` relies on this.
"""

from __future__ import annotations

from typing import Any

import click

from fleet_hwmon.cluster.plugin import HardwareMetricsPlugin
from fleet_hwmon.levels import MonitoringLevel


@click.command()
@click.option("--hwmon-interval", type=float, default=1.0, show_default=True,
              help="seconds between samples of this worker's host")
@click.option("--hwmon-level", type=click.Choice([lv.value for lv in MonitoringLevel]), default="standard",
              show_default=True, help="fleet-hwmon monitoring level")
@click.option("--hwmon-no-gpu", is_flag=True, default=False, help="do not read NVIDIA GPUs")
async def dask_setup(worker: Any, hwmon_interval: float, hwmon_level: str, hwmon_no_gpu: bool) -> None:
    """Add :class:`HardwareMetricsPlugin` to ``worker`` (called by Dask's preload machinery)."""
    await worker.plugin_add(HardwareMetricsPlugin(hwmon_interval, hwmon_level, enable_gpu=not hwmon_no_gpu))
