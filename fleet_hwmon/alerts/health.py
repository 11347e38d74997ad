"""State alerts: GPU health transitions and a worker clock far from the coordinator's (pure logic).

Unlike the threshold alerts these follow a state, not a percent:

- ``gpu_health``: one event per transition of a GPU's ``health`` (``ok`` -> ``degraded`` is a
  warning, -> ``lost`` critical) and one RESOLVED event when it is ``ok`` again. A GPU seen for
  the first time counts as coming from ``ok``. ``value`` and ``threshold`` are ``None``.
- ``clock_offset``: one warning when a remote worker's clock is more than
  ``clock_offset_warning_s`` away from the coordinator's (``ResourceUtilization.clock_offset_s``),
  resolved once it is back under half of that; the message says by how many seconds.
``value`` and ``threshold`` are ``None`` (they are percent in threshold alerts).
"""

from __future__ import annotations

import uuid

from fleet_hwmon.alerts.rules import AlertSeverity, AlertState, HardwareAlert
from fleet_hwmon.sample import ResourceUtilization

_SEVERITY = {"degraded": AlertSeverity.WARNING, "lost": AlertSeverity.CRITICAL}


class StateAlerts:
    """``evaluate(sample)`` returns the GPU-health and clock-offset events the sample causes."""

    def __init__(self, clock_offset_warning_s: float = 60.0) -> None:
        self.clock_offset_warning_s = clock_offset_warning_s
        self._gpu_health: dict[tuple[str, str], str] = {}
        self._far_clocks: set[str] = set()

    def evaluate(self, sample: ResourceUtilization) -> list[HardwareAlert]:
        task_id = sample.task_ids[0] if sample.task_ids else None
        events = []
        for gpu in sample.gpus:
            if gpu.health is None:
                continue
            key = (sample.worker_id, gpu.uuid)
            before = self._gpu_health.get(key, "ok")
            self._gpu_health[key] = gpu.health
            if gpu.health == before:
                continue
            where = f"GPU {gpu.index} ({gpu.uuid}) on {sample.worker_id}"
            if gpu.health == "ok":
                events.append(_event(sample, "gpu_health", _SEVERITY.get(before, AlertSeverity.WARNING),
                                     AlertState.RESOLVED, None, None, task_id, f"{where} is healthy again"))
            else:
                reason = f": {gpu.health_reason}" if gpu.health_reason else ""
                events.append(_event(sample, "gpu_health", _SEVERITY.get(gpu.health, AlertSeverity.WARNING),
                                     AlertState.FIRING, None, None, task_id, f"{where} is {gpu.health}{reason}"))
        offset = sample.clock_offset_s
        if offset is not None:
            limit = self.clock_offset_warning_s
            worker = sample.worker_id
            if abs(offset) > limit and worker not in self._far_clocks:
                self._far_clocks.add(worker)
                side = "ahead of" if offset > 0 else "behind"
                events.append(_event(sample, "clock_offset", AlertSeverity.WARNING, AlertState.FIRING,
                                     None, None, task_id,
                                     f"the clock of {worker} is {abs(offset):.0f} s {side} the coordinator's"))
            elif abs(offset) < limit / 2 and worker in self._far_clocks:
                self._far_clocks.discard(worker)
                events.append(_event(sample, "clock_offset", AlertSeverity.WARNING, AlertState.RESOLVED,
                                     None, None, task_id,
                                     f"the clock of {worker} is within {abs(offset):.0f} s of the coordinator's"))
        return events


def _event(sample: ResourceUtilization, resource: str, severity: AlertSeverity, state: AlertState,
           value: None, threshold: None, task_id: str | None, message: str) -> HardwareAlert:
    return HardwareAlert(uuid.uuid4().hex, sample.worker_id, resource, severity, state, value, threshold,
                         sample.timestamp, task_id, message)
