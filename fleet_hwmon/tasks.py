"""What a task used: running peak / mean / totals over the samples taken while it ran (pure).

The accumulator keeps running sums, not the samples, so a long task costs constant memory.
Totals of bytes integrate each sample's rate over the interval it covers (the time since the
previous sample of the task); the sample taken at the task's start covers time before the task
and contributes no bytes.

Two clocks: the task's start and end are dated by the wall clock (``start_time``,
``end_time``), but its duration, its sample membership and the intervals of its totals come
from the monotonic clock (``start_s``, ``end_s``, each sample's ``monotonic_s``), so a step of
the wall clock during the task changes none of them. Only where a monotonic reading is missing
(a sample recorded without one) does the wall clock stand in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fleet_hwmon.sample import GpuUtilization, ResourceUtilization


@dataclass(frozen=True, slots=True)
class TaskResourceUsage:
    """Resource use of one task on one worker. Percent values are 0-100 of the worker, peaks and
    means over the task's samples; ``None`` means no sample had a known value. ``process_*``
    fields come from measuring the task's own process tree when it ran as a subprocess (CPU
    seconds from ``psutil.Process.cpu_times``, RSS from ``memory_info``, bytes from
    ``io_counters``, GPU memory and utilization from NVML per PID; ``process_gpu_utilization_percent``
    is the tree's mean GPU utilization in percent of one GPU); ``simulated_fields`` names generated
    values. ``hardware_events`` says what the worker's GPUs went through while the task ran
    (``"GPU 0 lost: GpuIsLost"``, ``"GPU 0 XID 79"``, ``"GPU 0 thermal throttling"``, ...; see
    :func:`gpu_events`), so a failure can be told from a sick machine's."""

    task_id: str
    worker_id: str
    start_time: datetime
    end_time: datetime | None = None
    duration_s: float | None = None
    success: bool | None = None
    error: str | None = None
    task_type: str | None = None
    sample_count: int = 0
    peak_cpu_percent: float | None = None
    mean_cpu_percent: float | None = None
    peak_memory_percent: float | None = None
    mean_memory_percent: float | None = None
    peak_memory_used_bytes: int | None = None
    peak_gpu_utilization_percent: float | None = None
    mean_gpu_utilization_percent: float | None = None
    peak_gpu_memory_used_bytes: int | None = None
    disk_read_bytes: float | None = None
    disk_write_bytes: float | None = None
    net_sent_bytes: float | None = None
    net_recv_bytes: float | None = None
    process_cpu_seconds: float | None = None
    process_peak_rss_bytes: int | None = None
    process_read_bytes: int | None = None
    process_write_bytes: int | None = None
    process_gpu_memory_peak_bytes: int | None = None
    process_gpu_utilization_percent: float | None = None
    simulated_fields: tuple[str, ...] = ()
    hardware_events: tuple[str, ...] = ()

    @property
    def hardware_verdict(self) -> str | None:
        """``"failed on a degraded GPU"`` for a failed task whose GPU was lost, degraded or
        raised an XID while it ran, ``"failed on a throttled GPU"`` for one that saw only
        throttling; ``None`` otherwise."""
        return hardware_verdict(self.success, self.hardware_events)

    def with_process_usage(self, **fields: Any) -> TaskResourceUsage:
        """A copy with ``process_*`` (or other) fields filled in."""
        return replace(self, **fields)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for key in ("start_time", "end_time"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        out["simulated_fields"] = list(self.simulated_fields)
        out["hardware_events"] = list(self.hardware_events)
        return out


_SICK = (" lost", " degraded", " XID ")


def hardware_verdict(success: bool | None, events: Any) -> str | None:
    """See :attr:`TaskResourceUsage.hardware_verdict`; ``events`` as stored (a list of strings)."""
    if success is not False or not events:
        return None
    if any(marker in event for event in events for marker in _SICK):
        return "failed on a degraded GPU"
    return "failed on a throttled GPU"


def gpu_events(before: GpuUtilization | None, now: GpuUtilization) -> list[str]:
    """What changed on one GPU between two samples of a task (``before`` None: the task's first
    sample, when an unhealthy state or throttling already counts): a health change, a new XID
    event, thermal or hardware-slowdown throttling."""
    name = f"GPU {now.index}"
    events = []
    was = "ok" if before is None else before.health
    if now.health is not None and now.health != was:
        reason = f": {now.health_reason}" if now.health_reason else ""
        events.append(f"{name} {'ok again' if now.health == 'ok' else now.health}{reason}")
    if before is not None and now.xid_count is not None and before.xid_count is not None \
            and now.xid_count > before.xid_count:
        events.append(f"{name} XID {now.last_xid}")
    for reason in ("thermal", "hw_slowdown"):
        if reason in (now.throttle_reasons or "").split(","):
            events.append(f"{name} {reason.replace('_', ' ')} throttling")
    return events


TASK_STATES = ("completed", "failed", "cancelled", "queued")


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one task ended in one run, as its coordinator saw it (table ``task_outcomes``).

    ``state``: ``completed``, ``failed``, ``cancelled`` (stopped while it ran: Ctrl-C, a duration
    limit, ``stop(cancel_running=True)``) or ``queued`` (never started: still waiting when the
    run ended). ``reason``: the error, or for a task that never started the last reason no
    worker took it. ``worker_id``: where its last attempt ran (``None`` when it never started).
    Times are UTC; ``recorded_at`` dates the run's end.
    """

    task_id: str
    state: str
    recorded_at: datetime
    task_type: str | None = None
    worker_id: str | None = None
    attempts: int = 0
    reason: str | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.state not in TASK_STATES:
            raise ValueError(f"task state must be one of {', '.join(TASK_STATES)}, not {self.state!r}")


class _Stat:
    __slots__ = ("peak", "total", "count")

    def __init__(self) -> None:
        self.peak: float | None = None
        self.total = 0.0
        self.count = 0

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.total += value
        self.count += 1
        if self.peak is None or value > self.peak:
            self.peak = value

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class _Total:
    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes: float | None = None

    def add(self, rate_per_s: float | None, seconds: float) -> None:
        if rate_per_s is None:
            return
        self.bytes = (self.bytes or 0.0) + rate_per_s * seconds


class TaskAccumulator:
    """Running usage of one task; feed it the worker's samples with :meth:`add`."""

    _RATES = ("disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_sent_bytes_per_s", "net_recv_bytes_per_s")

    def __init__(self, task_id: str, worker_id: str, start_time: datetime, task_type: str | None = None,
                 start_s: float | None = None) -> None:
        self.task_id = task_id
        self.worker_id = worker_id
        self.start_time = start_time
        self.start_s = start_s  # monotonic seconds at the start, None when not read
        self.task_type = task_type
        self.sample_count = 0
        self._cpu, self._memory, self._gpu = _Stat(), _Stat(), _Stat()
        self._memory_bytes, self._gpu_memory_bytes = _Stat(), _Stat()
        self._totals = {name: _Total() for name in self._RATES}
        self._simulated: set[str] = set()
        self._last_time: datetime | None = None
        self._last_s: float | None = None
        self._gpus: dict[str, GpuUtilization] = {}  # the latest reading of each GPU during the task
        self._events: dict[str, None] = {}  # hardware events, in order, each once

    def _since(self, sample: ResourceUtilization) -> tuple[float | None, float | None]:
        """Seconds from the task's start and from the previous sample of the task to ``sample``
        (``None``: no previous one), by the monotonic clock when both readings have it."""
        if self.start_s is not None and sample.monotonic_s is not None:
            now = sample.monotonic_s
            return now - self.start_s, None if self._last_s is None else now - self._last_s
        start = (sample.timestamp - self.start_time).total_seconds()
        return start, None if self._last_time is None else (sample.timestamp - self._last_time).total_seconds()

    def add(self, sample: ResourceUtilization) -> None:
        since_start, since_last = self._since(sample)
        if since_start < 0:
            return  # taken before the task began: it says nothing about the task
        if since_last is not None and since_last <= 0:
            return  # the same sample seen twice (start sample also delivered by the loop)
        self.sample_count += 1
        self._cpu.add(sample.cpu_percent)
        self._memory.add(sample.memory_percent)
        self._memory_bytes.add(sample.memory_used_bytes)
        self._gpu.add(sample.gpu_utilization_percent)
        self._gpu_memory_bytes.add(sample.gpu_memory_used_bytes)
        if since_last is not None:
            for name, total in self._totals.items():
                total.add(getattr(sample, name), since_last)
        for gpu in sample.gpus:
            for event in gpu_events(self._gpus.get(gpu.uuid), gpu):
                self._events.setdefault(event)
            self._gpus[gpu.uuid] = gpu
        self._simulated.update(sample.simulated_fields)
        self._last_time = sample.timestamp
        self._last_s = sample.monotonic_s

    def duration_s(self, end_time: datetime, end_s: float | None = None) -> float | None:
        """Seconds from start to end: monotonic when both ends have it, else by the wall clock;
        ``None`` rather than a negative figure."""
        if self.start_s is not None and end_s is not None:
            seconds = end_s - self.start_s
        else:
            seconds = (end_time - self.start_time).total_seconds()
        return seconds if seconds >= 0 else None

    def snapshot(self, end_time: datetime | None = None, success: bool | None = None,
                 error: str | None = None, end_s: float | None = None) -> TaskResourceUsage:
        """The usage so far (``end_time`` None while running) or final (with ``end_time`` and,
        for the duration, the monotonic ``end_s``)."""
        def as_int(value: float | None) -> int | None:
            return None if value is None else int(value)

        totals = self._totals
        return TaskResourceUsage(
            task_id=self.task_id, worker_id=self.worker_id, start_time=self.start_time,
            end_time=end_time,
            duration_s=None if end_time is None else self.duration_s(end_time, end_s),
            success=success, error=error, task_type=self.task_type, sample_count=self.sample_count,
            peak_cpu_percent=self._cpu.peak, mean_cpu_percent=self._cpu.mean,
            peak_memory_percent=self._memory.peak, mean_memory_percent=self._memory.mean,
            peak_memory_used_bytes=as_int(self._memory_bytes.peak),
            peak_gpu_utilization_percent=self._gpu.peak, mean_gpu_utilization_percent=self._gpu.mean,
            peak_gpu_memory_used_bytes=as_int(self._gpu_memory_bytes.peak),
            disk_read_bytes=totals["disk_read_bytes_per_s"].bytes,
            disk_write_bytes=totals["disk_write_bytes_per_s"].bytes,
            net_sent_bytes=totals["net_sent_bytes_per_s"].bytes,
            net_recv_bytes=totals["net_recv_bytes_per_s"].bytes,
            simulated_fields=tuple(sorted(self._simulated)),
            hardware_events=tuple(self._events),
        )
