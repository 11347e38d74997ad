"""The NVML gateway against a fake pynvml fed with the inputs of the field reports."""

from __future__ import annotations

import builtins
import logging

import pytest

from fleet_hwmon.sampling.nvml import (
    NvmlGateway,
    NvmlStatus,
    cuda_visible_devices_for,
    pick_least_loaded_gpu,
)
from tests.fakes.nvml import (
    GIB,
    FakeGpu,
    FakeProcess,
    FakeUtilizationSample,
    NVMLError,
    a100_mig,
    make_fake_nvml,
    rtx_3060,
    rtx_4090,
)

LOGGER = "fleet_hwmon.sampling.nvml"


# -- C10: NotSupported for single fields ------------------------------------------------------
def c10_fake():
    unsupported = {"nvmlDeviceGetPowerUsage", "nvmlDeviceGetFanSpeed"}
    return make_fake_nvml(gpus=[
        rtx_3060(utilization_percent=12, memory_used_bytes=1 * GIB, temperature_celsius=45,
                 not_supported=set(unsupported)),
        rtx_4090(utilization_percent=80, memory_used_bytes=20 * GIB, temperature_celsius=70,
                 not_supported=set(unsupported)),
    ])


def test_c10_unsupported_power_and_fan_are_null_and_the_rest_is_real(caplog):
    fake = c10_fake()
    gateway = NvmlGateway(module=fake)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        first = gateway.read_gpus(detailed=True)
        for _ in range(50):
            gateway.read_gpus(detailed=True)

    assert [g.name for g in first] == ["NVIDIA GeForce RTX 3060", "NVIDIA GeForce RTX 4090"]
    for gpu, (util, used, temp) in zip(first, [(12.0, 1 * GIB, 45.0), (80.0, 20 * GIB, 70.0)]):
        assert gpu.power_watts is None
        assert gpu.fan_percent is None
        assert gpu.utilization_percent == util
        assert gpu.memory_used_bytes == used
        assert gpu.temperature_celsius == temp
        assert gpu.sm_clock_mhz == 1500.0
        assert gateway.unsupported_fields(gpu.uuid) == {"power", "fan"}

    # one line per (GPU, field), not one per tick
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    for gpu in first:
        for field in ("power", "fan"):
            assert sum(gpu.uuid in line and f": {field} unavailable" in line for line in lines) == 1
    assert len(lines) == 4
    # NotSupported fields are not asked again
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 2
    assert fake.calls["nvmlDeviceGetTemperature"] == 2 * 51


def test_cheap_reads_skip_temperature_power_fan_and_clocks():
    fake = c10_fake()
    gpus = NvmlGateway(module=fake).read_gpus()
    assert all(g.temperature_celsius is None and g.sm_clock_mhz is None for g in gpus)
    assert fake.calls["nvmlDeviceGetTemperature"] == 0
    assert fake.calls["nvmlDeviceGetClockInfo"] == 0
    assert [g.utilization_percent for g in gpus] == [12.0, 80.0]


def test_transient_field_error_is_null_logged_once_and_retried(caplog):
    # NVML_ERROR_NO_DATA (a field with nothing to report right now); a lost GPU is another matter
    fake = make_fake_nvml([rtx_3060(errors={"nvmlDeviceGetTemperature": 20})])
    gateway = NvmlGateway(module=fake)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(5):
            (gpu,) = gateway.read_gpus(detailed=True)
    assert gpu.temperature_celsius is None and gpu.power_watts == 50.0
    assert gateway.unsupported_fields(gpu.uuid) == set()
    assert fake.calls["nvmlDeviceGetTemperature"] == 5
    assert len([r for r in caplog.records if "temperature" in r.getMessage()]) == 1


