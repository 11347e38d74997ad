"""What a process tree is using: one task's root process and all of its descendants.

`ProcessTreeSampler` reads the tree with psutil on demand and keeps running totals over the
task's life. Processes come and go while a task runs, so:

- a process that vanishes or is denied between listing and reading (``NoSuchProcess``,
  ``ZombieProcess``, ``AccessDenied`` on any call) is skipped and counted, never fatal;
- a process seen for the first time has no reference point, so it adds nothing to the
  interval's ``cpu_percent``; the first sample's ``cpu_percent`` is ``None``, not 0;
- a descendant whose parent exited (re-parented away from the tree) is still followed;
- usage of processes that already exited is kept: each process's last reading stays in the
  totals, and so does what the kernel folds into a parent when it reaps a child (Linux adds a
  reaped child's CPU time to the parent's ``children_user/system`` and its I/O to the parent's
  ``io_counters``); the totals take the larger of these estimates, so nothing is counted twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psutil

log = logging.getLogger(__name__)

# Below this interval cpu_times' clock-tick resolution (10 ms on Linux) makes a percent noise.
MIN_CPU_INTERVAL_S = 0.05


class GpuProcessMemorySource(Protocol):
    """What the sampler needs from the NVML gateway (``fleet_hwmon.sampling.nvml``)."""

    def process_gpu_memory_bytes(self, pids: set[int]) -> dict[str, int] | None:
        """GPU uuid -> bytes used by ``pids`` on that GPU (0 on a readable GPU they do not
        use); ``None`` when NVML is unavailable."""

    # Optional: ``process_gpu_utilization_percent(pids, last_seen_us) -> float | None``, the
    # pids' GPU utilization since the caller's last call (percent of one GPU).


@dataclass(frozen=True, slots=True)
class ProcessTreeSample:
    """One reading of a task's process tree.

    - ``timestamp``: UTC; ``elapsed_s``: monotonic seconds since the sampler was created.
    - ``pids``: the processes read (root first, then descendants); ``num_processes`` counts them.
    - ``skipped_processes``: listed but unreadable (vanished, zombie or access denied).
    - ``cpu_percent``: CPU time used by the tree over the interval since the previous sample
      (``Process.cpu_times()`` user + system deltas over a monotonic interval), in percent of
      one core (200 = two cores busy). Only processes present in both samples contribute.
      ``None`` on the first sample, when no process was in both, or when the interval was
      shorter than the clock-tick resolution allows.
    - ``rss_bytes``: sum of ``Process.memory_info().rss``.
      ``rss_bytes``, ``read_bytes`` and ``write_bytes`` are ``None`` when no process was readable.
    - ``read_bytes`` / ``write_bytes``: sum of cumulative ``Process.io_counters()`` storage bytes;
      ``None`` where the platform has no per-process I/O counters (macOS).
    - ``gpu_memory_bytes_by_uuid``: GPU uuid -> bytes used by these pids (NVML's per-process
      memory); ``gpu_memory_bytes`` is their sum. Both ``None`` when unknown.
    - ``gpu_utilization_percent``: the pids' GPU utilization since the previous sample (NVML
      per-process ``smUtil``), percent of one GPU; ``None`` when unknown.
    """

    timestamp: datetime
    elapsed_s: float
    root_pid: int
    pids: tuple[int, ...]
    num_processes: int
    skipped_processes: int
    cpu_percent: float | None
    rss_bytes: int | None
    read_bytes: int | None
    write_bytes: int | None
    gpu_memory_bytes: int | None = None
    gpu_memory_bytes_by_uuid: Mapping[str, int] | None = None
    gpu_utilization_percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ISO 8601 timestamp, lists for tuples, a plain dict for the GPU map."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["timestamp"] = self.timestamp.isoformat()
        out["pids"] = list(self.pids)
        if self.gpu_memory_bytes_by_uuid is not None:
            out["gpu_memory_bytes_by_uuid"] = dict(self.gpu_memory_bytes_by_uuid)
        return out


@dataclass(frozen=True, slots=True)
class ReapedUsage:
    """What the OS reports for the root once it has been reaped: ``os.wait4``'s rusage, which
    covers the root and every descendant that was waited for. Base units (seconds, bytes);
    ``None`` where the platform's rusage does not carry the number."""

    cpu_seconds: float | None = None  # ru_utime + ru_stime
    read_bytes: int | None = None  # ru_inblock * 512 (Linux)
    write_bytes: int | None = None  # ru_oublock * 512 (Linux)


