"""Alerts: threshold rules and state machine (pure), and the callback dispatcher (a thread)."""

from fleet_hwmon.alerts.dispatch import CallbackDispatcher
from fleet_hwmon.alerts.rules import (
    DEFAULT_THRESHOLDS,
    AlertSeverity,
    AlertState,
    AlertTracker,
    HardwareAlert,
    Threshold,
    parse_thresholds,
)

__all__ = ["DEFAULT_THRESHOLDS", "AlertSeverity", "AlertState", "AlertTracker", "CallbackDispatcher",
           "HardwareAlert", "Threshold", "parse_thresholds"]