# -- C11: NVML missing -----------------------------------------------------------------------
@pytest.mark.parametrize("value, status, text", [
    (12, NvmlStatus.LIBRARY_NOT_FOUND, "NVML Shared Library Not Found"),
    (9, NvmlStatus.DRIVER_NOT_LOADED, "Driver Not Loaded"),
])
def test_c11_init_failure_is_cpu_only_and_never_shuts_down(value, status, text):
    fake = make_fake_nvml([rtx_3060()], init_error=value)
    gateway = NvmlGateway(module=fake)
    assert gateway.status is status
    assert gateway.reason == f"nvml: unavailable ({text})"
    assert not gateway.available and gateway.device_count == 0
    assert gateway.read_gpus(detailed=True) == ()
    assert gateway.process_gpu_memory_bytes({1}) is None
    assert gateway.device_info() == []
    gateway.shutdown()
    gateway.shutdown()
    assert fake.calls["nvmlShutdown"] == 0
    assert fake.calls["nvmlInit"] == 1  # init is attempted once, not per read


def test_c11_exception_instance_and_class_are_accepted():
    from tests.fakes.nvml import NVMLError_LibraryNotFound  # type: ignore[attr-defined]

    for error in (NVMLError_LibraryNotFound(), NVMLError_LibraryNotFound):
        gateway = NvmlGateway(module=make_fake_nvml([], init_error=error))
        assert gateway.status is NvmlStatus.LIBRARY_NOT_FOUND


def test_c11c_pynvml_not_importable(monkeypatch):
    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    gateway = NvmlGateway()
    assert gateway.status is NvmlStatus.NOT_INSTALLED
    assert gateway.reason.startswith("nvml: unavailable (pynvml is not installed")
    assert gateway.read_gpus() == ()
    gateway.shutdown()


def test_real_pynvml_on_this_host_does_not_raise():
    gateway = NvmlGateway()
    assert isinstance(gateway.status, NvmlStatus)
    if gateway.status is not NvmlStatus.OK:
        assert gateway.reason and gateway.read_gpus() == ()
    gateway.shutdown()


def test_successful_init_shuts_down_once():
    fake = make_fake_nvml([rtx_3060()])
    gateway = NvmlGateway(module=fake)
    assert gateway.available
    gateway.shutdown()
    gateway.shutdown()
    assert fake.calls["nvmlShutdown"] == 1
    assert gateway.read_gpus() == ()


def test_no_devices():
    gateway = NvmlGateway(module=make_fake_nvml([]))
    assert gateway.status is NvmlStatus.NO_DEVICES
    assert gateway.status.gpus_present is False
    assert gateway.read_gpus() == ()


# -- C12: driver/library mismatch ------------------------------------------------------------
def test_c12_driver_mismatch_is_not_no_gpu():
    fake = make_fake_nvml([rtx_3060()] * 4, init_error=NVMLError(18))
    gateway = NvmlGateway(module=fake)
    assert gateway.status is NvmlStatus.DRIVER_MISMATCH
    assert gateway.status.gpus_present is True
    assert "driver mismatch" in gateway.reason
    assert gateway.reason == "GPU present but unhealthy (driver mismatch)"
    assert gateway.read_gpus() == ()
    gateway.shutdown()
    assert fake.calls["nvmlShutdown"] == 0


# -- C14: MIG --------------------------------------------------------------------------------
def test_c14_mig_parent_utilization_is_null_and_instances_are_listed():
    fake = make_fake_nvml([a100_mig()])
    gateway = NvmlGateway(module=fake)
    parent, first, second = gateway.read_gpus()
    assert parent.utilization_percent is None and parent.unavailable_reason == "MIG"
    assert parent.mig_enabled is True
    assert parent.memory_total_bytes == 40 * GIB
    assert [first.memory_total_bytes, first.memory_used_bytes] == [20 * GIB, 8 * GIB]
    assert [second.memory_total_bytes, second.memory_used_bytes] == [20 * GIB, 4 * GIB]
    for child in (first, second):
        assert child.parent_uuid == parent.uuid
        assert child.uuid.startswith("MIG-")
        assert child.utilization_percent is None and child.unavailable_reason == "MIG"
    # the parent's utilization is not even asked: NVML cannot answer it under MIG
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 0
    # a MIG-less pick never treats unknown utilization as idle
    busy = rtx_4090(utilization_percent=95)
    gateway2 = NvmlGateway(module=make_fake_nvml([a100_mig(), busy]))
    assert pick_least_loaded_gpu(gateway2.read_gpus()).uuid == busy.uuid


