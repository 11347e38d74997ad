"""Pure matching of task requirements against worker capabilities, and the coordinator's view.

Requirements (the task ``requirements`` of the coordinator contract)::

    {"hardware": ["gpu"], "min_memory_gb": 16, "min_gpu_memory_gb": 20, "min_cuda_compute": 8.0,
     "vendor": "nvidia", "device": "A100", "precision": "bf16" | ["bf16", "fp8"],
     "allow_software": False}

``hardware`` lists types the worker must all have (healthy, real hardware: a GPU behind a driver
mismatch or a SwiftShader WebGPU adapter does not count unless ``allow_software`` for the
latter). The device-level constraints (vendor, device name substring, precision, CUDA compute,
GPU memory) must all hold on ONE device of a required type (any type when none is required,
GPUs when only GPU-specific constraints are given).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fleet_hwmon.capabilities.model import (
    HardwareCapability,
    HardwareType,
    PrecisionType,
    WorkerHardwareCapabilities,
)

GIB = 1024**3


def parse_compute_capability(value: Any) -> tuple[int, int] | None:
    """``8.6`` / ``"8.6"`` / ``(8, 6)`` -> ``(8, 6)``; None when unparseable."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    text = str(value).strip()
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _device_ok(cap: HardwareCapability, req: Mapping[str, Any]) -> bool:
    vendor = req.get("vendor")
    if vendor and cap.vendor.value != str(vendor).lower():
        return False
    device = req.get("device")
    if device and str(device).lower() not in cap.model.lower():
        return False
    wanted = {PrecisionType(p.lower()) for p in _as_list(req.get("precision"))
              if p.lower() in PrecisionType._value2member_map_}
    if len(wanted) != len(_as_list(req.get("precision"))) or not wanted <= set(cap.supported_precisions):
        return False
    min_cc = parse_compute_capability(req.get("min_cuda_compute"))
    if min_cc is not None:
        have = parse_compute_capability(cap.capabilities.get("compute_capability"))
        if have is None or have < min_cc:
            return False
    min_gpu_gb = req.get("min_gpu_memory_gb")
    return not (min_gpu_gb is not None and (cap.memory_bytes is None or cap.memory_bytes < min_gpu_gb * GIB))


_DEVICE_KEYS = ("vendor", "device", "precision", "min_cuda_compute", "min_gpu_memory_gb")
REQUIREMENT_KEYS = ("hardware", "min_memory_gb", *_DEVICE_KEYS, "allow_software")


