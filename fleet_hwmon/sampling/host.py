"""Readers of the host: psutil (CPU, memory, disk, network, sensors), cgroup limits, NVML GPUs.

Each source reads one group of metrics and returns a dict of ``ResourceUtilization`` field
values; it does no other I/O. A group that raises loses only its own fields for that sample
(the sampler guards each group separately). Probing what the machine has happens once, in
``__init__``; ``read`` is the short per-sample path.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Protocol

import psutil as _psutil

from fleet_hwmon.sample import DiskIO, MountUsage, NicIO
from fleet_hwmon.sampling.cgroup import CgroupLimits, CgroupReader, effective_cpu_count, effective_memory
from fleet_hwmon.sampling.counters import CounterRates, summed

log = logging.getLogger(__name__)

# Mount types that are not storage a test writes to; skipped in the per-mount view.
_PSEUDO_FS = frozenset({"squashfs", "tmpfs", "devtmpfs", "overlay", "proc", "sysfs", "cgroup", "cgroup2",
                        "autofs", "nsfs", "fuse.snapfuse", "iso9660", "udf"})


class MetricSource(Protocol):
    """One group of metrics. ``read(now_s)`` gets the monotonic time of the sample and returns
    ``ResourceUtilization`` field values; it may raise, which loses only its own fields."""

    name: str

    def read(self, now_s: float) -> dict[str, Any]: ...


def cpu_busy_total_s(times: Any) -> tuple[float, float]:
    """``(busy_s, total_s)`` of one ``psutil.cpu_times()`` tuple, as psutil computes it: guest
    time is already inside user/nice on Linux, and idle and iowait are not busy."""
    total = sum(times)
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


def cpu_times_delta(before: Any, after: Any) -> tuple[Any, tuple[str, ...]]:
    """Per-field delta of two ``psutil.cpu_times()`` tuples, and the names of the fields that went
    backwards. Such a field counts 0 for the interval, psutil's own rule (some kernels' steal and
    iowait counters step back), so the other fields still give a percent."""
    backwards = tuple(name for name, b, a in zip(after._fields, before, after) if a < b)
    return after._make(max(0.0, a - b) for b, a in zip(before, after)), backwards


def _percent(delta: Any) -> float | None:
    busy, total = cpu_busy_total_s(delta)
    if total <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * busy / total))


class CpuSource:
    """``cpu_percent`` (and per-CPU when asked), 0-100, from ``psutil.cpu_times()`` deltas.

    The deltas are kept per source rather than through ``psutil.cpu_percent(interval=None)``,
    whose reference point is process-global (two monitors in one process would reset each
    other) and whose first call returns a meaningless 0.0 (C01). The constructor takes the
    reference reading; a read less than ``min_interval_s`` after the previous one reports
    ``None`` (an interval shorter than one 10 ms tick of ``cpu_times`` is noise, and unknown is
    not idle). The guard is kept well below any sampling interval: the loop's ticks are
    ``interval`` apart only on average, so a guard equal to the interval would turn every
    slightly early tick into ``None``. The first reading needs ``min_first_window_s``: the tick
    taken as the monitor starts covers a few milliseconds of its own start-up, a noisy
    figure (at 10 ms per tick, 5 ms on 2 CPUs reads 0, 50 or 100 %) that would raise alerts.
    A time field that goes backwards counts 0 for that interval (see :func:`cpu_times_delta`);
    it is logged once per field.
    """

    name = "cpu"
    QUOTA_REFRESH_S = 5.0

    def __init__(self, psutil: ModuleType = _psutil, *, per_cpu: bool = False, detail: bool = False,
                 cgroup: CgroupReader | None = None, min_interval_s: float = 0.01,
                 min_first_window_s: float = 0.1) -> None:
        self._ps = psutil
        self._min_first_window_s = min_first_window_s
        self._warm = False
        self._per_cpu = per_cpu
        self._detail = detail
        self._cgroup = cgroup
        self._min_interval_s = min_interval_s
        self._previous = self._times()
        self._previous_s = time.monotonic()
        self._quota_cache: tuple[float, float | None] | None = None
        try:
            self._affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._affinity = None
        self._logical = self._ps.cpu_count()
        self._has_freq = detail and hasattr(self._ps, "cpu_freq")
        self._backwards_logged: set[str] = set()

    def _quota(self, now_s: float) -> float | None:
        """The cgroup CPU quota, re-read every ``QUOTA_REFRESH_S``: it only changes when the
        container is updated, and the memory source already reads the cgroup every sample."""
        if self._cgroup is None:
            return None
        if self._quota_cache is None or now_s - self._quota_cache[0] >= self.QUOTA_REFRESH_S:
            self._quota_cache = (now_s, self._cgroup.read().cpu_quota_cores)
        return self._quota_cache[1]

    def _times(self) -> tuple[Any, list[Any] | None]:
        total = self._ps.cpu_times()
        per_cpu = list(self._ps.cpu_times(percpu=True)) if self._per_cpu else None
        return total, per_cpu

    def _percent_between(self, before: Any, after: Any) -> float | None:
        delta, backwards = cpu_times_delta(before, after)
        for name in backwards:
            if name not in self._backwards_logged:
                self._backwards_logged.add(name)
                log.warning("CPU time field %r went backwards (%.2f -> %.2f s); it counts 0 for such "
                            "intervals", name, getattr(before, name), getattr(after, name))
        return _percent(delta)

    def read(self, now_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        window = self._min_interval_s if self._warm else self._min_first_window_s
        if now_s - self._previous_s >= window:
            self._warm = True
            current = self._times()
            (total_before, per_before), (total_now, per_now) = self._previous, current
            out["cpu_percent"] = self._percent_between(total_before, total_now)
            if per_now is not None and per_before is not None and len(per_now) == len(per_before):
                out["per_cpu_percent"] = tuple(self._percent_between(b, a) for b, a in zip(per_before, per_now))
            self._previous, self._previous_s = current, now_s
        quota = self._quota(now_s)
        out["cgroup_cpu_quota_cores"] = quota
        out["cpu_count_effective"] = effective_cpu_count(quota, self._affinity, self._logical)
        if self._has_freq:
            freq = self._ps.cpu_freq()
            out["cpu_frequency_mhz"] = freq.current if freq else None
        return out


class LoadSource:
    """``load_average_1m/5m/15m`` from ``psutil.getloadavg()`` (emulated by psutil on Windows)."""

    name = "load"

    def __init__(self, psutil: ModuleType = _psutil) -> None:
        self._ps = psutil

    def read(self, now_s: float) -> dict[str, Any]:
        one, five, fifteen = self._ps.getloadavg()
        return {"load_average_1m": one, "load_average_5m": five, "load_average_15m": fifteen}


class MemorySource:
    """Memory from ``psutil.virtual_memory()`` / ``swap_memory()``, corrected by the cgroup limit.

    Inside a memory-limited container psutil still reports the host (``/proc/meminfo``); the
    effective total is then ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1) and used is the
    cgroup's working set (usage less inactive file pages), so percent is measured against what
    the worker may really use and page cache never makes it look full. The cgroup's raw usage is
    kept in ``cgroup_memory_usage_bytes``.
    """

    name = "memory"

    def __init__(self, psutil: ModuleType = _psutil, *, cgroup: CgroupReader | None = None,
                 swap: bool = True) -> None:
        self._ps = psutil
        self._cgroup = cgroup
        self._swap = swap

    def read(self, now_s: float) -> dict[str, Any]:
        vm = self._ps.virtual_memory()
        out: dict[str, Any] = {}
        if self._cgroup is not None:
            limits = self._cgroup.read_memory()  # the CPU source reads the quota
            total, used, percent, source = effective_memory(vm.total, vm.available, limits)
            out["cgroup_memory_limit_bytes"] = limits.memory_limit_bytes
            out["cgroup_memory_usage_bytes"] = limits.memory_usage_bytes
        else:
            total, used, percent, source = effective_memory(vm.total, vm.available, _NO_LIMITS)
        out.update(memory_total_bytes=total, memory_used_bytes=used, memory_percent=percent)
        if source == "cgroup":
            out["memory_available_bytes"] = None if used is None else max(0, total - used)
        else:
            out["memory_available_bytes"] = vm.available
        if self._swap:
            swap = self._ps.swap_memory()
            out.update(swap_used_bytes=swap.used, swap_percent=swap.percent if swap.total else None)
        return out


class DiskSource:
    """Disk space of ``disk_path`` (``psutil.disk_usage``), read/write rates of whole physical
    disks (``psutil.disk_io_counters(perdisk=True)`` deltas; partitions, loop, zram and
    device-mapper devices are left out so no byte is counted twice), and, when ``mounts`` is
    set, the space of every real mount (a mount that cannot be read is skipped, C04)."""

    name = "disk"

    def __init__(self, psutil: ModuleType = _psutil, *, disk_path: str = "/", per_disk: bool = False,
                 mounts: bool = False, sys_block: str = "/sys/block",
                 on_mount_error: Callable[[str, BaseException], None] | None = None) -> None:
        self._ps = psutil
        self._disk_path = disk_path
        self._per_disk = per_disk
        self._mounts = mounts
        self._rates = CounterRates()
        self._on_mount_error = on_mount_error
        block = Path(sys_block)
        self._physical: frozenset[str] | None = (
            frozenset(p.name for p in block.iterdir() if (p / "device").exists()) if block.is_dir() else None
        )
        self._io_counters(time.monotonic())  # reference point, so the first sample has a rate

    def _io_counters(self, now_s: float) -> dict[str, tuple[float | None, ...]]:
        counters = self._ps.disk_io_counters(perdisk=True) or {}
        if self._physical is not None:
            counters = {k: v for k, v in counters.items() if k in self._physical}
        return self._rates.update({k: (v.read_bytes, v.write_bytes) for k, v in counters.items()}, now_s)

    def read(self, now_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {"disk_usage_percent": self._ps.disk_usage(self._disk_path).percent}
        rates = self._io_counters(now_s)
        out["disk_read_bytes_per_s"], out["disk_write_bytes_per_s"] = summed(rates, 2)
        if self._per_disk:
            out["disks"] = tuple(DiskIO(name, r, w) for name, (r, w) in sorted(rates.items()))
        if self._mounts:
            out["mounts"] = self._read_mounts()
        return out

    def _read_mounts(self) -> tuple[MountUsage, ...]:
        usages = []
        for part in self._ps.disk_partitions(all=False):
            if part.fstype in _PSEUDO_FS:
                continue
            try:
                usage = self._ps.disk_usage(part.mountpoint)
            except (OSError, RuntimeError) as err:  # empty drive, vanished mount, denied bind mount
                if self._on_mount_error is not None:
                    self._on_mount_error(part.mountpoint, err)
                continue
            usages.append(MountUsage(part.mountpoint, usage.percent, usage.free, usage.total))
        return tuple(usages)


class NetworkSource:
    """Send/receive rates from ``psutil.net_io_counters(pernic=True)``, per NIC then summed, so a
    vanished NIC stops contributing and a wrap or reset never becomes a negative spike (C03).

    The totals leave out loopback interfaces (``psutil.net_if_stats()`` flags ``loopback``; by
    name where the flags are not reported: ``lo``, ``lo0``, Windows' "Loopback Pseudo-Interface"):
    their traffic never leaves the host, and counted in, every local connection would show as
    equal sent and received bytes. The per-NIC rows (``per_nic``) still list them."""

    name = "network"

    def __init__(self, psutil: ModuleType = _psutil, *, per_nic: bool = False) -> None:
        self._ps = psutil
        self._per_nic = per_nic
        self._rates = CounterRates()
        self._loopback: dict[str, bool] = {}  # NIC name -> loopback, learnt when the name is first seen
        self._io_counters(time.monotonic())  # reference point, so the first sample has a rate

    def _io_counters(self, now_s: float) -> dict[str, tuple[float | None, ...]]:
        counters = self._ps.net_io_counters(pernic=True) or {}
        return self._rates.update({k: (v.bytes_recv, v.bytes_sent) for k, v in counters.items()}, now_s)

    def _is_loopback(self, nic: str) -> bool:
        found = self._loopback.get(nic)
        if found is None:
            try:
                flags = getattr(self._ps.net_if_stats().get(nic), "flags", None)
            except (AttributeError, OSError, RuntimeError):  # no such function, or it cannot read
                flags = None
            if flags:  # (psutil on Windows gives "" for every NIC: the names decide there)
                found = "loopback" in str(flags).split(",")
            else:
                found = nic == "lo" or (nic.startswith("lo") and nic[2:].isdigit()) or "loopback" in nic.lower()
            self._loopback[nic] = found
        return found

    def read(self, now_s: float) -> dict[str, Any]:
        rates = self._io_counters(now_s)
        out: dict[str, Any] = {}
        external = {nic: r for nic, r in rates.items() if not self._is_loopback(nic)}
        if len(self._loopback) > 2 * len(rates) + 32:  # NICs come and go (a container's veth): forget the gone
            self._loopback = {nic: self._loopback[nic] for nic in rates}
        out["net_recv_bytes_per_s"], out["net_sent_bytes_per_s"] = summed(external, 2)
        if self._per_nic:
            out["nics"] = tuple(NicIO(name, r, s) for name, (r, s) in sorted(rates.items()))
        return out


class TemperatureSource:
    """Hottest CPU sensor from ``psutil.sensors_temperatures()``; ``None`` where the function does
    not exist (Windows, macOS) or returns nothing (VMs, containers) (C07)."""

    name = "temperature"
    _CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "acpitz")

    def __init__(self, psutil: ModuleType = _psutil) -> None:
        self._read = getattr(psutil, "sensors_temperatures", None)
        self.available = self._read is not None and bool(self._safe_read())

    def _safe_read(self) -> dict:
        try:
            return self._read() or {}
        except (OSError, RuntimeError):
            return {}

    def read(self, now_s: float) -> dict[str, Any]:
        if not self.available:
            return {"cpu_temperature_celsius": None}
        sensors = self._safe_read()
        for name in self._CPU_SENSORS:
            readings = [s.current for s in sensors.get(name, ()) if s.current is not None]
            if readings:
                return {"cpu_temperature_celsius": max(readings)}
        return {"cpu_temperature_celsius": None}


class GpuSource:
    """GPUs through the NVML gateway; an empty tuple when NVML is unavailable (the monitor says
    why once, from ``gateway.reason``)."""

    name = "gpu"

    def __init__(self, gateway: Any, *, detailed: bool = False) -> None:
        self._gateway = gateway
        self._detailed = detailed

    def read(self, now_s: float) -> dict[str, Any]:
        if not self._gateway.available:
            return {}
        return {"gpus": self._gateway.read_gpus(detailed=self._detailed)}


_NO_LIMITS = CgroupLimits()