def test_mig_info_in_device_info():
    info = NvmlGateway(module=make_fake_nvml([a100_mig(), rtx_3060()])).device_info()
    assert info[0]["mig_mode"] is True and len(info[0]["mig_instances"]) == 2
    assert info[0]["mig_instances"][0]["memory_total_bytes"] == 20 * GIB
    assert info[0]["compute_capability"] == (8, 0)
    assert info[0]["unsupported_fields"] == ["fan"]
    assert info[1]["mig_mode"] is False and info[1]["mig_instances"] == []
    assert info[1]["driver_version"] == "550.54.15" and info[1]["cuda_driver_version"] == "12.4"


# -- C16: select by UUID, not index ----------------------------------------------------------
def test_c16_launch_env_selects_least_loaded_gpu_by_uuid(monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    idle = rtx_3060(pci_bus_id="00000000:01:00.0", utilization_percent=0)
    busy = rtx_4090(pci_bus_id="00000000:02:00.0", utilization_percent=95)
    gateway = NvmlGateway(module=make_fake_nvml([idle, busy]))
    chosen = pick_least_loaded_gpu(gateway.read_gpus())
    env = gateway.cuda_visible_devices_for(chosen.uuid)
    assert env == {"CUDA_VISIBLE_DEVICES": idle.uuid}
    assert env["CUDA_VISIBLE_DEVICES"].startswith("GPU-")


def test_launch_env_refuses_an_index():
    with pytest.raises(ValueError):
        cuda_visible_devices_for("0")


# -- process memory --------------------------------------------------------------------------
def test_process_gpu_memory_by_pid():
    gpu0 = rtx_3060(compute_processes=[FakeProcess(100, 2 * GIB), FakeProcess(200, 1 * GIB)],
                    graphics_processes=[FakeProcess(100, 2 * GIB)])
    gpu1 = rtx_4090(compute_processes=[FakeProcess(101, 3 * GIB), FakeProcess(300, None)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu0, gpu1]))
    assert gateway.process_gpu_memory_bytes({100, 101, 300}) == {gpu0.uuid: 2 * GIB, gpu1.uuid: 3 * GIB}
    assert gateway.process_gpu_memory_bytes({999}) == {gpu0.uuid: 0, gpu1.uuid: 0}


def test_process_memory_on_mig_instances():
    gpu = a100_mig()
    gpu.mig_instances[1].compute_processes.append(FakeProcess(42, 3 * GIB))
    gateway = NvmlGateway(module=make_fake_nvml([gpu]))
    result = gateway.process_gpu_memory_bytes({42})
    assert result == {gpu.mig_instances[0].uuid: 0, gpu.mig_instances[1].uuid: 3 * GIB}