def check_requirement_keys(requirements: Mapping[str, Any]) -> None:
    """``ValueError`` listing the known keys when ``requirements`` has a key this module does not
    read (``{"hardware_type": "gpu"}`` would otherwise match every worker)."""
    unknown = sorted(str(k) for k in requirements if k not in REQUIREMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown requirement(s) {', '.join(unknown)}; known: {', '.join(REQUIREMENT_KEYS)}")


def explain_mismatch(caps: WorkerHardwareCapabilities, requirements: Mapping[str, Any],
                     min_memory_gb: float | None = None) -> str | None:
    """Why ``caps`` cannot take a task with ``requirements``; None when it can."""
    allow_software = bool(requirements.get("allow_software"))
    required = [HardwareType(t) for t in _as_list(requirements.get("hardware"))]
    usable = [c for c in caps.hardware_capabilities
              if c.healthy and (allow_software or not c.software_only)]
    have = {c.hardware_type for c in usable}
    missing = [t.value for t in required if t not in have]
    if missing:
        unhealthy = [c for c in caps.hardware_capabilities if not c.healthy and c.hardware_type.value in missing]
        return f"missing hardware: {', '.join(missing)}" + (" (present but unhealthy)" if unhealthy else "")
    floor = min_memory_gb if min_memory_gb is not None else requirements.get("min_memory_gb")
    if floor is not None and (caps.total_memory_bytes is None or caps.total_memory_bytes < float(floor) * GIB):
        return f"memory below {floor} GiB"
    if any(requirements.get(k) is not None for k in _DEVICE_KEYS):
        gpu_only = requirements.get("min_cuda_compute") is not None or requirements.get("min_gpu_memory_gb") is not None
        kinds = [t for t in required if t is not HardwareType.CPU] or required
        if not kinds and gpu_only:
            kinds = [HardwareType.GPU]
        candidates = [c for c in usable if not kinds or c.hardware_type in kinds]
        if not any(_device_ok(c, requirements) for c in candidates):
            return "no device matches " + ", ".join(f"{k}={requirements[k]}" for k in _DEVICE_KEYS
                                                    if requirements.get(k) is not None)
    return None


def find_compatible(workers: Iterable[WorkerHardwareCapabilities], requirements: Mapping[str, Any],
                    min_memory_gb: float | None = None,
                    preferred_hardware_types: Sequence[str | HardwareType] | None = None) -> list[str]:
    """Worker ids that can take the task: workers with a preferred type first (in the order of
    ``preferred_hardware_types``), then by worker id, so the order is stable. Raises
    ``ValueError`` for an unknown requirement key (see :func:`check_requirement_keys`)."""
    check_requirement_keys(requirements)
    preferred = [HardwareType(t) if not isinstance(t, HardwareType) else t for t in preferred_hardware_types or ()]
    matches = [w for w in workers if explain_mismatch(w, requirements, min_memory_gb) is None]

    def rank(worker: WorkerHardwareCapabilities) -> tuple[int, str]:
        types = set(worker.hardware_types)
        position = next((i for i, t in enumerate(preferred) if t.value in types), len(preferred))
        return position, worker.worker_id

    return [w.worker_id for w in sorted(matches, key=rank)]


def _cc_float(text: str | None) -> float | None:
    parsed = parse_compute_capability(text)
    return None if parsed is None else float(f"{parsed[0]}.{parsed[1]}")


def _gpu_entry(cap: HardwareCapability) -> dict[str, Any]:
    extra = cap.capabilities
    return {
        "name": cap.model, "vendor": cap.vendor.value, "uuid": extra.get("uuid") or cap.device_id,
        "cuda_compute": _cc_float(extra.get("compute_capability")),
        "memory_gb": None if cap.memory_bytes is None else round(cap.memory_bytes / GIB, 2),
        "pci_bus_id": extra.get("pci_bus_id"), "mig_mode": extra.get("mig_mode"),
        "mig_instances": [
            {"uuid": m.get("uuid"), "name": m.get("name"),
             "memory_gb": None if m.get("memory_total_bytes") is None else round(m["memory_total_bytes"] / GIB, 2)}
            for m in extra.get("mig_instances") or ()
        ],
        "precisions": [p.value for p in cap.supported_precisions],
    }


def to_coordinator(caps: WorkerHardwareCapabilities) -> dict[str, Any]:
    """The ``capabilities`` dict of the coordinator contract.

    ``{"hardware": ["cpu", "gpu"], "memory": {"total_gb", "source"}, "cpu": {"cores_effective", ...},
    "gpu": {"name", "cuda_compute", "memory_gb", "uuid", ...}, "gpus": [...], "gpu_health": ...}``.
    An unhealthy GPU is NOT listed in ``hardware`` (so GPU tasks go elsewhere) but shows in
    ``gpu_health`` / ``gpu_health_reason``. ``gpu`` is the healthy GPU with the most memory.
    """
    cpu = next(iter(caps.of_type(HardwareType.CPU, healthy_only=False)), None)
    cpu_extra = cpu.capabilities if cpu else {}
    out: dict[str, Any] = {
        "hardware": caps.hardware_types,
        "memory": {"total_gb": None if caps.total_memory_bytes is None else round(caps.total_memory_bytes / GIB, 2),
                   "source": caps.memory_source},
        "cpu": {"cores_effective": caps.cpu_count_effective, "cores_logical": cpu_extra.get("cores_logical"),
                "cores_physical": cpu_extra.get("cores_physical"), "model": cpu.model if cpu else None,
                "vendor": cpu.vendor.value if cpu else None, "architecture": cpu_extra.get("architecture")},
        "fingerprint": caps.hardware_fingerprint,
    }
    healthy = caps.of_type(HardwareType.GPU)
    all_gpus = caps.of_type(HardwareType.GPU, healthy_only=False)
    out["gpus"] = [_gpu_entry(c) for c in healthy]
    if healthy:
        best = max(healthy, key=lambda c: (c.memory_bytes or 0, -(c.capabilities.get("index") or 0)))
        out["gpu"] = _gpu_entry(best)
    if all_gpus:
        sick = [c for c in all_gpus if not c.healthy]
        out["gpu_health"] = "unhealthy" if sick and not healthy else ("degraded" if sick else "healthy")
        if sick:
            out["gpu_health_reason"] = sick[0].capabilities.get("health_reason") or caps.status.get("nvml")
    for kind in (HardwareType.TPU, HardwareType.NPU, HardwareType.HPU):
        found = caps.of_type(kind)
        if found:
            out[kind.value] = [{"model": c.model, "vendor": c.vendor.value, "id": c.device_id} for c in found]
    return out
