"""GPU health as state, through the fake NVML with exact inputs: a GPU lost after 10 good samples
and back, XID events, ECC errors, retired pages, throttle reasons, per-process figures unknown."""

from __future__ import annotations

import logging

import pytest

from fleet_hwmon.alerts import AlertSeverity, AlertState
from fleet_hwmon.sampling.gpu_health import GpuHealth, throttle_names
from fleet_hwmon.sampling.host import GpuSource
from fleet_hwmon.sampling.nvml import NvmlGateway
from hardware_capability_detector import HardwareCapabilityDetector, HardwareType
from hardware_utilization_monitor import HardwareUtilizationMonitor
from tests.fakes.nvml import (
    GIB,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_UNKNOWN,
    THROTTLE_HW_THERMAL,
    THROTTLE_SW_POWER_CAP,
    FakeProcess,
    make_fake_nvml,
    rtx_3060,
    rtx_4090,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def device_calls(fake, names=("nvmlDeviceGetMemoryInfo", "nvmlDeviceGetHandleByUUID")) -> int:
    return sum(fake.calls[n] for n in names)


@pytest.mark.parametrize("error", [NVML_ERROR_GPU_IS_LOST, NVML_ERROR_UNKNOWN])
def test_a_gpu_lost_after_ten_good_samples_is_reprobed_with_backoff_and_comes_back(error):
    gpu0, gpu1 = rtx_3060(utilization_percent=30, memory_used_bytes=GIB), rtx_4090(utilization_percent=70)
    fake = make_fake_nvml([gpu0, gpu1])
    clock = Clock()
    gateway = NvmlGateway(module=fake, clock=clock, lost_backoff_s=(5.0, 300.0))
    monitor = HardwareUtilizationMonitor("gpu-box", interval_seconds=3600, sources=[GpuSource(gateway)],
                                         clock=clock)
    for _ in range(10):
        sample = monitor.sample_now()
        assert [g.health for g in sample.gpus] == ["ok", "ok"]
        clock.now += 1.0
    gpu0.lost = error
    by_second = {}
    for _ in range(80):  # t = 10 .. 89: lost at 10, probes at 15, 25, 45 fail, back at 50
        if clock.now == 50.0:
            gpu0.lost = None
        before = fake.calls["nvmlDeviceGetHandleByUUID"]
        sample = monitor.sample_now()
        by_second[clock.now] = (sample.gpus[0], fake.calls["nvmlDeviceGetHandleByUUID"] - before)
        # the other GPU keeps being read with real figures
        assert sample.gpus[1].utilization_percent == 70.0 and sample.gpus[1].health == "ok"
        clock.now += 1.0

    lost = by_second[10.0][0]
    expected_reason = {NVML_ERROR_GPU_IS_LOST: "GpuIsLost", NVML_ERROR_UNKNOWN: "Unknown"}[error]
    assert (lost.health, lost.health_reason) == ("lost", expected_reason)
    assert lost.utilization_percent is None and lost.memory_used_bytes is None  # unknown, not 0
    probes = [t for t, (_, calls) in sorted(by_second.items()) if calls]
    assert probes == [15.0, 25.0, 45.0, 85.0]  # 5, 10, 20, 40 s apart: not every tick
    assert all(by_second[t][0].health == "lost" for t in range(10, 85))
    back = by_second[85.0][0]
    assert (back.health, back.health_reason, back.utilization_percent) == ("ok", None, 30.0)

    health_alerts = [a for a in monitor.get_alerts() if a.resource == "gpu_health"]
    assert [(a.severity, a.state) for a in health_alerts] == [
        (AlertSeverity.CRITICAL, AlertState.FIRING), (AlertSeverity.CRITICAL, AlertState.RESOLVED)]
    assert gpu0.uuid in health_alerts[0].message and expected_reason in health_alerts[0].message


def test_a_vanished_gpu_is_lost_and_says_so_on_its_probe():
    gpu0 = rtx_3060()
    fake = make_fake_nvml([gpu0, rtx_4090()])
    clock = Clock()
    gateway = NvmlGateway(module=fake, clock=clock)
    gateway.read_gpus()
    gpu0.vanished = True
    assert gateway.read_gpus()[0].health_reason == "GpuIsLost"
    clock.now = 5.0
    first, second = gateway.read_gpus()
    assert (first.health, first.health_reason) == ("lost", "vanished")
    assert second.health == "ok"
    assert gateway.health(gpu0.uuid) == ("lost", "vanished")


def test_xid_ecc_retired_pages_and_throttling_are_read_and_degrade_the_gpu():
    gpu = rtx_3060(throttle_reasons=THROTTLE_HW_THERMAL | THROTTLE_SW_POWER_CAP,
                   retired_pages={0: [0x1000], 1: [0x2000, 0x3000]}, ecc_uncorrectable=2)
    fake = make_fake_nvml([gpu])
    gateway = NvmlGateway(module=fake)
    (first,) = gateway.read_gpus()
    assert (first.health, first.throttle_reasons, first.retired_pages, first.ecc_uncorrectable_errors,
            first.retired_pages_pending, first.xid_count) == ("ok", "thermal,power", 3, 2, False, 0)
    gpu.xid_events.append(79)  # fell off the bus, as the driver logs it
    (second,) = gateway.read_gpus()
    assert (second.health, second.health_reason, second.xid_count, second.last_xid) == ("degraded", "XID 79", 1, 79)
    gpu.ecc_uncorrectable = 5
    (third,) = gateway.read_gpus()
    assert (third.health, third.health_reason) == ("degraded", "uncorrectable ECC errors 2 -> 5")
    assert fake.calls["nvmlEventSetCreate"] == 1  # the event set is made once


def test_health_fields_are_unknown_where_nvml_does_not_offer_them():
    gpu = rtx_3060(not_supported={"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRetiredPages",
                                  "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceRegisterEvents",
                                  "nvmlDeviceGetCurrentClocksThrottleReasons"})
    gateway = NvmlGateway(module=make_fake_nvml([gpu]))
    for _ in range(3):
        (reading,) = gateway.read_gpus()
    assert (reading.health, reading.ecc_uncorrectable_errors, reading.retired_pages,
            reading.retired_pages_pending, reading.throttle_reasons) == ("ok", None, None, None, None)


def test_health_state_machine():
    health = GpuHealth(base_s=2.0, max_s=5.0)
    assert health.lose("GpuIsLost", 0.0) and not health.lose("GpuIsLost", 2.0)
    assert health.lose("GpuIsLost", 6.0) is False and health.next_probe_s == 11.0  # capped at 5 s
    health.xid(48)  # a double-bit ECC XID while lost: remembered, shown after the recovery
    health.answered()
    assert (health.state, health.reason) == ("degraded", "XID 48")
    assert throttle_names(0) == "" and throttle_names(None) is None and throttle_names(0x8) == "hw_slowdown"


def test_a_pending_page_retirement_degrades():
    gateway = NvmlGateway(module=make_fake_nvml([rtx_3060(retired_pages_pending=True)]))
    (reading,) = gateway.read_gpus()
    assert (reading.health, reading.health_reason) == ("degraded", "page retirement pending (reboot needed)")


def test_the_capability_detector_reports_a_lost_gpu_unhealthy(tmp_path):
    gpu0 = rtx_3060()
    gateway = NvmlGateway(module=make_fake_nvml([gpu0, rtx_4090()]))
    detector = HardwareCapabilityDetector(worker_id="w1", nvml=gateway, sys_root=tmp_path / "sys",
                                          dev_root=tmp_path / "dev", env={})
    gateway.read_gpus()
    gpu0.lost = NVML_ERROR_GPU_IS_LOST
    gateway.read_gpus()
    caps = detector.detect_all_capabilities()
    everything = caps.of_type(HardwareType.GPU, healthy_only=False)
    healthy = caps.of_type(HardwareType.GPU)
    assert [c.capabilities["uuid"] for c in healthy] == [rtx_4090().uuid]
    sick = next(c for c in everything if c.capabilities["uuid"] == gpu0.uuid)
    assert (sick.health, sick.capabilities["health_reason"]) == ("unhealthy", "GpuIsLost")
    assert detector.to_coordinator_capabilities(caps)["gpu"]["name"] == "NVIDIA GeForce RTX 4090"


# -- per-process figures ------------------------------------------------------------------------
def test_process_memory_is_unknown_when_the_compute_list_cannot_be_read(caplog):
    gpu = rtx_3060(errors={"nvmlDeviceGetComputeRunningProcesses": 4},  # NVML_ERROR_NO_PERMISSION
                   graphics_processes=[FakeProcess(100, 1 * GIB)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu]))
    with caplog.at_level(logging.WARNING):
        assert gateway.process_gpu_memory_bytes({100}) is None  # never the graphics list's 1 GiB alone
        assert gateway.process_gpu_memory_bytes({100}) is None
    assert gateway.process_figures_unknown_reason == f"compute process list of GPU {gpu.uuid} unreadable"
    assert len([r for r in caplog.records if "per-process GPU figures unknown" in r.getMessage()]) == 1


