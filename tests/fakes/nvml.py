"""A fake ``pynvml`` module built from exact per-GPU specs, for tests on GPU-less machines.

It raises pynvml's real exception classes (``NVMLError`` with ``.value`` and the generated
subclasses such as ``NVMLError_NotSupported``), so ``except pynvml.NVMLError`` works whether the
code under test catches through the fake or through the real module. Every call is counted.

Example::

    fake = make_fake_nvml(gpus=[
        FakeGpu(name="NVIDIA GeForce RTX 3060", uuid="GPU-3060", pci_bus_id="00000000:01:00.0",
                not_supported={"nvmlDeviceGetPowerUsage"}),
    ])
    gateway = NvmlGateway(module=fake)
    ...
    assert fake.calls["nvmlShutdown"] == 0

``init_error`` takes an NVML error value (``18`` for a driver/library mismatch), an exception
instance, or an exception class.
"""

from __future__ import annotations

import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynvml  # nvidia-ml-py is a dependency; importing it works without a GPU or a driver

# The real exception classes, so `except pynvml.NVMLError` and `except fake.NVMLError` agree.
NVMLError = pynvml.NVMLError
NVMLError_NotSupported = pynvml.NVMLError_NotSupported
NVMLError_NotFound = pynvml.NVMLError_NotFound
NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
NVMLError_DriverNotLoaded = pynvml.NVMLError_DriverNotLoaded
NVMLError_LibRmVersionMismatch = pynvml.NVMLError_LibRmVersionMismatch

GIB = 1024**3

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999
NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x8
THROTTLE_HW_SLOWDOWN = 0x8
THROTTLE_SW_THERMAL = 0x20
THROTTLE_HW_THERMAL = 0x40
THROTTLE_SW_POWER_CAP = 0x4


def nvml_error(value: int) -> Exception:
    """An ``NVMLError`` of the subclass NVML uses for ``value`` (3 -> ``NVMLError_NotSupported``)."""
    return NVMLError(value)


@dataclass
class FakeProcess:
    """One entry of ``nvmlDeviceGet{Compute,Graphics}RunningProcesses``; memory None = N/A."""

    pid: int
    usedGpuMemory: int | None


@dataclass
class FakeUtilizationSample:
    """One entry of ``nvmlDeviceGetProcessUtilization``: a process's SM utilization (percent of
    the GPU) in the driver's sample ending at ``timeStamp`` (microseconds)."""

    pid: int
    timeStamp: int
    smUtil: int
    memUtil: int = 0
    encUtil: int = 0
    decUtil: int = 0


