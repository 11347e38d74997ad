"""A fixed load for Dask workers that all measure the same shared host.

Tests that need placement give each worker's plugin this extra source
(``HardwareMetricsPlugin(extra_source="tests.fakes.fixed_load:quiet_host")`` or the workers'
``$FLEET_HWMON_EXTRA_SOURCE``): the host's CPU and memory figures are replaced by a quiet 10 %
and 30 %, labelled simulated, so what other processes do on the machine never decides a test.
Everything else in the sample (memory total, disk, network, task ids) stays measured.
"""

from __future__ import annotations

from typing import Any

import psutil

QUIET_CPU_PERCENT = 10.0
QUIET_MEMORY_PERCENT = 30.0
ENV_VALUE = "tests.fakes.fixed_load:quiet_host"


class FixedLoadSource:
    """CPU and memory at fixed percentages of the host's real memory total."""

    name = "fixed-load"

    def __init__(self, cpu_percent: float = QUIET_CPU_PERCENT, memory_percent: float = QUIET_MEMORY_PERCENT) -> None:
        self.cpu_percent = cpu_percent
        self.memory_percent = memory_percent

    def read(self, now_s: float) -> dict[str, Any]:
        total = psutil.virtual_memory().total
        used = int(total * self.memory_percent / 100.0)
        return {"cpu_percent": self.cpu_percent, "memory_percent": self.memory_percent,
                "memory_total_bytes": total, "memory_used_bytes": used, "memory_available_bytes": total - used,
                "simulated_fields": ("cpu_percent", "memory_percent", "memory_used_bytes",
                                     "memory_available_bytes")}


def quiet_host(worker_id: str) -> FixedLoadSource:
    return FixedLoadSource()