def test_process_figures_are_unknown_outside_the_host_pid_namespace(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nNSpid:\t48213\t7\n")
    gpu = rtx_3060(compute_processes=[FakeProcess(7, 2 * GIB)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu]), proc_self_status=str(status))
    assert gateway.process_gpu_memory_bytes({7}) is None
    assert gateway.process_gpu_utilization_percent({7}, {}) is None
    assert gateway.process_figures_unknown_reason == "PIDs outside this PID namespace"
    status.write_text("Name:\tpython\nNSpid:\t48213\n")
    host = NvmlGateway(module=make_fake_nvml([gpu]), proc_self_status=str(status))
    assert host.process_gpu_memory_bytes({7}) == {gpu.uuid: 2 * GIB}


def test_process_figures_are_unknown_while_a_gpu_is_lost():
    gpu0 = rtx_3060(compute_processes=[FakeProcess(7, 2 * GIB)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu0, rtx_4090()]))
    assert gateway.process_gpu_memory_bytes({7}) == {gpu0.uuid: 2 * GIB, rtx_4090().uuid: 0}
    gpu0.lost = NVML_ERROR_GPU_IS_LOST
    assert gateway.process_gpu_memory_bytes({7}) is None
    assert gateway.process_figures_unknown_reason == "a GPU is lost (GpuIsLost)"
    gateway.read_gpus()
    assert gateway.process_gpu_utilization_percent({7}, {}) is None
    assert gateway.process_figures_unknown_reason == f"GPU {gpu0.uuid} lost"


