"""Container limits from cgroup v1 / v2, and the effective CPU and memory figures they imply.

psutil reads ``/proc/meminfo`` and counts every host CPU, so inside ``docker run --memory=2g
--cpus=2`` on a 128 GiB / 64-core host it reports 128 GiB and 64 CPUs. The sampler corrects
both with :class:`CgroupReader` (a few small file reads per sample; the cgroup path is resolved
once) and the pure functions :func:`effective_cpu_count` and :func:`effective_memory`.

Files read (relative to the cgroup mount, normally ``/sys/fs/cgroup``):

- v2: ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``), ``memory.max`` (bytes or
  ``"max"``), ``memory.current`` (bytes), ``memory.stat`` (``inactive_file``).
- v1: ``cpu/cpu.cfs_quota_us`` (``-1`` = no quota) and ``cpu/cpu.cfs_period_us`` (also under
  ``cpu,cpuacct/``), ``memory/memory.limit_in_bytes`` (values >= 2**60 mean no limit),
  ``memory/memory.usage_in_bytes``, ``memory/memory.stat`` (``total_inactive_file``).

The cgroup's usage counts page cache, which the kernel reclaims before it kills anything; the
memory a worker really holds is its working set, usage minus inactive file pages, as the
kubelet and cAdvisor compute it. A worker that read a lot of files is not full.

Example::

    limits = CgroupReader().read()
    cores = effective_cpu_count(limits.cpu_quota_cores, len(os.sched_getaffinity(0)), os.cpu_count())
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

# v1 reports "no limit" as a page-aligned LONG_MAX (9223372036854771712); anything this large
# is not a real limit on any machine that exists.
V1_UNLIMITED_THRESHOLD_BYTES = 2**60

_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """The limits of the cgroup this process runs in. ``None`` means unlimited or unknown.

    ``version`` is 1 or 2, ``None`` when no cgroup filesystem was found (macOS, Windows).
    ``cpu_quota_cores`` is quota / period (``200000 100000`` -> 2.0). ``memory_usage_bytes`` is
    the raw usage (page cache included), ``memory_inactive_file_bytes`` the reclaimable file
    pages of the same cgroup (``memory.stat``); see :attr:`memory_working_set_bytes`.
    """

    version: int | None = None
    cpu_quota_cores: float | None = None
    memory_limit_bytes: int | None = None
    memory_usage_bytes: int | None = None
    memory_inactive_file_bytes: int | None = None

    @property
    def memory_working_set_bytes(self) -> int | None:
        """Usage minus inactive file pages (never below 0); the raw usage when ``memory.stat``
        was not readable; ``None`` when the usage is unknown."""
        usage = self.memory_usage_bytes
        if usage is None or self.memory_inactive_file_bytes is None:
            return usage
        return max(0, usage - self.memory_inactive_file_bytes)


@functools.lru_cache(maxsize=256)
def _file(directory: Path, name: str) -> str:
    """``directory / name`` as text, joined once: pathlib's join costs more than the read itself
    (about 20 us, and a sample reads up to 9 of these files)."""
    return os.path.join(directory, name)


def _read_text(path: Path | str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _read_int(path: Path | str) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_memory_stat(text: str | None, key: str) -> int | None:
    """The value of ``key`` in a ``memory.stat`` file (``"inactive_file 123"`` lines); ``None``
    when absent or malformed."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                number = int(value)
            except ValueError:
                return None
            return number if number >= 0 else None
    return None


def parse_cpu_max(text: str | None) -> float | None:
    """Cores granted by a v2 ``cpu.max`` line: ``"200000 100000"`` -> 2.0, ``"max 100000"`` -> None."""
    if not text:
        return None
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100_000
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_memory_limit(text: str | None) -> int | None:
    """Bytes from a ``memory.max`` / ``memory.limit_in_bytes`` value; ``None`` for ``max`` or the v1 sentinel."""
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    if value <= 0 or value >= V1_UNLIMITED_THRESHOLD_BYTES:
        return None
    return value


