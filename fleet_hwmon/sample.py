"""Typed, immutable records for one sample of one worker.

`ResourceUtilization` is the unit that flows through the whole product: the sampler builds it,
alerts and task tracking read it, the store turns its fields into DuckDB columns, the JSON
export and the report tables follow from the same fields, and remote workers send its dict form.
Adding a metric means adding a field here and the code that reads it.

Conventions: a value that could not be read is ``None`` (never 0); non-finite floats (NaN, inf)
become ``None`` on construction, so they can never reach DuckDB or JSON. Times are UTC.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from fleet_hwmon.domains import NVML_SENTINELS, pushed_problems, repair


def finite(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else ``None`` (NaN, inf, None, junk)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int_or_none(value: Any) -> int | None:
    number = finite(value)
    return None if number is None else int(number)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    elif isinstance(value, (int, float)):
        try:
            moment = datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # NaN, or beyond what a datetime holds
            raise ValueError(f"timestamp {value!r} is not a time (epoch seconds out of range)") from None
    else:
        raise ValueError(f"timestamp must be a datetime, ISO string or epoch seconds, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class _Record:
    """Shared behaviour: float fields are sanitised on construction, dict round-trip (every
    record, nested ones included: ``ResourceUtilization.to_dict`` calls it on GPUs, disks, NICs
    and mounts)."""

    _FLOATS: typing.ClassVar[tuple[str, ...]] = ()
    _INTS: typing.ClassVar[tuple[str, ...]] = ()
    _NAMES: typing.ClassVar[tuple[str, ...]] = ()

    def evolve(self, **changes: Any) -> Any:
        """A copy with ``changes`` (valid values) applied. Unlike ``dataclasses.replace`` it does
        not check every field again (this record's were checked when it was built), which makes
        it several times faster on the per-sample path."""
        new = object.__new__(type(self))
        for name in self._NAMES:
            object.__setattr__(new, name, changes[name] if name in changes else getattr(self, name))
        return new

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        known = cls._NAMES
        return cls(**{k: v for k, v in data.items() if k in known})

    def __post_init__(self) -> None:
        for name in self._FLOATS:
            value = getattr(self, name)
            if value is not None and (type(value) is not float or not math.isfinite(value)):
                object.__setattr__(self, name, finite(value))
        for name in self._INTS:
            value = getattr(self, name)
            if value is not None and type(value) is not int:
                object.__setattr__(self, name, _int_or_none(value))


def _classify(cls: type) -> None:
    """Record which fields are optional floats / ints so __post_init__ stays a short loop."""
    hints = typing.get_type_hints(cls)
    cls._FLOATS = tuple(n for n, t in hints.items() if t == (float | None))
    cls._INTS = tuple(n for n, t in hints.items() if t == (int | None))
    cls._NAMES = tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True, slots=True)
class GpuUtilization(_Record):
    """One GPU (or MIG instance) in one sample. Source: NVML (``nvmlDeviceGet*``).

    ``utilization_percent`` is ``None`` under MIG (NVML cannot report it; ``unavailable_reason``
    says ``"MIG"``) and wherever NVML answers NotSupported. ``simulated`` is True only when the
    values were generated (the demo on a GPU-less host), never for a real reading.

    ``health`` is ``"ok"``, ``"degraded"`` (a new XID error, a jump in uncorrectable ECC errors,
    a page retirement pending) or ``"lost"`` (NVML answers GpuIsLost / Unknown, or the device
    vanished: its figures are then ``None``), with ``health_reason``; ``None`` when not read.
    ``throttle_reasons`` lists the clock-throttle reasons active now (``"thermal"``,
    ``"power"``, ``"hw_slowdown"``, comma-separated; ``""`` none).
    """

    index: int
    uuid: str
    name: str
    utilization_percent: float | None = None  # nvmlDeviceGetUtilizationRates().gpu
    memory_used_bytes: int | None = None  # nvmlDeviceGetMemoryInfo().used
    memory_total_bytes: int | None = None  # nvmlDeviceGetMemoryInfo().total
    temperature_celsius: float | None = None  # nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)
    power_watts: float | None = None  # nvmlDeviceGetPowerUsage() / 1000
    fan_percent: float | None = None  # nvmlDeviceGetFanSpeed()
    sm_clock_mhz: float | None = None  # nvmlDeviceGetClockInfo(NVML_CLOCK_SM)
    memory_clock_mhz: float | None = None  # nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)
    pci_bus_id: str | None = None
    mig_enabled: bool | None = None
    parent_uuid: str | None = None  # set on a MIG instance: the physical GPU it belongs to
    unavailable_reason: str | None = None  # why utilization is None ("MIG", "NotSupported")
    simulated: bool = False
    health: str | None = None  # "ok" | "degraded" | "lost" (anything else is repaired to None)
    health_reason: str | None = None
    xid_count: int | None = None  # critical XID events since monitoring began (nvmlEventSetWait)
    last_xid: int | None = None  # the latest one's XID code
    ecc_uncorrectable_errors: int | None = None  # nvmlDeviceGetTotalEccErrors(UNCORRECTED, VOLATILE)
    retired_pages: int | None = None  # nvmlDeviceGetRetiredPages, both causes
    retired_pages_pending: bool | None = None  # nvmlDeviceGetRetiredPagesPendingStatus
    throttle_reasons: str | None = None  # nvmlDeviceGetCurrentClocksThrottleReasons, named

    _SENTINELS: typing.ClassVar[frozenset] = NVML_SENTINELS  # NVML's "not available" values
    _CHOICES: typing.ClassVar[dict[str, frozenset[str]]] = {"health": frozenset(("ok", "degraded", "lost"))}

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


@dataclass(frozen=True, slots=True)
class DiskIO(_Record):
    """Read/write rate of one block device. Source: ``psutil.disk_io_counters(perdisk=True)`` deltas."""

    device: str
    read_bytes_per_s: float | None = None
    write_bytes_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class NicIO(_Record):
    """Receive/send rate of one network interface. Source: ``psutil.net_io_counters(pernic=True)`` deltas."""

    nic: str
    recv_bytes_per_s: float | None = None
    sent_bytes_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class MountUsage(_Record):
    """Space use of one mount point. Source: ``psutil.disk_usage(mountpoint)``."""

    mountpoint: str
    usage_percent: float | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None


_NESTED: dict[str, type] = {"gpus": GpuUtilization, "disks": DiskIO, "nics": NicIO, "mounts": MountUsage}


@dataclass(frozen=True, slots=True)
class ResourceUtilization(_Record):
    """One sample of one worker at one instant.

    Every metric is optional: ``None`` means "not read" (the level does not collect it, the
    platform does not expose it, or the first CPU reading had no reference point), never zero.

    Sources (Linux names; psutil abstracts the others):
      - ``cpu_percent``, ``per_cpu_percent``: ``psutil.cpu_percent(interval=None[, percpu=True])``
        since the previous sample, 0-100.
      - ``load_average_*``: ``psutil.getloadavg()``.
      - ``cpu_count_effective``: CPUs the worker may use, min(affinity, cgroup CPU quota).
      - ``memory_*``: ``psutil.virtual_memory()``; inside a memory-limited cgroup the total is
        the limit (``memory.max`` / ``memory.limit_in_bytes``) and used is the cgroup's working
        set (usage less inactive file pages); ``cgroup_memory_usage_bytes`` is the raw usage.
      - ``swap_*``: ``psutil.swap_memory()``.
      - ``disk_usage_percent``: ``psutil.disk_usage(disk_path)`` of the monitored path (``/``).
      - ``disk_*_bytes_per_s``, ``net_*_bytes_per_s``: per-device counter deltas over a
        monotonic interval, summed over devices that have a valid delta (wraps handled, a reset
        or a new device contributes nothing; ``None`` when no device has a valid delta).
      - ``cgroup_*``: the container's effective limits (cgroup v1 or v2), ``None`` when unlimited.
      - ``gpus``: one entry per GPU and per MIG instance (NVML).
    ``timestamp`` is UTC wall-clock time (it dates the sample; it may step). ``monotonic_s`` is
    the recording process's monotonic clock read beside it (``time.monotonic()``; a remote
    sample's is mapped onto the coordinator's clock when it arrives): every interval and
    duration between samples comes from it, ``None`` where it was not read. ``clock_offset_s``
    is set on a remote sample when it arrives: how far the worker's clock is ahead of the
    coordinator's (``timestamp - clock_offset_s`` is the sample's time on the coordinator's
    clock; ``None`` for a local sample).
    ``task_ids`` are the tasks running on the worker when the sample was taken;
    ``simulated_fields`` names the fields whose values were generated rather than measured;
    ``invalid_fields`` names the fields whose values were out of their domain on construction
    and replaced (``None``; the receive time for ``timestamp``), ``gpus.power_watts`` for a
    nested one (see ``fleet_hwmon.domains``). Raises ``TypeError`` when a text or time field
    holds another type.
    """

    worker_id: str
    timestamp: datetime
    monotonic_s: float | None = None  # monotonic clock of the recording process beside timestamp
    clock_offset_s: float | None = None  # a remote worker's clock minus the coordinator's (seconds)
    cpu_percent: float | None = None
    per_cpu_percent: tuple[float | None, ...] | None = None
    load_average_1m: float | None = None
    load_average_5m: float | None = None
    load_average_15m: float | None = None
    cpu_count_effective: float | None = None
    cpu_frequency_mhz: float | None = None
    cpu_temperature_celsius: float | None = None
    memory_used_bytes: int | None = None
    memory_available_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_percent: float | None = None
    swap_used_bytes: int | None = None
    swap_percent: float | None = None
    cgroup_cpu_quota_cores: float | None = None
    cgroup_memory_limit_bytes: int | None = None
    cgroup_memory_usage_bytes: int | None = None  # raw usage, page cache included
    disk_usage_percent: float | None = None
    disk_read_bytes_per_s: float | None = None
    disk_write_bytes_per_s: float | None = None
    net_sent_bytes_per_s: float | None = None
    net_recv_bytes_per_s: float | None = None
    gpus: tuple[GpuUtilization, ...] = ()
    disks: tuple[DiskIO, ...] = ()
    nics: tuple[NicIO, ...] = ()
    mounts: tuple[MountUsage, ...] = ()
    task_ids: tuple[str, ...] = ()
    simulated_fields: tuple[str, ...] = field(default=())
    invalid_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _Record.__post_init__(self)
        replaced = repair(self)
        if replaced:
            merged = dict.fromkeys((*self.invalid_fields, *replaced))
            object.__setattr__(self, "invalid_fields", tuple(merged))

    # -- derived views (not stored) -------------------------------------------------------
    @property
    def gpu_utilization_percent(self) -> float | None:
        """Highest known utilization across GPUs; ``None`` when no GPU reports one."""
        known = [g.utilization_percent for g in self.gpus if g.utilization_percent is not None]
        return max(known) if known else None

    @property
    def gpu_memory_percent(self) -> float | None:
        """Highest known memory use (percent of that GPU) across GPUs; ``None`` when unknown."""
        known = [p for p in (g.memory_percent for g in self.gpus) if p is not None]
        return max(known) if known else None

    @property
    def gpu_memory_used_bytes(self) -> int | None:
        known = [g.memory_used_bytes for g in self.gpus if g.memory_used_bytes is not None]
        return sum(known) if known else None

    def resource_percent(self, resource: str) -> float | None:
        """The 0-100 utilization the alerts and the scheduler use for ``cpu``, ``memory``,
        ``gpu`` (busiest GPU's utilization), ``gpu_memory`` and ``disk``; ``None`` when unknown."""
        return _RESOURCE_PERCENT[resource](self)  # only the one asked for: alerts ask every sample

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (timestamp as ISO 8601 UTC, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _NESTED:
                value = [item.to_dict() for item in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceUtilization:
        """Inverse of :meth:`to_dict`; also takes a partial sample (missing metrics are ``None``).

        Raises ``ValueError`` when ``worker_id`` or ``timestamp`` is missing or malformed, and
        one ``ValueError`` naming every unknown key (with the closest known field: ``cpu`` is
        not ``cpu_percent``), missing required nested field and value of the wrong type.
        Values of the right type but out of their domain are repaired, not refused
        (``invalid_fields``).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a sample must be a mapping, not {type(data).__name__}")
        if not data.get("worker_id"):
            raise ValueError("a sample needs a non-empty 'worker_id'")
        if "timestamp" not in data:
            raise ValueError("a sample needs a 'timestamp'")
        problems = pushed_problems(cls, data)
        if not problems and data.get("gpus"):  # a GPU's series are keyed by its uuid: two alike would merge
            first: dict[Any, int] = {}
            for index, gpu in enumerate(data["gpus"]):
                uuid = gpu.get("uuid") if isinstance(gpu, Mapping) else getattr(gpu, "uuid", None)
                seen = first.setdefault(uuid, index)
                if seen != index:
                    problems.append(f"gpus[{index}].uuid {uuid!r} is gpus[{seen}]'s too: each GPU needs its own")
        if problems:
            raise ValueError(f"sample of worker {data['worker_id']!r} refused: " + "; ".join(problems))
        kwargs: dict[str, Any] = {}
        for name in cls._NAMES:
            value = data.get(name)
            if value is None:
                continue
            if name in _NESTED:
                value = tuple(_NESTED[name].from_dict(item) for item in value)
            elif name == "timestamp":
                value = _parse_time(value)
            elif name == "per_cpu_percent":
                value = tuple(finite(v) for v in value)
            elif name in ("task_ids", "simulated_fields", "invalid_fields"):
                value = tuple(str(v) for v in value)
            elif name == "worker_id":
                value = str(value)
            kwargs[name] = value
        return cls(**kwargs)


for _cls in (GpuUtilization, DiskIO, NicIO, MountUsage, ResourceUtilization):
    _classify(_cls)

RESOURCES: tuple[str, ...] = ("cpu", "memory", "gpu", "gpu_memory", "disk")
_RESOURCE_PERCENT = dict(zip(RESOURCES, map(operator.attrgetter, (
    "cpu_percent", "memory_percent", "gpu_utilization_percent", "gpu_memory_percent", "disk_usage_percent"))))


def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; a naive ``datetime`` is read as UTC (the product's times all are)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
