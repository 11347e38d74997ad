"""Per-process GPU figures through the NVML gateway: the GPU memory and utilization of a set of
PIDs (a task's process tree), for :class:`fleet_hwmon.sampling.nvml.NvmlGateway`.

A per-process figure is unknown (``None``, with ``process_figures_unknown_reason``), never 0, when
any part of it cannot be read: a GPU's compute or graphics process list (CUDA work shows only in
the compute list), a lost GPU, or a PID namespace below the host's (a container without the host
PID namespace: NVML's PIDs are not the ones this process sees).
"""

from __future__ import annotations

import logging
from typing import Any

from fleet_hwmon.sampling.gpu_health import LOST, GpuLost

log = logging.getLogger(__name__)

NVML_ERROR_NOT_FOUND = 6  # nvmlDeviceGetProcessUtilization: no sample since the time asked


def nested_pid_namespace(proc_self_status: str) -> bool:
    """True when this process runs in a PID namespace below the host's (``NSpid`` in
    ``/proc/self/status`` lists more than one PID): the PIDs NVML reports are then not this
    namespace's."""
    try:
        with open(proc_self_status, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        pass
    return False


class ProcessQueries:
    """The per-process queries of the NVML gateway (a base class of ``NvmlGateway``: it reads
    the gateway's devices, MIG layout and GPU health through ``_field``, ``_devices``,
    ``_mig_layout`` and ``_health``)."""

    def process_gpu_memory_bytes(self, pids: set[int]) -> dict[str, int] | None:
        """GPU memory (bytes) used by ``pids``, by GPU or MIG instance UUID. ``None`` when unavailable.

        Source: ``nvmlDeviceGetComputeRunningProcesses`` and ``nvmlDeviceGetGraphicsRunningProcesses``
        (``usedGpuMemory``). Every GPU is present, with 0 when none of ``pids`` uses it. The
        whole answer is ``None`` (unknown, never 0) when any GPU's compute or graphics list
        cannot be read (CUDA work shows only in the compute list), a GPU is lost, or NVML's PIDs
        are not this PID namespace's; :attr:`process_figures_unknown_reason` then says which.
        """
        if not self.available:
            return None
        reason = self._process_figures_unknown()
        if reason is not None:
            return self._unknown(reason)
        result: dict[str, int] = {}
        try:
            for device in self._devices:
                mig_enabled, children = self._mig_layout(device)
                for target in (children if mig_enabled and children else (device,)):
                    used = self._process_memory(target, pids)
                    if isinstance(used, str):
                        return self._unknown(f"{used} of GPU {target.uuid} unreadable")
                    result[target.uuid] = used
        except GpuLost as lost:
            return self._unknown(f"a GPU is lost ({lost.reason})")
        self.process_figures_unknown_reason = None
        return result

    def _process_figures_unknown(self) -> str | None:
        """Why no per-process figure can be known right now; ``None`` when they can."""
        if self._nested_pids is None:
            self._nested_pids = nested_pid_namespace(self._proc_self_status)
        if self._nested_pids:
            return "PIDs outside this PID namespace"
        lost = sorted(uuid for uuid, health in self._health.items() if health.state == LOST)
        return f"GPU {lost[0]} lost" if lost else None

    def _unknown(self, reason: str) -> None:
        """Record (and log once) why per-process figures are unknown; returns ``None``."""
        self.process_figures_unknown_reason = reason
        if self._first_time("processes", reason):
            log.warning("per-process GPU figures unknown: %s", reason)
        return None

    def process_gpu_utilization_percent(self, pids: set[int], last_seen_us: dict[str, int]) -> float | None:
        """GPU utilization of ``pids`` since the previous call, in percent of one GPU (summed over
        the processes and GPUs: 150 = one and a half GPUs busy). ``None`` when unknown: NVML
        unavailable, or any GPU unable to say (MIG, where NVML has no per-process utilization,
        NotSupported, an error), since the sum would then be a guess.

        Source: ``nvmlDeviceGetProcessUtilization`` (``smUtil`` of the driver's samples newer than
        ``last_seen_us[uuid]``, averaged per process). ``last_seen_us`` belongs to the caller (one
        per measured task, so tasks do not take each other's samples): GPU UUID -> the newest
        sample time of these pids seen, in microseconds, updated in place. NotFound (no process
        ran since) reads as 0 %. Entries outside 0-100 % or not newer than asked (which drivers
        return around zombie processes) are skipped.
        """
        if not self.available:
            return None
        reason = self._process_figures_unknown()
        if reason is not None:
            return self._unknown(reason)
        total = 0.0
        for device in self._devices:
            if self._mig_layout(device)[0]:
                return None
            since = last_seen_us.get(device.uuid, 0)
            try:
                samples = self._field(device.uuid, "process_utilization", "nvmlDeviceGetProcessUtilization",
                                      device.handle, since, empty_on=NVML_ERROR_NOT_FOUND)
            except GpuLost as lost:
                return self._unknown(f"a GPU is lost ({lost.reason})")
            if samples is None:
                return None
            per_pid: dict[int, list[float]] = {}
            newest = since
            for sample in samples:
                stamp, value = int(sample.timeStamp), float(sample.smUtil)
                if sample.pid in pids and stamp > since and 0.0 <= value <= 100.0:
                    per_pid.setdefault(sample.pid, []).append(value)
                    newest = max(newest, stamp)
            last_seen_us[device.uuid] = newest
            total += sum(sum(values) / len(values) for values in per_pid.values())
        return total if self._devices else None

    def _process_memory(self, device: Any, pids: set[int]) -> int | str:
        """Bytes ``pids`` use on ``device``, or the name of the process list that was unreadable."""
        per_pid: dict[int, int] = {}
        for field, fn_name in (("compute process list", "nvmlDeviceGetComputeRunningProcesses"),
                               ("graphics process list", "nvmlDeviceGetGraphicsRunningProcesses")):
            procs = self._field(device.uuid, field, fn_name, device.handle)
            if procs is None:
                return field
            for proc in procs:
                memory = getattr(proc, "usedGpuMemory", None)
                if proc.pid in pids and isinstance(memory, int):
                    # a process can be listed as both compute and graphics: count it once
                    per_pid[proc.pid] = max(per_pid.get(proc.pid, 0), memory)
        return sum(per_pid.values())