@dataclass
class FakeMigInstance:
    """A MIG instance: its own UUID, name and memory, returned by ``nvmlDeviceGetMigDeviceHandleByIndex``."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    memory_total_bytes: int = 20 * GIB
    memory_used_bytes: int = 0
    compute_processes: list[FakeProcess] = field(default_factory=list)


@dataclass
class FakeGpu:
    """One physical GPU. ``not_supported`` names pynvml functions that raise NotSupported on it;
    ``errors`` maps function names to other NVML error values. ``mig_mode`` None = the board has
    no MIG (``nvmlDeviceGetMigMode`` raises NotSupported); ``(1, 1)`` = MIG on.

    Health: ``lost`` set to an NVML error value (15 GpuIsLost, 999 Unknown) makes every call on
    the GPU raise it; ``vanished`` makes it raise GpuIsLost and ``nvmlDeviceGetHandleByUUID``
    NotFound. ``xid_events`` is the queue of XID codes ``nvmlEventSetWait_v2`` hands out;
    ``throttle_reasons`` a ``nvmlClocksThrottleReason*`` bit mask."""

    name: str = "NVIDIA GeForce RTX 3060"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    pci_bus_id: str = "00000000:01:00.0"
    memory_total_bytes: int = 12 * GIB
    memory_used_bytes: int = 0
    utilization_percent: int = 0
    memory_utilization_percent: int = 0
    temperature_celsius: int = 40
    power_watts: float = 50.0
    fan_percent: int = 30
    sm_clock_mhz: int = 1500
    memory_clock_mhz: int = 7000
    compute_capability: tuple[int, int] = (8, 6)
    mig_mode: tuple[int, int] | None = None
    mig_instances: list[FakeMigInstance] = field(default_factory=list)
    max_mig_devices: int = 7
    not_supported: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    compute_processes: list[FakeProcess] = field(default_factory=list)
    graphics_processes: list[FakeProcess] = field(default_factory=list)
    process_utilization: list[FakeUtilizationSample] = field(default_factory=list)
    lost: int | None = None
    vanished: bool = False
    xid_events: list[int] = field(default_factory=list)
    ecc_uncorrectable: int = 0
    retired_pages: dict[int, list[int]] = field(default_factory=dict)  # cause -> page addresses
    retired_pages_pending: bool = False
    throttle_reasons: int = 0


@dataclass(frozen=True)
class _Handle:
    gpu: FakeGpu
    mig: FakeMigInstance | None = None


class FakeNvml(types.ModuleType):
    """The fake module. ``calls`` counts every pynvml function called, by name."""

    def __init__(self, gpus: list[FakeGpu], init_error: Any = None, driver_version: str = "550.54.15",
                 cuda_driver_version: int = 12040, bytes_strings: bool = False) -> None:
        super().__init__("pynvml")
        self.gpus = list(gpus)
        self.init_error = init_error
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.bytes_strings = bytes_strings  # older pynvml returned bytes for names and UUIDs
        self.calls: Counter[str] = Counter()
        self.initialized = False
        self.NVMLError = NVMLError
        for name, value in vars(pynvml).items():
            if name.startswith(("NVMLError_", "NVML_ERROR_")):
                setattr(self, name, value)
        self.NVML_TEMPERATURE_GPU = 0
        self.NVML_CLOCK_SM = 1
        self.NVML_CLOCK_MEM = 2

    # -- plumbing -----------------------------------------------------------------------------
    def _enter(self, name: str, handle: _Handle | None = None) -> None:
        self.calls[name] += 1
        if name != "nvmlInit" and not self.initialized:
            raise nvml_error(NVML_ERROR_UNINITIALIZED)
        if handle is not None:
            if handle.gpu.vanished:
                raise nvml_error(NVML_ERROR_GPU_IS_LOST)
            if handle.gpu.lost is not None:
                raise nvml_error(handle.gpu.lost)
            if name in handle.gpu.not_supported:
                raise nvml_error(NVML_ERROR_NOT_SUPPORTED)
            if name in handle.gpu.errors:
                raise nvml_error(handle.gpu.errors[name])

    def _str(self, value: str) -> str | bytes:
        return value.encode() if self.bytes_strings else value

    # -- lifecycle ----------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        error = self.init_error
        if error is not None:
            if isinstance(error, int):
                raise nvml_error(error)
            raise error() if isinstance(error, type) else error
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized = False

    # -- system -------------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._enter("nvmlSystemGetDriverVersion")
        return self._str(self.driver_version)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise nvml_error(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(self.gpus[index])

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> _Handle:
        self._enter("nvmlDeviceGetHandleByUUID")
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == uuid and not gpu.vanished:
                if gpu.lost is not None:
                    raise nvml_error(gpu.lost)
                return _Handle(gpu)
        raise nvml_error(NVML_ERROR_NOT_FOUND)

    # -- device facts -------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: _Handle) -> str | bytes:
        self._enter("nvmlDeviceGetUUID", handle)
        return self._str(handle.mig.uuid if handle.mig else handle.gpu.uuid)

    def nvmlDeviceGetName(self, handle: _Handle) -> str | bytes:
        self._enter("nvmlDeviceGetName", handle)
        return self._str(handle.mig.name if handle.mig else handle.gpu.name)

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> types.SimpleNamespace:
        self._enter("nvmlDeviceGetPciInfo", handle)
        return types.SimpleNamespace(busId=self._str(handle.gpu.pci_bus_id))

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:
        self._enter("nvmlDeviceGetCudaComputeCapability", handle)
        return handle.gpu.compute_capability

    # -- metrics ------------------------------------------------------------------------------
    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> types.SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        total, used = ((handle.mig.memory_total_bytes, handle.mig.memory_used_bytes) if handle.mig
                       else (handle.gpu.memory_total_bytes, handle.gpu.memory_used_bytes))
        return types.SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> types.SimpleNamespace:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        if handle.mig is not None or (handle.gpu.mig_mode and handle.gpu.mig_mode[0] == 1):
            raise nvml_error(NVML_ERROR_NOT_SUPPORTED)  # NVML reports no utilization under MIG
        return types.SimpleNamespace(gpu=handle.gpu.utilization_percent,
                                     memory=handle.gpu.memory_utilization_percent)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        return handle.gpu.temperature_celsius

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return int(handle.gpu.power_watts * 1000)  # milliwatts, as NVML reports

    def nvmlDeviceGetFanSpeed(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetFanSpeed", handle)
        return handle.gpu.fan_percent

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        return handle.gpu.sm_clock_mhz if clock == 1 else handle.gpu.memory_clock_mhz

    # -- health -------------------------------------------------------------------------------
    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        self._enter("nvmlDeviceGetTotalEccErrors", handle)
        return handle.gpu.ecc_uncorrectable if error_type == 1 else 0

    def nvmlDeviceGetRetiredPages(self, handle: _Handle, cause: int) -> list[int]:
        self._enter("nvmlDeviceGetRetiredPages", handle)
        return list(handle.gpu.retired_pages.get(cause, []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        return int(handle.gpu.retired_pages_pending)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return handle.gpu.throttle_reasons

    def nvmlEventSetCreate(self) -> list[_Handle]:
        self._enter("nvmlEventSetCreate")
        return []

    def nvmlDeviceRegisterEvents(self, handle: _Handle, event_types: int, event_set: list[_Handle]) -> None:
        self._enter("nvmlDeviceRegisterEvents", handle)
        if event_types & NVML_EVENT_TYPE_XID_CRITICAL_ERROR:
            event_set.append(handle)

    def nvmlEventSetWait_v2(self, event_set: list[_Handle], timeout_ms: int) -> types.SimpleNamespace:
        """The next queued XID event of a registered GPU; Timeout when there is none."""
        self._enter("nvmlEventSetWait_v2")
        for handle in event_set:
            if handle.gpu.xid_events:
                return types.SimpleNamespace(device=handle, eventType=NVML_EVENT_TYPE_XID_CRITICAL_ERROR,
                                             eventData=handle.gpu.xid_events.pop(0),
                                             gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
        raise nvml_error(NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, event_set: list[_Handle]) -> None:
        self._enter("nvmlEventSetFree")

    # -- MIG ----------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        self._enter("nvmlDeviceGetMigMode", handle)
        if handle.gpu.mig_mode is None:
            raise nvml_error(NVML_ERROR_NOT_SUPPORTED)
        return list(handle.gpu.mig_mode)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        self._enter("nvmlDeviceGetMaxMigDeviceCount", handle)
        if handle.gpu.mig_mode is None:
            raise nvml_error(NVML_ERROR_NOT_SUPPORTED)
        return handle.gpu.max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        self._enter("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if index >= len(handle.gpu.mig_instances):
            raise nvml_error(NVML_ERROR_NOT_FOUND)
        return _Handle(handle.gpu, handle.gpu.mig_instances[index])

    # -- processes ----------------------------------------------------------------------------
    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[FakeProcess]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return list(handle.mig.compute_processes if handle.mig else handle.gpu.compute_processes)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[FakeProcess]:
        self._enter("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [] if handle.mig else list(handle.gpu.graphics_processes)

    def nvmlDeviceGetProcessUtilization(self, handle: _Handle, timeStamp: int) -> list[FakeUtilizationSample]:
        """The samples newer than ``timeStamp``; NotFound when there are none (as NVML answers)."""
        self._enter("nvmlDeviceGetProcessUtilization", handle)
        found = [s for s in handle.gpu.process_utilization if s.timeStamp > timeStamp]
        if not found:
            raise nvml_error(NVML_ERROR_NOT_FOUND)
        return found


def make_fake_nvml(gpus: list[FakeGpu] | None = None, init_error: Any = None, **kwargs: Any) -> FakeNvml:
    """A fresh fake module. ``init_error``: None, an NVML error value, an exception or its class."""
    return FakeNvml(list(gpus or []), init_error=init_error, **kwargs)


# Ready-made specs matching the field reports.
def rtx_3060(**overrides: Any) -> FakeGpu:
    """RTX 3060 at PCI 01:00, 12 GiB, compute capability 8.6."""
    spec: dict[str, Any] = {"name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-3060aaaa-0000-0000-0000-000000000001",
                            "pci_bus_id": "00000000:01:00.0", "memory_total_bytes": 12 * GIB,
                            "compute_capability": (8, 6)}
    return FakeGpu(**{**spec, **overrides})


def rtx_4090(**overrides: Any) -> FakeGpu:
    """RTX 4090 at PCI 02:00, 24 GiB, compute capability 8.9."""
    spec: dict[str, Any] = {"name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-4090bbbb-0000-0000-0000-000000000002",
                            "pci_bus_id": "00000000:02:00.0", "memory_total_bytes": 24 * GIB,
                            "compute_capability": (8, 9), "power_watts": 350.0}
    return FakeGpu(**{**spec, **overrides})


def a100_mig(**overrides: Any) -> FakeGpu:
    """An A100 in MIG mode (1, 1) with two 3g.20gb instances (8 GiB and 4 GiB used); no fan sensor."""
    spec: dict[str, Any] = {
        "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-a100cccc-0000-0000-0000-000000000003",
        "pci_bus_id": "00000000:03:00.0", "memory_total_bytes": 40 * GIB, "memory_used_bytes": 12 * GIB,
        "compute_capability": (8, 0), "mig_mode": (1, 1), "not_supported": {"nvmlDeviceGetFanSpeed"},
        "mig_instances": [
            FakeMigInstance(uuid="MIG-a100cccc-0000-0000-0000-00000000000a",
                            memory_total_bytes=20 * GIB, memory_used_bytes=8 * GIB),
            FakeMigInstance(uuid="MIG-a100cccc-0000-0000-0000-00000000000b",
                            memory_total_bytes=20 * GIB, memory_used_bytes=4 * GIB),
        ],
    }
    return FakeGpu(**{**spec, **overrides})
