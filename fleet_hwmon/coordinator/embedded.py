"""Embedded workers: slices of this host with a hardware profile, for the demo and the tests.

An embedded worker's CPU and memory figures are real: the sum of what the process trees of
its own running tasks use (measured by the task runner), against the worker's capacity (its
profile, never more than this host has). Hardware this host lacks (a GPU here) is simulated
from the tasks the worker runs, and every simulated value is named in the sample's
``simulated_fields``; nothing else is simulated.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from fleet_hwmon.execution import ProcessTreeSample
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now

if TYPE_CHECKING:
    from fleet_hwmon.capabilities.model import WorkerHardwareCapabilities

GIB = 1024**3


@dataclass(frozen=True)
class SimulatedGpu:
    name: str
    memory_gb: float
    cuda_compute: float


@dataclass(frozen=True)
class WorkerProfile:
    """A worker's hardware: CPU cores, memory, and GPUs (simulated on a host without them)."""

    name: str
    cpu_cores: int
    memory_gb: float
    gpus: tuple[SimulatedGpu, ...] = ()


PROFILES: dict[str, WorkerProfile] = {
    "cpu-small": WorkerProfile("cpu-small", 2, 4),
    "cpu-large": WorkerProfile("cpu-large", 8, 32),
    "gpu-t4": WorkerProfile("gpu-t4", 4, 16, (SimulatedGpu("Tesla T4", 16, 7.5),)),
    "gpu-a100": WorkerProfile("gpu-a100", 8, 64, (SimulatedGpu("NVIDIA A100-SXM4-80GB", 80, 8.0),)),
    "gpu-h100x2": WorkerProfile("gpu-h100x2", 16, 128, (SimulatedGpu("NVIDIA H100 80GB HBM3", 80, 9.0),
                                                        SimulatedGpu("NVIDIA H100 80GB HBM3", 80, 9.0))),
}


