"""Typed records of what a worker's hardware can do, and their dict round-trip.

A :class:`WorkerHardwareCapabilities` is detected once per worker (and again when the hardware
may have changed); it is not a sample. Bytes are bytes, times are UTC, unknown is ``None``.
``status`` carries one readable line per source that could not say what it wanted to say
(``"nvml": "nvml: unavailable (NVML Shared Library Not Found)"``), so an absent GPU and an
unreadable one never look the same.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class HardwareType(str, enum.Enum):
    """Kinds of compute a worker may offer. Values unknown to this version read as ``OTHER``."""

    CPU = "cpu"
    GPU = "gpu"
    TPU = "tpu"
    NPU = "npu"
    HPU = "hpu"  # Habana Gaudi
    DSP = "dsp"
    FPGA = "fpga"
    ASIC = "asic"
    WEBGPU = "webgpu"
    WEBNN = "webnn"
    OTHER = "other"

    @classmethod
    def _missing_(cls, value: object) -> HardwareType:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return cls.OTHER


class HardwareVendor(str, enum.Enum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"
    APPLE = "apple"
    GOOGLE = "google"
    QUALCOMM = "qualcomm"
    ARM = "arm"
    AMPERE = "ampere"
    HUAWEI = "huawei"
    AMAZON = "amazon"
    MICROSOFT = "microsoft"
    SOFTWARE = "software"  # a CPU renderer (SwiftShader, llvmpipe) standing in for a GPU
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> HardwareVendor:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return cls.UNKNOWN


class PrecisionType(str, enum.Enum):
    """Numeric formats a device computes natively (fast paths, not emulation)."""

    FP64 = "fp64"
    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT32 = "int32"
    INT16 = "int16"
    INT8 = "int8"
    INT4 = "int4"


class CapabilityScore(enum.IntEnum):
    """Coarse 1-5 rating of one aspect of a device. An aspect that cannot be rated has no score."""

    MINIMAL = 1
    BASIC = 2
    AVERAGE = 3
    GOOD = 4
    EXCELLENT = 5


HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


@dataclass
class HardwareCapability:
    """One device (a CPU package set, a GPU, a TPU chip, a browser-exposed API).

    ``compute_units``: logical CPUs usable / SMs / CUs / chips (None when unknown).
    ``cores``: physical CPU cores or shader cores (None when unknown, e.g. ARM physical count).
    ``memory_bytes``: device memory; for CPUs the effective memory (cgroup limit when set).
    ``device_id``: the stable identity (NVIDIA UUID ``GPU-…``, PCI address), None when none exists.
    ``health``: ``"healthy"`` or ``"unhealthy"`` (present but unusable, e.g. driver mismatch).
    ``capabilities``: free-form details (UUID, PCI bus id, MIG layout, ISA features,
    ``unsupported_metrics``, browser version and flags ...), JSON-serialisable.
    """

    hardware_type: HardwareType
    vendor: HardwareVendor = HardwareVendor.UNKNOWN
    model: str = "unknown"
    driver_version: str | None = None
    compute_units: int | None = None
    cores: int | None = None
    memory_bytes: int | None = None
    supported_precisions: list[PrecisionType] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, CapabilityScore] = field(default_factory=dict)
    device_id: str | None = None
    health: str = HEALTHY

    @property
    def healthy(self) -> bool:
        return self.health == HEALTHY

    @property
    def software_only(self) -> bool:
        """True for a software stand-in (e.g. a SwiftShader WebGPU adapter), never real hardware."""
        return bool(self.capabilities.get("software_only"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "hardware_type": self.hardware_type.value,
            "vendor": self.vendor.value,
            "model": self.model,
            "driver_version": self.driver_version,
            "compute_units": self.compute_units,
            "cores": self.cores,
            "memory_bytes": self.memory_bytes,
            "supported_precisions": [p.value for p in self.supported_precisions],
            "capabilities": dict(self.capabilities),
            "scores": {name: int(score) for name, score in self.scores.items()},
            "device_id": self.device_id,
            "health": self.health,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HardwareCapability:
        """Inverse of :meth:`to_dict`. Unknown precision names are dropped, unknown types read as OTHER."""
        precisions = []
        for name in data.get("supported_precisions") or ():
            try:
                precisions.append(PrecisionType(name))
            except ValueError:
                continue  # a format this version does not know cannot be scheduled on anyway
        return cls(
            hardware_type=HardwareType(data["hardware_type"]),
            vendor=HardwareVendor(data.get("vendor") or "unknown"),
            model=str(data.get("model") or "unknown"),
            driver_version=data.get("driver_version"),
            compute_units=data.get("compute_units"),
            cores=data.get("cores"),
            memory_bytes=data.get("memory_bytes"),
            supported_precisions=precisions,
            capabilities=dict(data.get("capabilities") or {}),
            scores={k: CapabilityScore(int(v)) for k, v in (data.get("scores") or {}).items()},
            device_id=data.get("device_id"),
            health=str(data.get("health") or HEALTHY),
        )


def _parse_time(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise TypeError(f"detected_at must be a datetime or ISO string, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass
class WorkerHardwareCapabilities:
    """Everything one worker offers, as detected at ``detected_at`` (UTC).

    ``cpu_count``: logical CPUs of the host (``os.cpu_count()``); ``cpu_count_effective``:
    CPUs the worker may really use (min of affinity and cgroup quota). ``total_memory_bytes``:
    effective memory (the cgroup limit when one applies, ``memory_source == "cgroup"``, else the
    host's MemTotal). ``status``: per-source lines such as ``"nvml": "nvml: unavailable (…)"``
    or ``"cpu_temperature": "cpu_temperature: unavailable"``. ``browser``: the browser probe's
    status, reason, version and flags when one was run.
    """

    worker_id: str
    hostname: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    cpu_count: int | None = None
    cpu_count_effective: float | None = None
    total_memory_bytes: int | None = None
    memory_source: str | None = None
    hardware_capabilities: list[HardwareCapability] = field(default_factory=list)
    hardware_fingerprint: str | None = None
    detected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: dict[str, str] = field(default_factory=dict)
    browser: dict[str, Any] | None = None

    def of_type(self, hardware_type: HardwareType, *, healthy_only: bool = True,
                include_software: bool = False) -> list[HardwareCapability]:
        """Capabilities of one type; by default only healthy, real hardware."""
        return [c for c in self.hardware_capabilities
                if c.hardware_type is hardware_type
                and (c.healthy or not healthy_only)
                and (include_software or not c.software_only)]

    @property
    def hardware_types(self) -> list[str]:
        """Types the worker can run work on: healthy, non-software capabilities, in first-seen order."""
        seen: list[str] = []
        for cap in self.hardware_capabilities:
            if cap.healthy and not cap.software_only and cap.hardware_type.value not in seen:
                seen.append(cap.hardware_type.value)
        return seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "hostname": self.hostname,
            "os_name": self.os_name,
            "os_version": self.os_version,
            "cpu_count": self.cpu_count,
            "cpu_count_effective": self.cpu_count_effective,
            "total_memory_bytes": self.total_memory_bytes,
            "memory_source": self.memory_source,
            "hardware_capabilities": [c.to_dict() for c in self.hardware_capabilities],
            "hardware_fingerprint": self.hardware_fingerprint,
            "detected_at": self.detected_at.isoformat(),
            "status": dict(self.status),
            "browser": None if self.browser is None else dict(self.browser),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerHardwareCapabilities:
        """Inverse of :meth:`to_dict`. Raises ``ValueError`` without a ``worker_id``."""
        if not data.get("worker_id"):
            raise ValueError("a capability record needs a non-empty 'worker_id'")
        return cls(
            worker_id=str(data["worker_id"]),
            hostname=data.get("hostname"),
            os_name=data.get("os_name"),
            os_version=data.get("os_version"),
            cpu_count=data.get("cpu_count"),
            cpu_count_effective=data.get("cpu_count_effective"),
            total_memory_bytes=data.get("total_memory_bytes"),
            memory_source=data.get("memory_source"),
            hardware_capabilities=[HardwareCapability.from_dict(c)
                                   for c in data.get("hardware_capabilities") or ()],
            hardware_fingerprint=data.get("hardware_fingerprint"),
            detected_at=_parse_time(data.get("detected_at") or datetime.now(UTC)),
            status={str(k): str(v) for k, v in (data.get("status") or {}).items()},
            browser=None if data.get("browser") is None else dict(data["browser"]),
        )
