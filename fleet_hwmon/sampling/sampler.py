"""Builds one ``ResourceUtilization`` from a set of metric sources, never letting one kill it."""

from __future__ import annotations

import logging
import threading
import time
from types import ModuleType
from typing import Any, Callable, Sequence

import psutil as _psutil

from fleet_hwmon.clocks import WallClockStepDetector
from fleet_hwmon.levels import MonitoringLevel
from fleet_hwmon.logutil import RateLimitedLogger
from fleet_hwmon.sample import ResourceUtilization, utc_now
from fleet_hwmon.sampling.cgroup import CgroupReader
from fleet_hwmon.sampling.host import (
    CpuSource,
    DiskSource,
    GpuSource,
    LoadSource,
    MemorySource,
    MetricSource,
    NetworkSource,
    TemperatureSource,
)

log = logging.getLogger(__name__)


# Raised by our own reader code, not by the hardware or the OS: a bug, not a fault to count.
PROGRAMMING_ERRORS = (TypeError, AttributeError, KeyError)
_bug_count = 0  # process-wide, so a test run can fail on any reader bug (tests/conftest.py)


def reader_bug_count() -> int:
    """How many times a reader raised a programming error in this process."""
    return _bug_count


class Sampler:
    """Reads every source and merges their fields into one sample of ``worker_id``.

    A source that raises is logged (once per source and error type, then rate-limited) and
    counted in ``errors``; its fields are ``None`` in that sample, the others are kept.
    A ``TypeError``, ``AttributeError`` or ``KeyError`` is a bug in the reader, not a fault of
    the host: it is logged at ERROR with its traceback once per reader and counted in
    ``reader_bugs``, never in ``errors`` (which say what NVML, psutil or the OS refused).
    ``sample`` is serialised by a lock: psutil's CPU reference points are process-global
    state, and a task's start/stop sample may run beside the sampling thread.

    Each sample carries the wall-clock ``timestamp`` and the monotonic ``monotonic_s`` read
    together; a step of the wall clock between two readings is logged once by ``clock_steps``
    (a :class:`WallClockStepDetector`, shared with whoever else reads the same clocks).
    """

    def __init__(self, worker_id: str, sources: Sequence[MetricSource], *,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], Any] = utc_now,
                 clock_steps: WallClockStepDetector | None = None) -> None:
        self.worker_id = worker_id
        self.sources = list(sources)
        self.errors: dict[str, int] = {s.name: 0 for s in self.sources}
        self.reader_bugs: dict[str, int] = {}
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._log = RateLimitedLogger(log)
        self.clock_steps = clock_steps or WallClockStepDetector(f"worker {worker_id}")

    def sample(self, task_ids: Sequence[str] = ()) -> ResourceUtilization:
        fields: dict[str, Any] = {}
        with self._lock:
            now_s = self._clock()
            timestamp = self._wall_clock()
            self.clock_steps.observe(timestamp, now_s)
            for source in self.sources:
                try:
                    fields.update(source.read(now_s))
                except PROGRAMMING_ERRORS:
                    self._reader_bug(source.name)
                except Exception as err:  # one broken source must not cost the whole sample
                    self.errors[source.name] = self.errors.get(source.name, 0) + 1
                    self._log.log(f"{source.name}:{type(err).__name__}", logging.WARNING,
                                  "metric source %r failed on worker %s: %s: %s",
                                  source.name, self.worker_id, type(err).__name__, err)
        return ResourceUtilization(worker_id=self.worker_id, timestamp=timestamp, monotonic_s=now_s,
                                   task_ids=tuple(task_ids), **fields)

    def _reader_bug(self, name: str) -> None:
        global _bug_count
        _bug_count += 1
        first = name not in self.reader_bugs
        self.reader_bugs[name] = self.reader_bugs.get(name, 0) + 1
        if first:  # with the traceback, on the thread that caught it
            log.exception("bug in the %r reader on worker %s (its fields are unknown in this sample; "
                          "logged once per reader)", name, self.worker_id)


def build_host_sources(level: MonitoringLevel, *, psutil: ModuleType = _psutil, nvml: Any = None,
                       cgroup: CgroupReader | None = None, disk_path: str = "/") -> list[MetricSource]:
    """The host's sources for ``level``'s metric groups (see :class:`MonitoringLevel`).

    ``nvml`` is an ``NvmlGateway`` (or a test double); ``None`` leaves GPUs out.
    ``cgroup`` defaults to the real ``/sys/fs/cgroup`` reader.
    """
    groups = level.metric_groups
    cgroup = cgroup if cgroup is not None else CgroupReader()
    mount_log = RateLimitedLogger(log)
    sources: list[MetricSource] = []
    if "cpu" in groups:
        sources.append(CpuSource(psutil, per_cpu="per_cpu" in groups, detail="cpu_detail" in groups,
                                 cgroup=cgroup if "cgroup" in groups else None))
    if "load" in groups:
        sources.append(LoadSource(psutil))
    if "memory" in groups:
        sources.append(MemorySource(psutil, cgroup=cgroup if "cgroup" in groups else None,
                                    swap="load" in groups))
    if "disk" in groups:
        sources.append(DiskSource(
            psutil, disk_path=disk_path, per_disk="per_disk" in groups, mounts="mounts" in groups,
            on_mount_error=lambda mount, err: mount_log.log(
                f"mount:{mount}", logging.INFO, "skipping unreadable mount %s: %s", mount, err)))
    if "network" in groups:
        sources.append(NetworkSource(psutil, per_nic="per_nic" in groups))
    if "cpu_detail" in groups:
        sources.append(TemperatureSource(psutil))
    if "gpu" in groups and nvml is not None:
        sources.append(GpuSource(nvml, detailed="gpu_detail" in groups))
    return sources
