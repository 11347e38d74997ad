"""Worker ids for task requirements, and the coordinator's view of a detected worker (pure).

Requirements are read and matched by :mod:`fleet_hwmon.scoring.requirements`, the scheduler's
own matcher: a detected record is turned into the coordinator contract's ``capabilities`` dict
(:func:`to_coordinator`) and asked the same question the scheduler asks, so both give the same
answer with the same vocabulary of keys (docs/requirements.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fleet_hwmon.capabilities.model import (
    HardwareCapability,
    HardwareType,
    WorkerHardwareCapabilities,
)
from fleet_hwmon.scoring.requirements import REQUIREMENT_KEYS, TaskRequirements, hardware_mismatch

GIB = 1024**3
__all__ = ["REQUIREMENT_KEYS", "check_requirement_keys", "explain_mismatch", "find_compatible",
           "parse_compute_capability", "to_coordinator"]


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


def check_requirement_keys(requirements: Mapping[str, Any]) -> None:
    """``ValueError`` naming the key meant and listing the known keys when ``requirements`` is
    not a valid requirements dict (``{"hardware_type": "gpu"}`` would otherwise match every
    worker); see :meth:`TaskRequirements.parse`."""
    TaskRequirements.parse(requirements)


def _parsed(requirements: Mapping[str, Any], min_memory_gb: float | None) -> TaskRequirements:
    if min_memory_gb is not None:
        requirements = {**requirements, "min_memory_gb": min_memory_gb}
    return TaskRequirements.parse(requirements)


def explain_mismatch(caps: WorkerHardwareCapabilities, requirements: Mapping[str, Any],
                     min_memory_gb: float | None = None) -> str | None:
    """Why ``caps`` cannot take a task with ``requirements`` (the scheduler's message, e.g.
    ``"lacks gpu (GPU unhealthy)"``); None when it can. Raises ``ValueError`` for bad requirements."""
    return hardware_mismatch(_parsed(requirements, min_memory_gb), to_coordinator(caps))


def find_compatible(workers: Iterable[WorkerHardwareCapabilities], requirements: Mapping[str, Any],
                    min_memory_gb: float | None = None,
                    preferred_hardware_types: Sequence[str | HardwareType] | None = None) -> list[str]:
    """Worker ids that can take the task: workers with a preferred type first (in the order of
    ``preferred_hardware_types``), then by worker id, so the order is stable. Raises
    ``ValueError`` for bad requirements, an unknown key included (see :func:`check_requirement_keys`)."""
    parsed = _parsed(requirements, min_memory_gb)
    preferred = [HardwareType(t) if not isinstance(t, HardwareType) else t for t in preferred_hardware_types or ()]
    matches = [w for w in workers if hardware_mismatch(parsed, to_coordinator(w)) is None]

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
    Other devices are listed by kind (``"tpu": [{"model", "vendor", "id", "memory_gb",
    "precisions"}]``, software renderers with ``"software_only": true``); kinds present only as
    software renderers are named in ``software`` (usable by tasks with ``allow_software``).
    """
    cpu = next(iter(caps.of_type(HardwareType.CPU, healthy_only=False)), None)
    cpu_extra = cpu.capabilities if cpu else {}
    out: dict[str, Any] = {
        "hardware": caps.hardware_types,
        "memory": {"total_gb": None if caps.total_memory_bytes is None else round(caps.total_memory_bytes / GIB, 2),
                   "source": caps.memory_source},
        "cpu": {"cores_effective": caps.cpu_count_effective, "cores_logical": cpu_extra.get("cores_logical"),
                "cores_physical": cpu_extra.get("cores_physical"), "model": cpu.model if cpu else None,
                "vendor": cpu.vendor.value if cpu else None, "architecture": cpu_extra.get("architecture"),
                "precisions": [p.value for p in cpu.supported_precisions] if cpu else []},
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
    for kind in HardwareType:
        found = caps.of_type(kind, include_software=True) if kind not in (HardwareType.CPU, HardwareType.GPU) else []
        if found:
            out[kind.value] = [_device_entry(c) for c in found]
    software = sorted({c.hardware_type.value for c in caps.hardware_capabilities
                       if c.healthy and c.software_only} - set(out["hardware"]))
    if software:
        out["software"] = software
    return out


def _device_entry(cap: HardwareCapability) -> dict[str, Any]:
    """A TPU, NPU, WebGPU adapter ...: what the requirement matcher reads of it."""
    entry = {"model": cap.model, "vendor": cap.vendor.value, "id": cap.device_id,
             "memory_gb": None if cap.memory_bytes is None else round(cap.memory_bytes / GIB, 2),
             "precisions": [p.value for p in cap.supported_precisions]}
    if cap.software_only:
        entry["software_only"] = True
    return entry
