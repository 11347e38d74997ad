"""A simulated worker's monitor: the samples it takes and when they reach the scheduler, and the
ground-truth check of a task that asked for quiet hardware.

A monitor samples its worker like the real one: CPU percent averaged over the interval since
its previous sample (``psutil.cpu_percent``; the first reading has no reference and is
``None``), memory and GPU at the instant. A sample reaches the scheduler after an exponential
delay (mean ``sample_delay_s``), now and then held up (``late_sample_chance``), later still on a
worker with a late monitor, never after its monitor stops; samples of a worker arrive in order.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from fleet_hwmon.replay.worker import ISOLATION_THRESHOLD_PERCENT, Attempt, SimWorker
from fleet_hwmon.replay.workload import ReplayConfig
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


class SimMonitor:
    """The monitor of one worker; ``rng`` draws its delays (one stream per worker)."""

    def __init__(self, config: ReplayConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.last_s = 0.0
        self.last_busy_core_s = 0.0
        self.last_delivery_s = 0.0

    def take(self, worker: SimWorker, now: float) -> tuple[float, tuple[float, ResourceUtilization] | None]:
        """Sample ``worker`` (advanced to ``now``): the true CPU percent over the interval, and
        ``(delivery time, sample)`` unless the monitor has stopped."""
        ws = worker.spec
        interval = now - self.last_s
        cpu_percent = (100.0 * (worker.cpu_busy_core_s - self.last_busy_core_s) / (ws.cores * interval)
                       if interval > 0 else 100.0 * min(worker.demand(), ws.cores) / ws.cores)
        first = self.last_s == 0
        self.last_s, self.last_busy_core_s = now, worker.cpu_busy_core_s
        if ws.monitor_stops_s is not None and now >= ws.monitor_stops_s:
            return cpu_percent, None  # the monitor has stopped; the worker keeps running tasks
        used = int(worker.memory_used())
        gpus = ()
        if ws.gpu is not None:
            gpus = (GpuUtilization(0, f"GPU-{ws.worker_id}", ws.gpu.name,
                                   utilization_percent=min(100.0, worker.gpu_percent()),
                                   memory_used_bytes=worker.gpu_memory_used(), memory_total_bytes=ws.gpu.memory_bytes),)
        sample = ResourceUtilization(
            worker_id=ws.worker_id, timestamp=EPOCH + timedelta(seconds=now),
            cpu_percent=None if first else min(100.0, cpu_percent), cpu_count_effective=float(ws.cores),
            memory_used_bytes=used, memory_total_bytes=ws.memory_bytes,
            memory_available_bytes=max(0, ws.memory_bytes - used),
            memory_percent=min(100.0, 100.0 * used / ws.memory_bytes), gpus=gpus, task_ids=tuple(worker.tasks))
        delay = self.rng.expovariate(1.0 / self.config.sample_delay_s)
        if self.rng.random() < self.config.late_sample_chance:
            delay += self.rng.uniform(*self.config.late_sample_s)
        if ws.monitor_extra_delay_s:
            delay += ws.monitor_extra_delay_s * self.rng.uniform(0.5, 1.5)
        self.last_delivery_s = max(self.last_delivery_s, now + delay)
        return cpu_percent, (self.last_delivery_s, sample)


def runs_quiet(worker: SimWorker, task: Attempt, cpu_percent: float) -> bool:
    """Whether ``task`` ran as its ``requirements.isolation`` asked over this sample: the
    worker's CPU over the interval (and its GPU now, for a GPU task) under the utilisation
    threshold, and for an exclusive task nothing else of ours beside it."""
    if cpu_percent >= ISOLATION_THRESHOLD_PERCENT:
        return False
    if task.spec.needs_gpu and worker.gpu_percent() >= ISOLATION_THRESHOLD_PERCENT:
        return False
    return task.spec.isolation != "exclusive" or len(worker.tasks) == 1