def _parse_proc_self_cgroup(text: str | None) -> dict[str, str]:
    """``/proc/self/cgroup`` lines ``id:controllers:path`` -> {controller: path}; v2 is under ``""``."""
    paths: dict[str, str] = {}
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _chain(mount: Path, cgroup_path: str | None) -> tuple[Path, ...]:
    """Existing directories from the process's own cgroup up to the mount root, deepest first.

    A limit set on an ancestor (a systemd slice, the container's own cgroup) binds the process
    too, so every level counts. When the own directory is not visible (a container without a
    cgroup namespace shows the host path, yet mounts its own cgroup at the root) only the root
    is used.
    """
    levels: list[Path] = []
    relative = (cgroup_path or "/").strip("/")
    if relative:
        current = mount / relative
        if current.is_dir():
            while True:
                levels.append(current)
                if current == mount or mount not in current.parents:
                    break
                current = current.parent
    if mount not in levels:
        levels.append(mount)
    return tuple(levels)


class CgroupReader:
    """Reads the limits of this process's cgroup (v1 or v2). Never raises: unknown -> ``None``.

    ``root`` is the cgroup mount and ``proc_self_cgroup`` the membership file; both are seams
    for tests (a fake tree under ``tmp_path``). The version and the directories to read are
    resolved on the first :meth:`read` and cached; the limit files are read on every call
    because ``docker update`` can change them while the worker runs.
    """

    def __init__(self, root: str | os.PathLike[str] = "/sys/fs/cgroup",
                 proc_self_cgroup: str | os.PathLike[str] = "/proc/self/cgroup") -> None:
        self._root = Path(root)
        self._proc_self_cgroup = Path(proc_self_cgroup)
        self._lock = threading.Lock()
        self._resolved = False
        self._version: int | None = None
        self._cpu_dirs: tuple[Path, ...] = ()
        self._memory_dirs: tuple[Path, ...] = ()

    def _resolve(self) -> None:
        with self._lock:
            if self._resolved:
                return
            memberships = _parse_proc_self_cgroup(_read_text(self._proc_self_cgroup))
            if (self._root / "cgroup.controllers").exists():
                self._version = 2
                chain = _chain(self._root, memberships.get(""))
                self._cpu_dirs = self._memory_dirs = chain
            else:
                memory_mount = self._root / "memory"
                cpu_mount = next((self._root / name for name in _V1_CPU_DIRS
                                  if (self._root / name).is_dir()), None)
                if memory_mount.is_dir() or cpu_mount is not None:
                    self._version = 1
                if memory_mount.is_dir():
                    self._memory_dirs = _chain(memory_mount, memberships.get("memory"))
                if cpu_mount is not None:
                    self._cpu_dirs = _chain(cpu_mount, memberships.get("cpu"))
            self._resolved = True

    @property
    def version(self) -> int | None:
        """1, 2, or ``None`` when no cgroup filesystem is mounted at ``root``."""
        self._resolve()
        return self._version

    def read(self) -> CgroupLimits:
        """Current limits and memory usage. Returns ``CgroupLimits(version=None, ...)`` off Linux.

        The quota and limit are the tightest along the cgroup's ancestry; the usage is read from
        the cgroup that sets the memory limit (it is what the limit is compared against), or
        from the process's own cgroup when there is no limit.
        """
        return self._read(cpu=True)

    def read_memory(self) -> CgroupLimits:
        """:meth:`read` without the CPU quota (``cpu_quota_cores`` is ``None``): the memory
        figures are read every sample, the quota's files only when the CPU source refreshes it."""
        return self._read(cpu=False)

    def _read(self, cpu: bool) -> CgroupLimits:
        self._resolve()
        if self._version == 2:
            return self._read_v2(cpu)
        if self._version == 1:
            return self._read_v1(cpu)
        return CgroupLimits()

    def _read_v2(self, cpu: bool) -> CgroupLimits:
        quotas = [q for q in (parse_cpu_max(_read_text(_file(d, "cpu.max"))) for d in self._cpu_dirs)
                  if q is not None] if cpu else []
        limit, usage_dir = self._tightest_memory("memory.max")
        usage, inactive = self._usage(usage_dir, "memory.current", "inactive_file")
        return CgroupLimits(
            version=2,
            cpu_quota_cores=min(quotas) if quotas else None,
            memory_limit_bytes=limit,
            memory_usage_bytes=usage,
            memory_inactive_file_bytes=inactive,
        )

    def _read_v1(self, cpu: bool) -> CgroupLimits:
        quotas: list[float] = []
        for directory in self._cpu_dirs if cpu else ():
            quota_us = _read_int(_file(directory, "cpu.cfs_quota_us"))
            period_us = _read_int(_file(directory, "cpu.cfs_period_us"))
            if quota_us is not None and quota_us > 0 and period_us:
                quotas.append(quota_us / period_us)
        limit, usage_dir = self._tightest_memory("memory.limit_in_bytes")
        # total_inactive_file: the hierarchy's, as usage_in_bytes counts the hierarchy too
        usage, inactive = self._usage(usage_dir, "memory.usage_in_bytes", "total_inactive_file")
        return CgroupLimits(
            version=1,
            cpu_quota_cores=min(quotas) if quotas else None,
            memory_limit_bytes=limit,
            memory_usage_bytes=usage,
            memory_inactive_file_bytes=inactive,
        )

    def _tightest_memory(self, filename: str) -> tuple[int | None, Path | None]:
        best: int | None = None
        where: Path | None = None
        for directory in self._memory_dirs:
            limit = parse_memory_limit(_read_text(_file(directory, filename)))
            if limit is not None and (best is None or limit < best):
                best, where = limit, directory
        return best, where

    def _usage(self, limit_dir: Path | None, filename: str, inactive_key: str) -> tuple[int | None, int | None]:
        """(usage, inactive file bytes) of the first cgroup along the chain that has a usage."""
        for directory in ((limit_dir,) if limit_dir is not None else ()) + self._memory_dirs:
            usage = _read_int(_file(directory, filename))
            if usage is not None and usage >= 0:
                return usage, parse_memory_stat(_read_text(_file(directory, "memory.stat")), inactive_key)
        return None, None


