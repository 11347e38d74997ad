"""The earlier modules' names (``fleet_hwmon.compat``): each alias reads what its new name gives."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from hardware_utilization_monitor import HardwareUtilizationMonitor
from tests.test_coordinator_integration import FakeClock, MinimalCoordinator, SyncScheduler
from tests.test_hardware_capability_detector import FakePsutil, detector, rtx_3060

GIB = 1024**3
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


def full_sample(worker_id: str) -> ResourceUtilization:
    return ResourceUtilization(
        worker_id=worker_id, timestamp=T0, cpu_percent=40.0, memory_percent=25.0, memory_used_bytes=4 * GIB,
        memory_available_bytes=12 * GIB, memory_total_bytes=16 * GIB, swap_percent=None, disk_usage_percent=70.0,
        gpus=(GpuUtilization(index=0, uuid="GPU-a", name="A100", utilization_percent=55.0,
                             memory_used_bytes=20 * GIB, memory_total_bytes=80 * GIB),))


def test_monitor_earlier_names(db_path):
    monitor = HardwareUtilizationMonitor("old", db_path=db_path, interval_seconds=3600, sources=[],
                                         alert_thresholds={"cpu": (30, 90)})
    assert monitor.monitoring_active is False
    with monitor:
        assert monitor.monitoring_active is True
        monitor.record_sample(full_sample("old"))
        assert monitor.alerts == monitor.get_alerts() and [a.resource_type for a in monitor.alerts] == ["cpu"]
        assert monitor.historical_metrics == monitor.get_historical_metrics()
        assert full_sample("old") in monitor.historical_metrics
    assert monitor.monitoring_active is False


def test_worker_utilization_reads_as_the_earlier_dict(db_path):
    with CoordinatorHardwareMonitoringIntegration(MinimalCoordinator(SyncScheduler), db_path=db_path,
                                                  clock=FakeClock()) as integration:
        integration.update_worker_utilization("w1", full_sample("w1"))
        entry = integration.get_worker_utilization("w1")
        assert dict(entry) == {
            "cpu_percent": 40.0, "memory_percent": 25.0, "memory_used_gb": 4.0, "memory_available_gb": 12.0,
            "swap_percent": None, "disk_percent": 70.0,
            "gpu_utilization": [{"id": 0, "load": 55.0, "memory_percent": 25.0}],
            "timestamp": "2026-03-01T10:00:00+00:00", "updated": "2026-03-01T10:00:00+00:00"}
        assert entry.cpu_percent == 40.0 and entry.sample.timestamp == T0 and entry == entry.sample
        everyone = integration.get_worker_utilization()
        assert everyone["w1"]["cpu_percent"] == 40.0 and everyone["w2"] is None


def test_constructor_takes_worker_monitors_and_a_hardware_detector(tmp_path, db_path):
    coordinator = MinimalCoordinator(SyncScheduler)
    coordinator.workers["here"] = {"status": "active", "local": True}  # capabilities to be detected
    given = HardwareUtilizationMonitor("w1", db_path=db_path, interval_seconds=3600, push_only=True)
    probe = detector(tmp_path, gpus=[rtx_3060()], worker_id="here", psutil_module=FakePsutil(total=32 * GIB))
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock(),
                                                           worker_monitors={"w1": given}, hardware_detector=probe)
    with integration:
        assert integration.worker_monitors["w1"] is given and given.monitoring_active
        integration.update_worker_utilization("w1", full_sample("w1"))
        assert given.get_current_metrics().cpu_percent == 40.0
        assert integration.scheduler.worker_state("w1")["stale"] is None  # the given monitor feeds the scheduler
        assert "gpu" in coordinator.workers["here"]["capabilities"]["hardware"]
        assert "3060" in coordinator.workers["here"]["capabilities"]["gpu"]["name"]
    assert not given.monitoring_active


def test_reports_narrowed_to_a_worker_or_task_and_the_earlier_export_keys(tmp_path, db_path):
    with CoordinatorHardwareMonitoringIntegration(MinimalCoordinator(SyncScheduler), db_path=db_path,
                                                  clock=FakeClock()) as integration:
        for worker_id, task_id in (("w1", "t-one"), ("w2", "t-two")):
            integration.start_task_monitoring(task_id, worker_id, "unit")
            integration.update_worker_utilization(worker_id, full_sample(worker_id))
            integration.stop_task_monitoring(task_id, worker_id)
        for monitor in integration.worker_monitors.values():
            monitor._store.flush()
        whole = integration.generate_resource_report()
        assert sorted(w["worker_id"] for w in whole["workers"]) == ["w1", "w2"] and "filter" not in whole
        one = integration.generate_resource_report(worker_id="w1")
        assert [w["worker_id"] for w in one["workers"]] == ["w1"]
        assert [t["task_id"] for t in one["tasks"]["rows"]] == ["t-one"]
        assert one["filter"] == {"worker_id": "w1", "task_id": None}
        by_task = integration.generate_resource_report(task_id="t-two")
        assert [t["task_id"] for t in by_task["tasks"]["rows"]] == ["t-two"] and len(by_task["workers"]) == 2
        html = integration.generate_html_report(str(tmp_path / "w1.html"), worker_id="w1").read_text()
        assert "t-one" in html and "t-two" not in html
        exported = json.loads(integration.export_json(str(tmp_path / "report.json")).read_text())
    assert exported["worker_tasks"] == {"w1": ["t-one"], "w2": ["t-two"]}
    assert exported["task_details"]["t-one"]["worker_id"] == "w1"
    assert exported["timestamp"] == exported["generated_at"] and "workers" in exported and "format" in exported
