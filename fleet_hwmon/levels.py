"""Monitoring levels: how often a worker is sampled and which metric groups each sample reads."""

from __future__ import annotations

from enum import Enum


class MonitoringLevel(Enum):
    """How much to collect. See ``default_interval_s`` and ``metric_groups`` for each level.

    ========== ========== ==========================================================================
    level      interval   metric groups
    ========== ========== ==========================================================================
    BASIC      10 s       cpu, memory
    STANDARD   5 s        cpu, load, memory (+ swap, container limits), disk, network, gpu
    DETAILED   2 s        STANDARD + per-CPU, per-disk, per-NIC, mounts, CPU temperature and
                          frequency, GPU temperature, power, fan and clocks
    INTENSIVE  0.5 s      DETAILED at the highest frequency
    ========== ========== ==========================================================================
    """

    BASIC = "basic"
    STANDARD = "standard"
    DETAILED = "detailed"
    INTENSIVE = "intensive"

    @property
    def default_interval_s(self) -> float:
        return _INTERVALS_S[self]

    @property
    def metric_groups(self) -> frozenset[str]:
        return _GROUPS[self]

    @classmethod
    def parse(cls, value: MonitoringLevel | str) -> MonitoringLevel:
        """``MonitoringLevel`` from an instance or a case-insensitive name; ``ValueError`` otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(level.value for level in cls)
            raise ValueError(f"unknown monitoring level {value!r}; expected one of: {names}") from None


_INTERVALS_S = {
    MonitoringLevel.BASIC: 10.0,
    MonitoringLevel.STANDARD: 5.0,
    MonitoringLevel.DETAILED: 2.0,
    MonitoringLevel.INTENSIVE: 0.5,
}

_BASIC = frozenset({"cpu", "memory"})
_STANDARD = _BASIC | {"load", "cgroup", "disk", "network", "gpu"}
_DETAILED = _STANDARD | {"per_cpu", "per_disk", "per_nic", "mounts", "cpu_detail", "gpu_detail"}

_GROUPS = {
    MonitoringLevel.BASIC: _BASIC,
    MonitoringLevel.STANDARD: _STANDARD,
    MonitoringLevel.DETAILED: _DETAILED,
    MonitoringLevel.INTENSIVE: _DETAILED,
}