@dataclass(frozen=True, slots=True)
class ProcessTreeTotals:
    """Running totals over a tree's life, including processes that already exited.

    ``cpu_seconds`` (user + system), ``read_bytes`` and ``write_bytes`` are lower bounds built
    from the last reading of every process seen, what parents' counters gained by reaping their
    children, and, when given, the root's `ReapedUsage`. ``peak_rss_bytes`` is the highest tree
    RSS sum seen in one sample. ``None`` = never read.
    """

    num_samples: int
    cpu_seconds: float | None
    peak_rss_bytes: int | None
    peak_cpu_percent: float | None
    read_bytes: int | None
    write_bytes: int | None
    gpu_memory_peak_bytes: int | None
    pids_seen: tuple[int, ...] = field(default=())
    gpu_utilization_mean_percent: float | None = None  # mean over the samples that read it


@dataclass(slots=True)
class _Reading:
    ppid: int | None
    own_cpu_s: float  # user + system of the process itself
    inclusive_cpu_s: float  # plus the reaped children folded into it
    rss_bytes: int
    read_bytes: int | None  # the kernel's figures already include reaped children
    write_bytes: int | None


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _max(*values: Any) -> Any:
    known = [v for v in values if v is not None]
    return max(known) if known else None


class ProcessTreeSampler:
    """Samples ``root_pid`` and its live descendants; thread-safe (one lock per sampler).

    ``psutil_module`` is injectable for tests (it needs ``Process``, ``NoSuchProcess`` and
    ``AccessDenied``); ``nvml`` is any object with ``process_gpu_memory_bytes(pids)`` (see
    `GpuProcessMemorySource`) or ``None``; ``clock`` is a monotonic clock in seconds.

    Example::

        sampler = ProcessTreeSampler(proc.pid)
        first = sampler.sample()          # cpu_percent is None: no reference point yet
        later = sampler.sample()          # cpu_percent over the interval in between
        totals = sampler.totals()
    """

    def __init__(self, root_pid: int, psutil_module: Any = psutil, nvml: GpuProcessMemorySource | None = None,
                 *, clock: Callable[[], float] = time.monotonic,
                 min_cpu_interval_s: float = MIN_CPU_INTERVAL_S) -> None:
        self.root_pid = root_pid
        self._nvml = nvml
        self._clock = clock
        self._min_interval_s = min_cpu_interval_s
        self._errors: tuple[type[BaseException], ...] = (
            getattr(psutil_module, "NoSuchProcess", psutil.NoSuchProcess),
            getattr(psutil_module, "AccessDenied", psutil.AccessDenied),
        )
        self._lock = threading.Lock()
        self._started_s = clock()
        self._io_supported = True
        self._gpu_error_logged = False
        try:
            self._root: Any = psutil_module.Process(root_pid)
        except self._errors:
            self._root = None
        # State below is guarded by self._lock.
        self._procs: dict[int, Any] = {}  # pid -> Process, for re-parented descendants
        self._alive: dict[tuple[int, float], _Reading] = {}  # last reading of each live process
        self._own_cpu_last: dict[tuple[int, float], float] = {}  # every process ever read
        self._prev_cpu: dict[tuple[int, float], float] = {}
        self._prev_time: float | None = None
        self._orphaned = _Reading(None, 0.0, 0.0, 0, 0, 0)  # exited with no parent in the tree
        self._num_samples = 0
        self._best_inclusive_cpu_s = 0.0
        self._best_read: int | None = None
        self._best_write: int | None = None
        self._peak_rss: int | None = None
        self._peak_cpu_percent: float | None = None
        self._gpu_peak: int | None = None
        self._gpu_seen_us: dict[str, int] = {}  # for NVML's per-process utilization samples
        self._gpu_util_total = 0.0
        self._gpu_util_count = 0

    # -- public ---------------------------------------------------------------------------
    def sample(self) -> ProcessTreeSample | None:
        """Read the tree now. Returns ``None`` when the root process is gone (or was never
        readable); unreadable descendants are skipped and counted, never raised."""
        with self._lock:
            result = self._sample_locked()
        if result is None or self._nvml is None:
            return result
        # NVML is I/O-like: query it outside the lock, then fold the figures in under it.
        pids = set(result.pids)
        by_uuid = self._gpu_memory(pids)
        utilization = self._gpu_utilization(pids)
        if by_uuid is None and utilization is None:
            return result
        total = sum(by_uuid.values()) if by_uuid is not None else None
        with self._lock:
            self._gpu_peak = _max(self._gpu_peak, total)
            if utilization is not None:
                self._gpu_util_total += utilization
                self._gpu_util_count += 1
        return ProcessTreeSample(**{**{n: getattr(result, n) for n in result.__slots__},
                                    "gpu_memory_bytes": total, "gpu_memory_bytes_by_uuid": by_uuid,
                                    "gpu_utilization_percent": utilization})

    def totals(self, reaped: ReapedUsage | None = None) -> ProcessTreeTotals:
        """Totals so far; pass the root's `ReapedUsage` once it has exited to close the gaps
        between the last sample and the end (short-lived children, the final seconds)."""
        with self._lock:
            cpu = _max(sum(self._own_cpu_last.values()) if self._own_cpu_last else None,
                       self._best_inclusive_cpu_s if self._num_samples else None)
            read, write, rss = self._best_read, self._best_write, self._peak_rss
            if reaped is not None:
                if reaped.cpu_seconds is not None:
                    cpu = _max(cpu, reaped.cpu_seconds + self._orphaned.inclusive_cpu_s)
                read = _max(read, _add(reaped.read_bytes, self._orphaned.read_bytes))
                write = _max(write, _add(reaped.write_bytes, self._orphaned.write_bytes))
            return ProcessTreeTotals(
                num_samples=self._num_samples, cpu_seconds=cpu, peak_rss_bytes=rss,
                peak_cpu_percent=self._peak_cpu_percent, read_bytes=read, write_bytes=write,
                gpu_memory_peak_bytes=self._gpu_peak,
                pids_seen=tuple(sorted({key[0] for key in self._own_cpu_last})),
                gpu_utilization_mean_percent=(self._gpu_util_total / self._gpu_util_count
                                              if self._gpu_util_count else None),
            )

    def tracked_processes(self) -> list[Any]:
        """psutil ``Process`` objects of the tree seen so far (root included) that may still
        run, e.g. to signal descendants that left the root's process group."""
        with self._lock:
            procs = list(self._procs.values())
        if self._root is not None and all(p.pid != self._root.pid for p in procs):
            procs.insert(0, self._root)
        return procs

    # -- internals ------------------------------------------------------------------------
    def _sample_locked(self) -> ProcessTreeSample | None:
        root = self._root
        if root is None:
            return None
        now = self._clock()
        try:
            listed = [root, *root.children(recursive=True)]
        except self._errors:
            return None
        candidates = {proc.pid: proc for proc in listed}
        for pid, proc in list(self._procs.items()):
            if pid in candidates:
                continue
            try:
                running = proc.is_running()  # also checks create_time, so a reused pid is not ours
            except self._errors:
                running = False
            if running:
                candidates[pid] = proc
            else:
                del self._procs[pid]

        readings: dict[tuple[int, float], _Reading] = {}
        skipped = 0
        for pid, proc in candidates.items():
            try:
                key, reading = self._read(proc)
            except self._errors:
                skipped += 1
                continue
            readings[key] = reading
            self._procs[pid] = proc

        self._fold_vanished(readings, set(candidates))
        cpu_percent = self._interval_cpu_percent(readings, now)
        # A listed but unreadable process keeps its previous reading until it is really gone.
        kept = {key: r for key, r in self._alive.items() if key[0] in candidates and key not in readings}
        self._alive = {**kept, **readings}
        self._num_samples += 1
        for key, reading in readings.items():
            self._own_cpu_last[key] = reading.own_cpu_s

        rss = sum(r.rss_bytes for r in readings.values()) if readings else None
        read = write = None
        if self._io_supported and readings:
            read = sum(r.read_bytes or 0 for r in readings.values())
            write = sum(r.write_bytes or 0 for r in readings.values())
            self._best_read = _max(self._best_read, read + (self._orphaned.read_bytes or 0))
            self._best_write = _max(self._best_write, write + (self._orphaned.write_bytes or 0))
        inclusive = sum(r.inclusive_cpu_s for r in readings.values()) + self._orphaned.inclusive_cpu_s
        self._best_inclusive_cpu_s = max(self._best_inclusive_cpu_s, inclusive)
        self._peak_rss = _max(self._peak_rss, rss)
        self._peak_cpu_percent = _max(self._peak_cpu_percent, cpu_percent)
        return ProcessTreeSample(
            timestamp=datetime.now(UTC), elapsed_s=now - self._started_s,
            root_pid=self.root_pid, pids=tuple(key[0] for key in readings),
            num_processes=len(readings), skipped_processes=skipped, cpu_percent=cpu_percent,
            rss_bytes=rss, read_bytes=read, write_bytes=write,
        )

    def _read(self, proc: Any) -> tuple[tuple[int, float], _Reading]:
        oneshot = getattr(proc, "oneshot", None)
        with oneshot() if oneshot is not None else contextlib.nullcontext():
            key = (proc.pid, proc.create_time())
            times = proc.cpu_times()
            rss = int(proc.memory_info().rss)
            ppid = proc.ppid() if hasattr(proc, "ppid") else None
            read = write = None
            if self._io_supported:
                try:
                    io = proc.io_counters()
                    read, write = int(io.read_bytes), int(io.write_bytes)
                except (AttributeError, NotImplementedError):
                    self._io_supported = False  # macOS: psutil has no per-process I/O counters
        own = float(times.user) + float(times.system)
        reaped = float(getattr(times, "children_user", 0.0)) + float(getattr(times, "children_system", 0.0))
        return key, _Reading(ppid, own, own + reaped, rss, read, write)

    def _fold_vanished(self, readings: dict[tuple[int, float], _Reading], present_pids: set[int]) -> None:
        """Processes gone since the last sample: a parent still in the tree (or one that left
        with them) has already folded their usage into its own counters; the others were
        reaped outside the tree, so their last reading is kept separately."""
        vanished = {key: r for key, r in self._alive.items() if key[0] not in present_pids}
        if not vanished:
            return
        inside = {key[0] for key in readings} | {key[0] for key in vanished}
        orphaned = self._orphaned
        for reading in vanished.values():
            if reading.ppid in inside:
                continue
            orphaned.inclusive_cpu_s += reading.inclusive_cpu_s
            orphaned.read_bytes = (orphaned.read_bytes or 0) + (reading.read_bytes or 0)
            orphaned.write_bytes = (orphaned.write_bytes or 0) + (reading.write_bytes or 0)

    def _interval_cpu_percent(self, readings: dict[tuple[int, float], _Reading], now: float) -> float | None:
        prev_time, prev_cpu = self._prev_time, self._prev_cpu
        if prev_time is not None and now - prev_time < self._min_interval_s:
            return None  # keep the older reference so the next interval is long enough
        self._prev_cpu = {key: r.own_cpu_s for key, r in readings.items()}
        self._prev_time = now
        # A process first seen now has no reference point: it adds nothing rather than a fake 0.
        common = [key for key in readings if key in prev_cpu]
        if prev_time is None or not common:
            return None
        used_s = sum(max(0.0, readings[key].own_cpu_s - prev_cpu[key]) for key in common)
        return 100.0 * used_s / (now - prev_time)

    def _gpu_utilization(self, pids: set[int]) -> float | None:
        query = getattr(self._nvml, "process_gpu_utilization_percent", None)
        if query is None:
            return None
        try:
            return query(pids, self._gpu_seen_us)
        except Exception:  # a failing GPU query must not cost the CPU/memory sample
            if not self._gpu_error_logged:
                self._gpu_error_logged = True
                log.warning("per-process GPU utilization query failed; it stays unknown", exc_info=True)
            return None

    def _gpu_memory(self, pids: set[int]) -> dict[str, int] | None:
        try:
            answer = self._nvml.process_gpu_memory_bytes(pids)  # type: ignore[union-attr]
        except Exception:  # a failing GPU query must not cost the CPU/memory sample
            if not self._gpu_error_logged:
                self._gpu_error_logged = True
                log.warning("per-process GPU memory query failed; GPU memory stays unknown",
                            exc_info=True)
            return None
        # The gateway lists every GPU whose process list it could read (0 when unused), so an
        # empty map means nothing could be read: unknown, not 0.
        if not answer:
            return None
        return {str(uuid): int(used) for uuid, used in answer.items() if used is not None} or None