def test_process_gpu_utilization_since_the_callers_last_call():
    gpu0 = rtx_3060(process_utilization=[FakeUtilizationSample(100, 1_000, 40), FakeUtilizationSample(100, 2_000, 60),
                                         FakeUtilizationSample(200, 2_000, 30)])
    gpu1 = rtx_4090(process_utilization=[FakeUtilizationSample(101, 1_500, 20)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu0, gpu1]))
    seen: dict[str, int] = {}
    # pid 100: mean of 40 and 60 on GPU 0; pid 101: 20 on GPU 1; pid 200 is another task's
    assert gateway.process_gpu_utilization_percent({100, 101}, seen) == pytest.approx(70.0)
    assert seen == {gpu0.uuid: 2_000, gpu1.uuid: 1_500}
    # Nothing newer: NVML answers NotFound, which is 0 % (the GPUs were readable), not unknown.
    assert gateway.process_gpu_utilization_percent({100, 101}, seen) == 0.0
    gpu0.process_utilization.append(FakeUtilizationSample(100, 3_000, 90))
    assert gateway.process_gpu_utilization_percent({100, 101}, seen) == pytest.approx(90.0)
    # Another caller keeps its own place: it still sees every sample.
    assert gateway.process_gpu_utilization_percent({100}, {}) == pytest.approx((40 + 60 + 90) / 3)


def test_process_gpu_utilization_skips_the_entries_drivers_get_wrong():
    # Around zombie processes drivers return entries like %SM 37100, PID 0 or odd timestamps.
    gpu = rtx_3060(process_utilization=[FakeUtilizationSample(100, 1_000, 50), FakeUtilizationSample(100, 1_100, 37100),
                                        FakeUtilizationSample(0, 10**18, 20)])
    gateway = NvmlGateway(module=make_fake_nvml([gpu]))
    seen: dict[str, int] = {}
    assert gateway.process_gpu_utilization_percent({100}, seen) == pytest.approx(50.0)
    assert seen == {gpu.uuid: 1_000}  # another process's far-future stamp does not move our place
    gpu.process_utilization.append(FakeUtilizationSample(100, 2_000, 80))
    assert gateway.process_gpu_utilization_percent({100}, seen) == pytest.approx(80.0)
    assert gateway.process_gpu_utilization_percent({100}, seen) == 0.0  # nothing newer for us


def test_process_gpu_utilization_unknown_where_nvml_cannot_say():
    assert NvmlGateway(module=make_fake_nvml([], init_error=12)).process_gpu_utilization_percent({1}, {}) is None
    unsupported = rtx_3060(not_supported={"nvmlDeviceGetProcessUtilization"})
    assert NvmlGateway(module=make_fake_nvml([unsupported])).process_gpu_utilization_percent({1}, {}) is None
    mig = NvmlGateway(module=make_fake_nvml([a100_mig()]))  # no per-process utilization under MIG
    assert mig.process_gpu_utilization_percent({1}, {}) is None
    # One MIG board next to a plain GPU: a task may run on the MIG slice, so the sum is unknown.
    mixed = NvmlGateway(module=make_fake_nvml([rtx_3060(), a100_mig(uuid="GPU-mig")]))
    assert mixed.process_gpu_utilization_percent({42}, {}) is None


# -- bindings quirks -------------------------------------------------------------------------
def test_bytes_names_from_older_pynvml_are_decoded():
    gpu = FakeGpu(name="Tesla T4", uuid="GPU-t4", compute_capability=(7, 5))
    gateway = NvmlGateway(module=make_fake_nvml([gpu], bytes_strings=True))
    (reading,) = gateway.read_gpus()
    assert reading.name == "Tesla T4" and reading.uuid == "GPU-t4"
    assert reading.pci_bus_id == "00000000:01:00.0"
    assert gateway.device_info()[0]["driver_version"] == "550.54.15"


def test_init_happens_once_across_threads():
    import threading

    fake = make_fake_nvml([rtx_3060()])
    gateway = NvmlGateway(module=fake)
    threads = [threading.Thread(target=gateway.read_gpus) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.calls["nvmlInit"] == 1


def test_unexpected_init_exception_does_not_escape():
    fake = make_fake_nvml([rtx_3060()], init_error=RuntimeError("ctypes exploded"))
    gateway = NvmlGateway(module=fake)
    assert gateway.status is NvmlStatus.ERROR
    assert gateway.reason == "nvml: unavailable (ctypes exploded)"
    gateway.shutdown()
    assert fake.calls["nvmlShutdown"] == 0
