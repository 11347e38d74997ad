"""Alerts: threshold rules and state machine, GPU-health and clock-offset state alerts (pure), and
the callback dispatcher (a thread)."""

from fleet_hwmon.alerts.dispatch import CallbackDispatcher
from fleet_hwmon.alerts.health import StateAlerts
from fleet_hwmon.alerts.rules import (
    DEFAULT_THRESHOLDS,
    AlertResource,
    AlertSeverity,
    AlertState,
    AlertTracker,
    HardwareAlert,
    Threshold,
    parse_thresholds,
)

__all__ = ["DEFAULT_THRESHOLDS", "AlertResource", "AlertSeverity", "AlertState", "AlertTracker",
           "CallbackDispatcher", "HardwareAlert", "StateAlerts", "Threshold", "parse_thresholds"]