# -- flaky tests meet sick hardware ---------------------------------------------------------------
def test_an_xid_and_thermal_throttling_during_a_failed_task_are_recorded_and_reported(tmp_path):
    from datetime import timedelta

    from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
    from fleet_hwmon.coordinator.coordinator import Coordinator
    from fleet_hwmon.sample import ResourceUtilization, utc_now
    from fleet_hwmon.store import close_store, open_store

    gpu = rtx_3060(utilization_percent=90)
    gateway = NvmlGateway(module=make_fake_nvml([gpu]))
    coordinator = Coordinator(max_tasks_per_worker=2, seed=0)
    caps = {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 16}, "cpu": {"cores_effective": 8},
            "gpu": {"name": gpu.name, "cuda_compute": 8.6, "memory_gb": 12}}
    coordinator.register_worker("gpu-box", caps)
    db = str(tmp_path / "sick.duckdb")
    start = utc_now()

    def push(n: int) -> None:
        integration.update_worker_utilization("gpu-box", ResourceUtilization(
            worker_id="gpu-box", timestamp=start + timedelta(seconds=n), cpu_percent=20.0, gpus=gateway.read_gpus()))

    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db, detect_capabilities=False) as integration:
        push(0)
        integration.start_task_monitoring("flaky-or-sick", "gpu-box", "gpu-training")
        integration.start_task_monitoring("healthy-fail", "gpu-box", "gpu-training")
        usage_healthy = integration.stop_task_monitoring("healthy-fail", "gpu-box", success=False, error="assert")
        push(1)
        gpu.xid_events.append(79)
        gpu.throttle_reasons = THROTTLE_HW_THERMAL
        push(2)
        usage = integration.stop_task_monitoring("flaky-or-sick", "gpu-box", success=False, error="CUDA error")
        report = tmp_path / "report.html"
        integration.generate_html_report(str(report))
    assert usage.hardware_events == ("GPU 0 degraded: XID 79", "GPU 0 XID 79", "GPU 0 thermal throttling")
    assert usage.hardware_verdict == "failed on a degraded GPU"
    assert usage_healthy.hardware_events == () and usage_healthy.hardware_verdict is None
    store = open_store(db)
    try:
        rows = store.query_dicts("SELECT task_id, hardware_events FROM task_resource_usage ORDER BY task_id")
    finally:
        close_store(store)
    assert rows == [{"task_id": "flaky-or-sick", "hardware_events": list(usage.hardware_events)},
                    {"task_id": "healthy-fail", "hardware_events": []}]
    html = report.read_text()
    assert html.count("failed on a degraded GPU") == 1
    sick_row = html[html.index("flaky-or-sick"):]
    assert sick_row.index("failed on a degraded GPU") < sick_row.index("</tr>")
    assert "GPU 0 degraded" in html  # the worker's latest sample: the GPU is degraded now


