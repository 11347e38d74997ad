"""Threshold rules and the alert state machine: pure logic, no threads, no I/O.

Per (worker, resource) an alert is either off, warning or critical. It fires once when a value
first crosses the warning (or critical) threshold, escalates once from warning to critical, and
resolves only when the value falls ``margin_percent`` below the warning threshold, so a value
hovering on the line does not flood. An unknown value (``None``) changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Mapping

from fleet_hwmon.sample import RESOURCES, ResourceUtilization


class AlertSeverity(Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class HardwareAlert:
    """One alert event. ``value`` and ``threshold`` are percent (0-100) of ``resource``
    (``cpu``, ``memory``, ``gpu``, ``gpu_memory``, ``disk``); ``task_id`` is a task running on
    the worker at the time (the first, if several); a RESOLVED event repeats the severity it ends."""

    alert_id: str
    worker_id: str
    resource: str
    severity: AlertSeverity
    state: AlertState
    value: float | None
    threshold: float | None
    timestamp: datetime
    task_id: str | None
    message: str

    def to_dict(self) -> dict:
        return {
            "alert_id": self.alert_id, "worker_id": self.worker_id, "resource": self.resource,
            "severity": self.severity.value, "state": self.state.value, "value": self.value,
            "threshold": self.threshold, "timestamp": self.timestamp.isoformat(),
            "task_id": self.task_id, "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Threshold:
    warning_percent: float
    critical_percent: float

    def __post_init__(self) -> None:
        if not 0 <= self.warning_percent <= self.critical_percent <= 100:
            raise ValueError(f"thresholds need 0 <= warning <= critical <= 100, got "
                             f"{self.warning_percent} / {self.critical_percent}")


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "cpu": Threshold(90.0, 95.0),
    "memory": Threshold(90.0, 95.0),
    "gpu": Threshold(95.0, 98.0),
    "gpu_memory": Threshold(95.0, 98.0),
    "disk": Threshold(95.0, 98.0),
}


def parse_thresholds(overrides: Mapping[str, object] | None) -> dict[str, Threshold]:
    """Defaults merged with ``overrides``: ``{"cpu": {"warning": 80, "critical": 90}}``,
    ``{"cpu": (80, 90)}``, a :class:`Threshold`, or flat ``{"cpu_warning": 80}`` keys.
    Raises ``ValueError`` for an unknown resource or an inconsistent pair."""
    result = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        resource, _, which = key.rpartition("_") if key.endswith(("_warning", "_critical")) else (key, "", "")
        if resource not in RESOURCES:
            raise ValueError(f"unknown alert resource {resource!r}; expected one of {', '.join(RESOURCES)}")
        current = result[resource]
        if which:
            pair = {"warning": current.warning_percent, "critical": current.critical_percent, which: float(value)}
            result[resource] = Threshold(pair["warning"], pair["critical"])
        elif isinstance(value, Threshold):
            result[resource] = value
        elif isinstance(value, Mapping):
            result[resource] = Threshold(float(value.get("warning", current.warning_percent)),
                                         float(value.get("critical", current.critical_percent)))
        else:
            warning, critical = value  # type: ignore[misc]
            result[resource] = Threshold(float(warning), float(critical))
    return result


class AlertTracker:
    """The alert state of every (worker, resource); ``evaluate`` returns the events a sample causes."""

    def __init__(self, thresholds: Mapping[str, Threshold] | None = None, margin_percent: float = 5.0) -> None:
        self.thresholds = dict(thresholds or DEFAULT_THRESHOLDS)
        self.margin_percent = margin_percent
        self._active: dict[tuple[str, str], HardwareAlert] = {}

    def active(self) -> list[HardwareAlert]:
        """Alerts currently firing, one per (worker, resource)."""
        return list(self._active.values())

    def evaluate(self, sample: ResourceUtilization) -> list[HardwareAlert]:
        events = []
        task_id = sample.task_ids[0] if sample.task_ids else None
        for resource, threshold in self.thresholds.items():
            value = sample.resource_percent(resource)
            if value is None:
                continue
            key = (sample.worker_id, resource)
            current = self._active.get(key)
            if value >= threshold.critical_percent:
                severity, limit = AlertSeverity.CRITICAL, threshold.critical_percent
            elif value >= threshold.warning_percent:
                severity, limit = AlertSeverity.WARNING, threshold.warning_percent
            else:
                severity, limit = None, None
            if severity is not None and (current is None or
                                         (current.severity is AlertSeverity.WARNING and
                                          severity is AlertSeverity.CRITICAL)):
                event = _event(sample, resource, severity, AlertState.FIRING, value, limit, task_id)
                self._active[key] = event
                events.append(event)
            elif current is not None and value < threshold.warning_percent - self.margin_percent:
                del self._active[key]
                events.append(_event(sample, resource, current.severity, AlertState.RESOLVED, value,
                                     current.threshold, task_id))
        return events


def _event(sample: ResourceUtilization, resource: str, severity: AlertSeverity, state: AlertState,
           value: float, threshold: float | None, task_id: str | None) -> HardwareAlert:
    if state is AlertState.FIRING:
        message = (f"{resource} at {value:.1f}% on {sample.worker_id} crossed the {severity.value} "
                   f"threshold of {threshold:.0f}%")
    else:
        message = f"{resource} back to {value:.1f}% on {sample.worker_id}; {severity.value} alert resolved"
    return HardwareAlert(uuid.uuid4().hex, sample.worker_id, resource, severity, state, value, threshold,
                         sample.timestamp, task_id, message)
