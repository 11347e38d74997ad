"""The in-memory history of a worker's monitor is bounded by time (the database is the history),
so a fleet of push-only workers holds bounded memory however long it runs."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import ResourceUtilization
from hardware_utilization_monitor import HardwareUtilizationMonitor

T0 = datetime.now(timezone.utc) - timedelta(hours=2)


def test_monitor_keeps_only_the_window_of_samples_in_memory(tmp_path):
    path = str(tmp_path / "m.duckdb")
    with HardwareUtilizationMonitor("w", path, push_only=True, history_s=60) as monitor:
        for i in range(300):
            monitor.record_sample(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i),
                                                      cpu_percent=float(i % 100)))
        held = monitor.get_historical_metrics()
        stored = len(monitor.get_metrics_from_db())
    assert [s.timestamp for s in held] == [T0 + timedelta(seconds=i) for i in range(239, 300)]
    assert stored == 300  # the database keeps every sample
    with pytest.raises(ValueError, match="history_s must be positive"):
        HardwareUtilizationMonitor("w", push_only=True, history_s=0)


def test_integration_bounds_every_workers_history_by_its_setting(tmp_path):
    coordinator = Coordinator()
    coordinator.register_worker("w1", {"hardware": ["cpu"], "memory": {"total_gb": 16}})
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "a.duckdb"),
                                                  detect_capabilities=False, worker_history_s=30) as integration:
        assert integration.worker_history_s == 30
        for i in range(100):
            integration.update_worker_utilization("w1", {"timestamp": (T0 + timedelta(seconds=i)).isoformat(),
                                                         "cpu_percent": 5.0})
        held = integration.worker_monitors["w1"].get_historical_metrics()
    assert len(held) == 31 and held[-1].timestamp == T0 + timedelta(seconds=99)
    default = inspect.signature(CoordinatorHardwareMonitoringIntegration).parameters["worker_history_s"].default
    assert default == 600.0  # ten minutes unless told otherwise


def test_a_pushed_record_is_left_as_the_caller_made_it(tmp_path):
    coordinator = Coordinator()
    coordinator.register_worker("w1", {"hardware": ["cpu"], "memory": {"total_gb": 16}})
    sent = ResourceUtilization(worker_id="w1", timestamp=T0, cpu_percent=5.0)
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "a.duckdb"),
                                                  detect_capabilities=False) as integration:
        integration.update_worker_utilization("w1", sent)
        integration.update_worker_utilization("w1", {"timestamp": (T0 + timedelta(seconds=1)).isoformat(),
                                                     "cpu_percent": 6.0})
        first, second = integration.worker_monitors["w1"].get_historical_metrics()
    assert (sent.monotonic_s, sent.clock_offset_s) == (None, None)  # the caller's record is not changed
    assert first is not sent and first.clock_offset_s is not None and first.monotonic_s is not None
    assert second.cpu_percent == 6.0 and second.clock_offset_s is not None and second.monotonic_s is not None