def effective_cpu_count(cpu_quota_cores: float | None, affinity_count: int | None,
                        logical_count: int | None) -> float | None:
    """CPUs the worker may really use: the smallest of the known figures, ``None`` if none is known.

    ``cpu_quota_cores`` from :class:`CgroupReader`, ``affinity_count`` from
    ``len(os.sched_getaffinity(0))``, ``logical_count`` from ``psutil.cpu_count()``.
    Example: quota 2.0, affinity 4, logical 64 -> 2.0; quota None -> 4.
    """
    known = [float(v) for v in (cpu_quota_cores, affinity_count, logical_count) if v is not None and v > 0]
    return min(known) if known else None


def effective_memory(host_total_bytes: int | None, host_available_bytes: int | None,
                     limits: CgroupLimits) -> tuple[int | None, int | None, float | None, str]:
    """``(total_bytes, used_bytes, percent, source)`` of the memory the worker may use.

    ``source`` is ``"cgroup"`` when a memory limit below the host total applies (total = the
    limit, used = the cgroup's working set: usage minus inactive file pages), else ``"host"``
    (``psutil.virtual_memory()`` figures: used = total - available, which leaves reclaimable
    cache out too). ``percent`` is 0-100, ``None`` when a figure is unknown.
    Example: limit 2 GiB, usage 1.5 GiB of which 0.5 GiB inactive file pages, on a 128 GiB host
    -> (2 GiB, 1 GiB, 50.0, "cgroup").
    """
    limit = limits.memory_limit_bytes
    if limit is not None and (host_total_bytes is None or limit < host_total_bytes):
        used = limits.memory_working_set_bytes
        return limit, used, (None if used is None else 100.0 * used / limit), "cgroup"
    if host_total_bytes is None or host_available_bytes is None or host_total_bytes <= 0:
        return host_total_bytes, None, None, "host"
    used = max(0, host_total_bytes - host_available_bytes)
    return host_total_bytes, used, 100.0 * used / host_total_bytes, "host"
