"""The NVML path on a real NVIDIA GPU, checked against ``nvidia-smi`` (the driver's own reading).

Skipped where NVML sees no GPU (CPU-only machines, CI). The load test also needs PyTorch built
with CUDA, to put a known amount of work and memory on the GPU.
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys

import duckdb
import pytest

from fleet_hwmon.execution import TaskSpec, run_task
from fleet_hwmon.sampling.nvml import NvmlGateway, NvmlStatus

GIB = 1024 ** 3
MIB = 1024 ** 2
LOAD_BYTES = 2 * GIB


_PROBE = NvmlGateway()
pytestmark = pytest.mark.skipif(
    not (_PROBE.available and shutil.which("nvidia-smi")),
    reason=f"needs an NVIDIA GPU and nvidia-smi ({_PROBE.reason or 'nvidia-smi not found'})")
# (only where a GPU is: elsewhere the module's reason, the missing GPU, is the one to show)
needs_torch_cuda = pytest.mark.skipif(_PROBE.available and importlib.util.find_spec("torch") is None,
                                      reason="needs PyTorch")

# A GPU task of known size: holds LOAD_BYTES on the first GPU and multiplies matrices for
# the given seconds; prints READY once the memory is held.
GPU_LOAD = f"""
import sys, time, torch
held = torch.empty({LOAD_BYTES}, dtype=torch.uint8, device="cuda")
a = torch.randn(8192, 8192, device="cuda")
print("READY", flush=True)
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(20):
        a = torch.tanh(a @ a)
    torch.cuda.synchronize()
"""


def _smi(*fields: str) -> list[dict[str, str]]:
    """One dict per GPU of ``nvidia-smi --query-gpu`` fields, values stripped, units off."""
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return [dict(zip(fields, (v.strip() for v in row))) for row in csv.reader(out.splitlines()) if row]


def test_devices_and_memory_match_nvidia_smi():
    gateway = NvmlGateway()
    smi = {row["uuid"]: row for row in _smi("uuid", "name", "memory.total", "pci.bus_id", "driver_version",
                                            "compute_cap")}
    info = gateway.device_info()
    assert gateway.status is NvmlStatus.OK
    assert sorted(d["uuid"] for d in info) == sorted(smi)
    for device in info:
        row = smi[device["uuid"]]
        assert device["name"] == row["name"]
        assert device["memory_total_bytes"] // MIB == int(row["memory.total"])
        assert device["pci_bus_id"].upper() == row["pci.bus_id"].upper()
        assert device["driver_version"] == row["driver_version"]
        assert "%d.%d" % device["compute_capability"] == row["compute_cap"]
        assert device["health"] == "ok"


def test_detailed_reading_is_in_physical_range_or_declared_unsupported():
    gateway = NvmlGateway()
    for gpu in gateway.read_gpus(detailed=True):
        if gpu.parent_uuid is not None:  # a MIG instance: memory only, checked through its GPU's
            continue
        unsupported = gateway.unsupported_fields(gpu.uuid)
        if gpu.mig_enabled:  # NVML has no utilization under MIG: unknown, never 0
            assert gpu.utilization_percent is None and gpu.unavailable_reason == "MIG"
        else:
            assert 0 <= gpu.utilization_percent <= 100
        assert 0 < gpu.memory_used_bytes < gpu.memory_total_bytes
        checks = {"temperature": (gpu.temperature_celsius, 5, 110), "power": (gpu.power_watts, 1, 2000),
                  "sm_clock": (gpu.sm_clock_mhz, 50, 5000),
                  "memory_clock": (gpu.memory_clock_mhz, 50, 20000)}
        for field, (value, low, high) in checks.items():
            if value is None:
                assert field in unsupported, f"{field} is None but NVML did not say NotSupported"
            else:
                assert low <= value <= high, f"{field}={value}"


def test_capability_detector_reports_the_gpus_nvidia_smi_sees(tmp_path):
    from hardware_capability_detector import HardwareCapabilityDetector

    detector = HardwareCapabilityDetector("gpu-worker", db_path=tmp_path / "caps.duckdb")
    try:
        caps = detector.to_coordinator_capabilities(detector.detect_all_capabilities())
    finally:
        detector.close()
    smi = {row["uuid"]: row for row in _smi("uuid", "name", "memory.total", "compute_cap")}
    assert "gpu" in caps["hardware"]
    assert sorted(g["uuid"] for g in caps["gpus"]) == sorted(smi)
    for gpu in caps["gpus"]:
        row = smi[gpu["uuid"]]
        assert gpu["name"] == row["name"]
        assert gpu["cuda_compute"] == float(row["compute_cap"])
        assert gpu["memory_gb"] == round(int(row["memory.total"]) * MIB / GIB, 2)


@needs_torch_cuda
def test_gpu_task_load_and_memory_reach_samples_task_usage_and_database(db_path):
    """A task holding 2 GiB and multiplying matrices: the monitor's samples, the task's usage and
    the stored rows show the load; the task's own GPU memory is known, or None with its reason."""
    from hardware_utilization_monitor import HardwareUtilizationMonitor

    gateway = NvmlGateway()
    first = gateway.read_gpus()[0]
    if first.mig_enabled:
        pytest.skip("the first GPU is split by MIG: its utilization is not NVML's to give")
    idle_used_bytes = first.memory_used_bytes
    with HardwareUtilizationMonitor("gpu-worker", db_path=db_path, interval_seconds=0.5,
                                    nvml=gateway) as monitor:
        monitor.start_task_monitoring("gpu-task", task_type="training")
        result = run_task(TaskSpec(command=(sys.executable, "-c", GPU_LOAD, "6"), timeout_s=120,
                                   env={"CUDA_VISIBLE_DEVICES": first.uuid}),
                          nvml=gateway, poll_interval_s=0.5)
        usage = monitor.stop_task_monitoring(
            "gpu-task", process_usage={"process_gpu_memory_peak_bytes": result.gpu_memory_peak_bytes})
    assert result.success, result.error
    assert usage.peak_gpu_utilization_percent >= 50
    assert usage.peak_gpu_memory_used_bytes >= idle_used_bytes + LOAD_BYTES
    if gateway.process_figures_unknown_reason is None:
        assert result.gpu_memory_peak_bytes >= LOAD_BYTES
    else:  # unknown is not zero: a PID namespace NVML cannot see into
        assert result.gpu_memory_peak_bytes is None
    with duckdb.connect(db_path, read_only=True) as con:
        stored_peak = con.execute(
            "SELECT max(g.memory_used_bytes), max(g.utilization_percent) FROM "
            "(SELECT unnest(gpus) AS g FROM resource_utilization WHERE worker_id = 'gpu-worker') "
            "WHERE g.uuid = ?", [first.uuid]).fetchone()
    assert stored_peak[0] >= idle_used_bytes + LOAD_BYTES
    assert stored_peak[1] >= 50