def test_a_worker_whose_gpu_is_lost_takes_no_gpu_task_but_still_cpu_tasks(tmp_path):
    from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
    from fleet_hwmon.coordinator.coordinator import Coordinator
    from fleet_hwmon.sample import ResourceUtilization, utc_now

    sick_gpu, good_gpu = rtx_4090(utilization_percent=0), rtx_3060(utilization_percent=50)
    gateways = {"sick": NvmlGateway(module=make_fake_nvml([sick_gpu])),
                "good": NvmlGateway(module=make_fake_nvml([good_gpu]))}
    coordinator = Coordinator(max_tasks_per_worker=4, seed=0)
    for worker, gpu in (("sick", sick_gpu), ("good", good_gpu)):
        coordinator.register_worker(worker, {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 16},
                                             "cpu": {"cores_effective": 8},
                                             "gpu": {"name": gpu.name, "cuda_compute": 8.6, "memory_gb": 12}})
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "lost.duckdb"),
                                                  detect_capabilities=False) as integration:
        def push_all() -> None:
            for worker, gateway in gateways.items():
                integration.update_worker_utilization(worker, ResourceUtilization(
                    worker_id=worker, timestamp=utc_now(), cpu_percent=5.0 if worker == "sick" else 60.0,
                    memory_percent=10.0, gpus=gateway.read_gpus()))

        gpu_task = {"task_id": "g1", "type": "train", "priority": 1, "requirements": {"hardware": ["gpu"]}}
        cpu_task = {"task_id": "c1", "type": "unit", "priority": 1, "requirements": {"hardware": ["cpu"]}}
        push_all()
        assert integration.decide_task(gpu_task, ["sick", "good"], {}).chosen_worker_id == "sick"  # idle GPU
        sick_gpu.lost = NVML_ERROR_GPU_IS_LOST
        push_all()
        decision = integration.decide_task(dict(gpu_task, task_id="g2"), ["sick", "good"], {})
        assert decision.chosen_worker_id == "good"
        assert any(e.worker_id == "sick" and "lost" in e.reason for e in decision.exclusions)
        assert integration.decide_task(cpu_task, ["sick", "good"], {}).chosen_worker_id == "sick"


def test_the_monitor_report_marks_a_task_that_failed_while_its_gpu_was_lost(tmp_path):
    gpu = rtx_3060()
    clock = Clock()
    gateway = NvmlGateway(module=make_fake_nvml([gpu]), clock=clock)
    monitor = HardwareUtilizationMonitor("gpu-box", interval_seconds=3600, sources=[GpuSource(gateway)])
    monitor.start_task_monitoring("t-lost")
    gpu.lost = NVML_ERROR_GPU_IS_LOST
    usage = monitor.stop_task_monitoring("t-lost", success=False, error="CUDA error: unspecified launch failure")
    assert usage.hardware_events == ("GPU 0 lost: GpuIsLost",)
    html = monitor.generate_html_report(str(tmp_path / "summary.html")).read_text()
    assert "failed on a degraded GPU" in html and "GPU 0 lost: GpuIsLost" in html
