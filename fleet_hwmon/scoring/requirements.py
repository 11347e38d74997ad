"""Task requirements: the one vocabulary of keys, its parser, and the hardware match (pure).

The scheduler and the capability detector both read requirements here (docs/requirements.md
lists the keys). A worker is described by the coordinator contract's ``capabilities`` dict (what
:func:`fleet_hwmon.capabilities.matching.to_coordinator` makes from a detected record), so both
ask the same question of the same figures and get the same answer.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fleet_hwmon.sample import finite

ISOLATION_LEVELS = ("shared", "quiet", "exclusive")
REQUIREMENT_KEYS = ("hardware", "min_memory_gb", "min_cuda_compute", "min_gpu_memory_gb", "device", "vendor",
                    "precision", "allow_software", "isolation")
# Keys people write for one of ours that a spelling distance would not find.
_MEANT = {"compute_capability": "min_cuda_compute", "min_compute_capability": "min_cuda_compute",
          "cuda_compute": "min_cuda_compute", "model": "device", "gpu_model": "device", "gpu": "hardware",
          "ram_gb": "min_memory_gb", "memory_gb": "min_memory_gb", "gpu_memory_gb": "min_gpu_memory_gb"}


@dataclass(frozen=True, slots=True)
class TaskRequirements:
    """What a task needs (parsed from ``task["requirements"]``, see docs/requirements.md).

    ``hardware``: kinds the worker must have (``cpu``, ``gpu``, ``tpu``, ``webgpu`` ...),
    lower-case. ``min_memory_gb``: the worker's total memory (GiB). ``min_cuda_compute``: CUDA
    compute capability (``8.6``). ``min_gpu_memory_gb``: one GPU's memory (GiB); a filter, and the
    task's GPU memory estimate until its history says otherwise. ``device``: a case-insensitive
    substring of a device's name; ``vendor`` (``nvidia``, ``amd`` ...) and ``precision`` (formats
    such as ``bf16``, all required) hold on the same device. ``allow_software``: software
    renderers (SwiftShader WebGPU) count as the hardware. ``isolation``: ``"shared"``
    (default), ``"quiet"`` (only where the predicted load stays under the quiet threshold) or
    ``"exclusive"`` (a worker with nothing else of ours on it)."""

    hardware: frozenset[str] = frozenset()
    min_memory_gb: float | None = None
    min_cuda_compute: float | None = None
    device: str | None = None
    min_gpu_memory_gb: float | None = None
    isolation: str = "shared"
    vendor: str | None = None
    precision: frozenset[str] = frozenset()
    allow_software: bool = False
    # Its hash, computed once: a decision looks the requirements up in several tables.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.hardware, self.min_memory_gb, self.min_cuda_compute, self.device,
                                                self.min_gpu_memory_gb, self.isolation, self.vendor, self.precision,
                                                self.allow_software)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def needs_gpu(self) -> bool:
        """A GPU is asked for by name, or by a GPU figure (CUDA compute, GPU memory)."""
        return "gpu" in self.hardware or self.min_cuda_compute is not None or self.min_gpu_memory_gb is not None

    @property
    def device_constraints(self) -> bool:
        return (self.needs_gpu or self.device is not None or self.vendor is not None or bool(self.precision))

    @classmethod
    def from_task(cls, task: Mapping[str, Any]) -> TaskRequirements:
        """Parse ``task["requirements"]``; raises ``ValueError`` naming the task on bad input."""
        if type(task) is not dict and not isinstance(task, Mapping):
            raise ValueError(f"a task must be a dict, not {type(task).__name__}")
        return cls.parse(task.get("requirements"), task.get("task_id", "?"))

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, task_id: Any = None) -> TaskRequirements:
        """Parse a requirements dict (``None``: no requirement). Raises ``ValueError`` (prefixed
        with the task id when given) for a value of the wrong kind, a negative figure, an
        unknown isolation level, and an unknown key, which would otherwise be ignored and match
        every worker: the message names the key meant when it is recognisable
        (``hardware_type`` -> ``hardware``) and lists the known ones.

        Every task is parsed again at each decision, yet tasks share a handful of requirement
        sets: a set seen before is answered from a table (by its keys, values and their types)."""
        key = _key_of(raw)
        try:
            found = _parsed.get(key) if key is not None else None
        except TypeError:  # a value that cannot be hashed: parsed every time
            key = found = None
        if found is None:
            found = cls._parse(raw, task_id)
            if key is not None:
                if len(_parsed) >= 256:  # many distinct sets: start over rather than grow
                    _parsed.clear()
                _parsed[key] = found
        return found

    @classmethod
    def _parse(cls, raw: Mapping[str, Any] | None, task_id: Any) -> TaskRequirements:
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise ValueError(f"{_where(task_id)}'requirements' must be a dict, not {type(raw).__name__}")
        if not raw.keys() <= _KNOWN:
            unknown = sorted(str(k) for k in raw if k not in _KNOWN)
            raise ValueError(f"{_where(task_id)}unknown requirement(s) {', '.join(map(_with_hint, unknown))}; "
                             f"known: {', '.join(REQUIREMENT_KEYS)}")
        isolation = str(raw.get("isolation") or "shared").lower()
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(f"{_where(task_id)}requirements.isolation must be one of "
                             f"{', '.join(ISOLATION_LEVELS)}, got {raw.get('isolation')!r}")
        allow_software = raw.get("allow_software", False)
        if allow_software not in (True, False, None, 0, 1):
            raise ValueError(f"{_where(task_id)}requirements.allow_software must be true or false, "
                             f"got {allow_software!r}")
        vendor = _text(raw.get("vendor"))
        return cls(_names(raw, "hardware", task_id), _number(raw, "min_memory_gb", task_id),
                   _number(raw, "min_cuda_compute", task_id), _text(raw.get("device")),
                   _number(raw, "min_gpu_memory_gb", task_id), isolation, vendor.lower() if vendor else None,
                   _names(raw, "precision", task_id), bool(allow_software))


_parsed: dict[tuple, TaskRequirements] = {}  # requirement set (see _key_of) -> parsed


def _key_of(raw: Any) -> tuple | None:
    """A key that tells requirement dicts apart as the parser does (each value with its type, a
    list's items with theirs, since ``1`` and ``True`` parse differently); ``None`` when ``raw``
    is not a dict (then it is parsed every time). It may hold an unhashable value: looking it
    up raises ``TypeError`` then."""
    if type(raw) is not dict:
        return () if raw is None else None
    return tuple([(k, type(v), (tuple(v), tuple(map(type, v))) if type(v) is list else v) for k, v in raw.items()])


def _where(task_id: Any) -> str:
    return "" if task_id is None else f"task {task_id!r}: "


def _names(raw: Mapping[str, Any], key: str, task_id: Any) -> frozenset[str]:
    value = raw.get(key)
    if not value:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{_where(task_id)}requirements.{key} must be a list of names")
    names = [getattr(v, "value", v) for v in value]  # enum members too
    if not all(isinstance(v, str) and v.strip() for v in names):
        raise ValueError(f"{_where(task_id)}requirements.{key} must be a list of names, got {list(value)!r}")
    return frozenset(v.strip().lower() for v in names)


def _number(raw: Mapping[str, Any], key: str, task_id: Any) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if key == "min_cuda_compute" and isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}.{value[1]}"  # (8, 6), as compute capabilities are also written
    number = None if isinstance(value, bool) else finite(value)  # (True is not 1 GB; NaN matches nothing)
    if number is None:
        raise ValueError(f"{_where(task_id)}requirements.{key} must be a number, got {value!r}")
    if number < 0:
        raise ValueError(f"{_where(task_id)}requirements.{key} must not be negative")
    return number


def _text(value: Any) -> str | None:
    return str(getattr(value, "value", value)) if value else None


_KNOWN = frozenset(REQUIREMENT_KEYS)


def _with_hint(key: str) -> str:
    meant = _MEANT.get(key.lower()) or next(iter(difflib.get_close_matches(key.lower(), REQUIREMENT_KEYS, 1, 0.6)),
                                            None)
    return f"{key} (did you mean {meant!r}?)" if meant else key


def hardware_mismatch(req: TaskRequirements, capabilities: Mapping[str, Any]) -> str | None:
    """Why a worker with ``capabilities`` (the coordinator contract's dict) cannot run the task,
    or ``None`` when it can. Unknown capability figures do not satisfy a stated minimum.

    Kinds come from ``capabilities["hardware"]`` (plus ``capabilities["software"]`` when the
    task allows software renderers); a worker that lists no kinds is taken to have a CPU. The
    device constraints (vendor, device name, precision, CUDA compute, GPU memory) must all hold
    on ONE device: a GPU when the task needs one, else a device of a required kind other than
    CPU, else any device (the CPU included)."""
    if not isinstance(capabilities, Mapping):
        return f"its capabilities are {type(capabilities).__name__}, not a mapping (the coordinator contract)"
    listed = _kinds(capabilities.get("hardware"))
    kinds = listed | (_kinds(capabilities.get("software")) if req.allow_software else set())
    missing = sorted(req.hardware - kinds - {"cpu"})
    if "cpu" in req.hardware and "cpu" not in kinds and listed:
        missing.insert(0, "cpu")
    if req.needs_gpu and "gpu" not in kinds and "gpu" not in missing:
        missing.append("gpu")
    if missing:
        health = capabilities.get("gpu_health")
        suffix = f" (GPU {health})" if "gpu" in missing and health and health != "healthy" else ""
        return f"lacks {', '.join(missing)}{suffix}"
    if req.min_memory_gb is not None:
        memory = capabilities.get("memory")
        total = finite(memory.get("total_gb")) if isinstance(memory, Mapping) else None
        if total is None or total < req.min_memory_gb:
            return f"memory {_gb(total)} < required {req.min_memory_gb:g} GB"
    return _device_mismatch(req, capabilities, kinds) if req.device_constraints else None


def _device_mismatch(req: TaskRequirements, capabilities: Mapping[str, Any], kinds: set[str]) -> str | None:
    """Filter the candidate devices constraint by constraint; the first that leaves none says why."""
    noun = "GPU" if req.needs_gpu else "device"
    devices = _devices(req, capabilities, kinds)
    if req.vendor is not None:
        devices = [d for d in devices if str(d.get("vendor") or "").lower() == req.vendor]
        if not devices:
            return f"no {noun} from vendor {req.vendor!r}"
    if req.min_cuda_compute is not None:
        devices = [d for d in devices if _at_least(d.get("cuda_compute"), req.min_cuda_compute)]
        if not devices:
            return f"no GPU with CUDA compute >= {req.min_cuda_compute:g}"
    if req.min_gpu_memory_gb is not None:
        devices = [d for d in devices if _at_least(d.get("memory_gb"), req.min_gpu_memory_gb)]
        if not devices:
            return f"no GPU with >= {req.min_gpu_memory_gb:g} GB of memory"
    if req.precision:
        devices = [d for d in devices if req.precision <= {str(p).lower() for p in d.get("precisions") or ()}]
        if not devices:
            return f"no {noun} supporting {', '.join(sorted(req.precision))}"
    if req.device is not None:
        wanted = req.device.lower()
        if not any(wanted in str(d.get("name") or d.get("model") or "").lower() for d in devices):
            return f"no {noun} matching {req.device!r}"
    return None


def _at_least(figure: Any, minimum: float) -> bool:
    """Whether a capability ``figure`` meets ``minimum``: unknown or malformed meets none."""
    number = finite(figure)
    return number is not None and number >= minimum


def _kinds(listed: Any) -> set[str]:
    """Hardware kinds a capability lists: a list of names, or one name as a string."""
    if listed is None:
        return set()
    if isinstance(listed, str):
        listed = [listed]
    try:
        return {str(h).lower() for h in listed}
    except TypeError:  # not iterable: lists nothing
        return set()


def _devices(req: TaskRequirements, capabilities: Mapping[str, Any], kinds: set[str]) -> list[Mapping[str, Any]]:
    """The devices the task's device constraints may be met on (see :func:`hardware_mismatch`);
    ``kinds``: the worker's usable kinds. Software renderers only when the task allows them."""
    if req.needs_gpu:
        return list(_entries(capabilities.get("gpus") or capabilities.get("gpu")))
    wanted = (req.hardware - {"cpu"}) or kinds | {"cpu", "gpu"}
    gpus = capabilities.get("gpus") or capabilities.get("gpu")
    found = [d for kind in sorted(wanted) for d in _entries(gpus if kind == "gpu" else capabilities.get(kind))]
    return [d for d in found if req.allow_software or not d.get("software_only")]


def _entries(value: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _gb(value: Any) -> str:
    return "unknown" if value is None else f"{float(value):g} GB"