class EmbeddedWorker:
    """Turns the measurements of a worker's running tasks into the worker's samples."""

    def __init__(self, worker_id: str, profile: WorkerProfile, *, seed: int = 0) -> None:
        self.worker_id = worker_id
        self.profile = profile
        self.cpu_cores = float(min(profile.cpu_cores, psutil.cpu_count() or 1))
        self.memory_total_bytes = int(min(profile.memory_gb * GIB, psutil.virtual_memory().total))
        self._rng = random.Random(f"{seed}:{worker_id}")
        self._lock = threading.Lock()
        self._trees: dict[str, ProcessTreeSample | None] = {}
        self._gpu_load: dict[str, tuple[int, float, float]] = {}  # task -> (gpu index, util %, bytes)

    def capabilities(self) -> dict[str, Any]:
        """The coordinator contract's capabilities dict of this worker."""
        gpus = [{"index": i, "uuid": self._gpu_uuid(i), "name": g.name, "cuda_compute": g.cuda_compute,
                 "memory_gb": g.memory_gb, "simulated": True} for i, g in enumerate(self.profile.gpus)]
        caps: dict[str, Any] = {
            "hardware": ["cpu"] + (["gpu"] if gpus else []),
            "cpu": {"cores_effective": self.cpu_cores},
            "memory": {"total_gb": round(self.memory_total_bytes / GIB, 2)},
            "profile": self.profile.name,
            "simulated": ["gpu"] if gpus else [],
        }
        if gpus:
            caps["gpu"] = {k: gpus[0][k] for k in ("name", "cuda_compute", "memory_gb")}
            caps["gpus"] = gpus
        return caps

    def hardware_capabilities(self, host: WorkerHardwareCapabilities) -> WorkerHardwareCapabilities:
        """This worker's capability record: the host's detected CPU limited to the profile's
        cores and memory, plus the profile's GPUs marked ``simulated``."""
        from fleet_hwmon.capabilities.fingerprint import hardware_fingerprint
        from fleet_hwmon.capabilities.gpu import precisions_from_compute_capability
        from fleet_hwmon.capabilities.model import HardwareCapability, HardwareType, HardwareVendor

        cpus = [dataclasses.replace(c, compute_units=int(self.cpu_cores), memory_bytes=self.memory_total_bytes)
                for c in host.hardware_capabilities if c.hardware_type is HardwareType.CPU]
        gpus = []
        for index, gpu in enumerate(self.profile.gpus):
            major, minor = (int(p) for p in f"{gpu.cuda_compute:.1f}".split("."))
            gpus.append(HardwareCapability(
                hardware_type=HardwareType.GPU, vendor=HardwareVendor.NVIDIA, model=gpu.name,
                memory_bytes=int(gpu.memory_gb * GIB), device_id=self._gpu_uuid(index),
                supported_precisions=precisions_from_compute_capability(major, minor),
                capabilities={"simulated": True, "index": index, "uuid": self._gpu_uuid(index),
                              "compute_capability": f"{major}.{minor}"}))
        caps = dataclasses.replace(
            host, worker_id=self.worker_id, cpu_count_effective=self.cpu_cores,
            total_memory_bytes=self.memory_total_bytes, hardware_capabilities=cpus + gpus,
            status={**host.status, "profile": f"embedded worker profile {self.profile.name}; GPUs simulated"
                    if gpus else f"embedded worker profile {self.profile.name}"})
        return dataclasses.replace(caps, hardware_fingerprint=hardware_fingerprint(caps))

    def _gpu_uuid(self, index: int) -> str:
        return f"GPU-simulated-{self.worker_id}-{index}"

    # -- task events ----------------------------------------------------------------------------
    def task_started(self, task: dict) -> None:
        task_id = task["task_id"]
        requirements = task.get("requirements") or {}
        with self._lock:
            self._trees[task_id] = None
            if self.profile.gpus and ("gpu" in (requirements.get("hardware") or [])):
                busy = [g for g, _, _ in self._gpu_load.values()]
                index = min(range(len(self.profile.gpus)), key=busy.count)
                memory_gb = float(requirements.get("min_gpu_memory_gb") or 2.0)
                self._gpu_load[task_id] = (index, self._rng.uniform(55.0, 90.0), memory_gb * GIB)

    def task_sample(self, task_id: str, sample: ProcessTreeSample) -> None:
        with self._lock:
            if task_id in self._trees:
                self._trees[task_id] = sample

    def task_finished(self, task_id: str) -> None:
        with self._lock:
            self._trees.pop(task_id, None)
            self._gpu_load.pop(task_id, None)

    # -- samples --------------------------------------------------------------------------------
    def sample(self) -> ResourceUtilization:
        """The worker now: CPU percent of its cores and memory of its capacity used by its tasks'
        process trees (``None`` while running tasks have no CPU reading yet), simulated GPUs."""
        with self._lock:
            trees = list(self._trees.values())
            gpu_load = list(self._gpu_load.values())
        measured = [t for t in trees if t is not None]
        cpu_known = [t.cpu_percent for t in measured if t.cpu_percent is not None]
        # Running tasks not measured yet make the figure unknown, not 0.
        cpu_percent = None if trees and not cpu_known else min(100.0, sum(cpu_known) / self.cpu_cores)
        used = None if trees and not measured else sum(t.rss_bytes for t in measured)
        fields: dict[str, Any] = {}
        if self.profile.gpus:
            gpus = []
            for index, gpu in enumerate(self.profile.gpus):
                loads = [(u, b) for g, u, b in gpu_load if g == index]
                total = int(gpu.memory_gb * GIB)
                gpus.append(GpuUtilization(
                    index=index, uuid=self._gpu_uuid(index), name=gpu.name,
                    utilization_percent=min(100.0, sum(u for u, _ in loads)),
                    memory_used_bytes=min(total, int(sum(b for _, b in loads))), memory_total_bytes=total,
                    simulated=True))
            fields.update(gpus=tuple(gpus), simulated_fields=("gpus",))
        return ResourceUtilization(
            worker_id=self.worker_id, timestamp=utc_now(), cpu_percent=cpu_percent,
            cpu_count_effective=self.cpu_cores, memory_used_bytes=used,
            memory_available_bytes=None if used is None else max(0, self.memory_total_bytes - used),
            memory_total_bytes=self.memory_total_bytes,
            memory_percent=None if used is None else 100.0 * used / self.memory_total_bytes,
            task_ids=tuple(self._trees), **fields)
