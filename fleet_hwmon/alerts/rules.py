"""Threshold rules and the alert state machine: pure logic, no threads, no I/O.

Per (worker, resource) an alert is either off, warning or critical. It fires once when a value
first crosses the warning (or critical) threshold, escalates once from warning to critical, and
resolves only when the value falls ``margin_percent`` below the warning threshold, so a value
hovering on the line does not flood. An unknown value (``None``) changes nothing.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Mapping

from fleet_hwmon.sample import RESOURCES, ResourceUtilization


class AlertSeverity(StrEnum):
    """String enum: ``alert.severity == "critical"`` holds and ``alert.severity.upper()`` works."""

    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class AlertResource(StrEnum):
    """What an alert is about; compares equal to its plain name (``"cpu"``)."""

    CPU = "cpu"
    MEMORY = "memory"
    GPU = "gpu"
    GPU_MEMORY = "gpu_memory"
    DISK = "disk"
    GPU_HEALTH = "gpu_health"  # state alerts (fleet_hwmon.alerts.health): no percent
    CLOCK_OFFSET = "clock_offset"


@dataclass(frozen=True, slots=True)
class HardwareAlert:
    """One alert event. ``value`` and ``threshold`` are percent (0-100) of ``resource``
    (``cpu``, ``memory``, ``gpu``, ``gpu_memory``, ``disk``); ``task_id`` is a task running on
    the worker at the time (the first, if several); a RESOLVED event repeats the severity it ends.
    ``severity``, ``state`` and ``resource`` are string enums (equal to ``"critical"``, ``"cpu"``...);
    ``resource_type`` is another name of ``resource``."""

    alert_id: str
    worker_id: str
    resource: AlertResource
    severity: AlertSeverity
    state: AlertState
    value: float | None
    threshold: float | None
    timestamp: datetime
    task_id: str | None
    message: str

    def __post_init__(self) -> None:  # plain names given ("cpu", "critical") become the enums
        for name, enum_cls in (("resource", AlertResource), ("severity", AlertSeverity), ("state", AlertState)):
            value = getattr(self, name)
            if type(value) is not enum_cls:
                object.__setattr__(self, name, enum_cls(value))

    @property
    def resource_type(self) -> AlertResource:
        return self.resource

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
    """Defaults merged with ``overrides``, percent 0-100. Keys: a resource (``cpu``, ``memory``,
    ``gpu``, ``gpu_memory``, ``disk``), the same with ``_percent`` (``cpu_percent``), or either
    with ``_warning`` / ``_critical`` for one level. Values: one number (the warning level; the
    critical level stays the default table's), a ``(warning, critical)`` pair, a dict
    ``{"warning": .., "critical": ..}`` (either may be left out), or a :class:`Threshold`;
    numeric strings count as numbers. Example: ``{"cpu": 85, "memory_percent": (80, 90)}``.

    Raises ``ValueError`` naming the key for an unknown resource, a value of another form, or
    a warning level above the critical one."""
    result = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        name = str(key)
        which = ""
        if name.endswith(("_warning", "_critical")):
            name, _, which = name.rpartition("_")
        resource = name.removesuffix("_percent")
        if resource not in RESOURCES:
            raise ValueError(f"alert threshold {key!r}: unknown resource; expected one of "
                             f"{', '.join(RESOURCES)} (optionally with _percent, _warning or _critical)")
        current = result[resource]
        levels = {"warning": current.warning_percent, "critical": current.critical_percent}
        if which:
            levels[which] = _percent(key, value)
        elif isinstance(value, Threshold):
            levels = {"warning": value.warning_percent, "critical": value.critical_percent}
        elif isinstance(value, Mapping):
            unknown = set(value) - {"warning", "critical"}
            if unknown:
                raise ValueError(f"alert threshold {key!r}: unknown level(s) {sorted(map(str, unknown))}; "
                                 "expected 'warning' and/or 'critical'")
            levels.update({level: _percent(key, v) for level, v in value.items()})
        elif isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError(f"alert threshold {key!r}: a pair is (warning, critical), got {value!r}")
            levels = {"warning": _percent(key, value[0]), "critical": _percent(key, value[1])}
        else:
            levels["warning"] = _percent(key, value)
        try:
            result[resource] = Threshold(levels["warning"], levels["critical"])
        except ValueError as err:
            raise ValueError(f"alert threshold {key!r}: {err}") from None
    return result


def _percent(key: Any, value: Any) -> float:
    """A threshold level from a number or numeric string; ``ValueError`` naming ``key`` otherwise."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            return number
    raise ValueError(f"alert threshold {key!r}: {value!r} is not a percent; give a number, a (warning, critical) "
                     "pair or {'warning': .., 'critical': ..}")


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
    return HardwareAlert(uuid.uuid4().hex, sample.worker_id, AlertResource(resource), severity, state, value, threshold,
                         sample.timestamp, task_id, message)
