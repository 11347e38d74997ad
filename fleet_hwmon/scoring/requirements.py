"""Task requirements and the hardware match against a worker's coordinator capabilities (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


ISOLATION_LEVELS = ("shared", "quiet", "exclusive")
REQUIREMENT_KEYS = ("hardware", "min_memory_gb", "min_cuda_compute", "min_gpu_memory_gb", "device", "isolation")


@dataclass(frozen=True, slots=True)
class TaskRequirements:
    """What a task needs: ``hardware`` kinds (``cpu``, ``gpu``, ...), memory in GB, CUDA compute
    capability, a device-name substring (case-insensitive), GPU memory in GB (a filter on the
    GPUs' size, and the task's GPU memory estimate until its history says otherwise), and
    ``isolation``: ``"shared"`` (default), ``"quiet"`` (only where the predicted load stays
    under the quiet threshold) or ``"exclusive"`` (a worker with nothing else of ours on it)."""

    hardware: frozenset[str] = frozenset()
    min_memory_gb: float | None = None
    min_cuda_compute: float | None = None
    device: str | None = None
    min_gpu_memory_gb: float | None = None
    isolation: str = "shared"

    @property
    def needs_gpu(self) -> bool:
        return "gpu" in self.hardware or self.min_cuda_compute is not None or self.min_gpu_memory_gb is not None

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> TaskRequirements:
        """Parse ``task["requirements"]`` (keys :data:`REQUIREMENT_KEYS`); raises ``ValueError``
        with the task id on bad input, an unknown key included (it would otherwise be ignored)."""
        if not isinstance(task, Mapping):
            raise ValueError(f"a task must be a dict, not {type(task).__name__}")
        raw = task.get("requirements") or {}
        task_id = task.get("task_id", "?")
        if not isinstance(raw, Mapping):
            raise ValueError(f"task {task_id!r}: 'requirements' must be a dict, not {type(raw).__name__}")
        if not raw.keys() <= _KNOWN:
            unknown = sorted(map(str, raw.keys() - _KNOWN))
            raise ValueError(f"task {task_id!r}: unknown requirement(s) {', '.join(unknown)}; known: "
                             f"{', '.join(REQUIREMENT_KEYS)}")
        hardware = raw.get("hardware") or []
        if isinstance(hardware, str):
            hardware = [hardware]
        if not isinstance(hardware, (list, tuple, set, frozenset)):
            raise ValueError(f"task {task_id!r}: requirements.hardware must be a list of names")

        def number(key: str) -> float | None:
            value = raw.get(key)
            if value is None:
                return None
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"task {task_id!r}: requirements.{key} must be a number, got {value!r}") from None
            if number < 0:
                raise ValueError(f"task {task_id!r}: requirements.{key} must not be negative")
            return number

        device = raw.get("device")
        isolation = str(raw.get("isolation") or "shared").lower()
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(f"task {task_id!r}: requirements.isolation must be one of "
                             f"{', '.join(ISOLATION_LEVELS)}, got {raw.get('isolation')!r}")
        return cls(frozenset(str(h).lower() for h in hardware), number("min_memory_gb"),
                   number("min_cuda_compute"), str(device) if device else None, number("min_gpu_memory_gb"),
                   isolation)


_KNOWN = frozenset(REQUIREMENT_KEYS)


def hardware_mismatch(req: TaskRequirements, capabilities: Mapping[str, Any]) -> str | None:
    """Why a worker with ``capabilities`` (the coordinator contract's dict) cannot run the task,
    or ``None`` when it can. Unknown capability figures do not satisfy a stated minimum."""
    hardware = {str(h).lower() for h in capabilities.get("hardware", ())}
    missing = sorted(req.hardware - hardware - {"cpu"})
    if "cpu" in req.hardware and "cpu" not in hardware and hardware:
        missing.insert(0, "cpu")
    if req.needs_gpu and "gpu" not in hardware and "gpu" not in missing:
        missing.append("gpu")
    if missing:
        health = capabilities.get("gpu_health")
        suffix = f" (GPU {health})" if "gpu" in missing and health and health != "healthy" else ""
        return f"lacks {', '.join(missing)}{suffix}"
    if req.min_memory_gb is not None:
        total = (capabilities.get("memory") or {}).get("total_gb")
        if total is None or total < req.min_memory_gb:
            return f"memory {_gb(total)} < required {req.min_memory_gb:g} GB"
    if req.needs_gpu:
        gpus = _gpus(capabilities)
        if req.min_cuda_compute is not None:
            gpus = [g for g in gpus if g.get("cuda_compute") is not None
                    and float(g["cuda_compute"]) >= req.min_cuda_compute]
            if not gpus:
                return f"no GPU with CUDA compute >= {req.min_cuda_compute:g}"
        if req.min_gpu_memory_gb is not None:
            gpus = [g for g in gpus if g.get("memory_gb") is not None and g["memory_gb"] >= req.min_gpu_memory_gb]
            if not gpus:
                return f"no GPU with >= {req.min_gpu_memory_gb:g} GB of memory"
        if req.device is not None:
            wanted = req.device.lower()
            if not any(wanted in str(g.get("name", "")).lower() for g in gpus):
                return f"no GPU matching {req.device!r}"
    elif req.device is not None:
        names = [str(g.get("name", "")) for g in _gpus(capabilities)]
        names.append(str((capabilities.get("cpu") or {}).get("model", "")))
        if not any(req.device.lower() in n.lower() for n in names):
            return f"no device matching {req.device!r}"
    return None


def _gpus(capabilities: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    gpus = capabilities.get("gpus")
    if gpus:
        return list(gpus)
    gpu = capabilities.get("gpu")
    return [gpu] if gpu else []


def _gb(value: Any) -> str:
    return "unknown" if value is None else f"{float(value):g} GB"
