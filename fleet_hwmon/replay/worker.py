"""One simulated worker's physics: shared cores and GPU, memory that ramps up, what it costs.

* Cores are shared fairly: when background plus task demand exceeds a worker's cores, every
  process on it (the other tenants' included) slows by ``cores / demand``; GPU tasks sharing a
  GPU above 100 % slow the same way (time-slicing). A task progresses at ``speed * slowdown``.
* A task's memory ramps up over its life: ``ramp[0]`` of its peak at start, the peak after
  ``ramp[1]`` of its work. Memory is not compressible: :meth:`SimWorker.oom_time` says when the
  worker runs out, and the simulation's OOM killer then ends the largest task.
* Ground truth is integrated over time: busy core-seconds, time above 95 % of CPU, memory or
  GPU, the other tenants' CPU demand and the part of it our tasks took from them, and the idle
  core-time while the worker had a free slot and room for a waiting task.

Units: cores, bytes, seconds, percent 0-100; work in seconds on the reference machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet_hwmon.replay.workload import TaskSpec, WorkerSpec

OVERLOAD_PERCENT = 95.0
ISOLATION_THRESHOLD_PERCENT = 80.0  # what "quiet" hardware stays under


@dataclass
class Attempt:
    """One run of a task on a worker. It ends at ``target`` work done: its whole work, or less
    when it is bound to fail (``error``)."""

    spec: TaskSpec
    number: int
    start_s: float
    target: float
    error: str | None
    gpu_memory_bytes: int
    ramp: tuple[float, float]
    done: float = 0.0
    rate: float = 0.0
    cpu_seconds: float = 0.0
    gpu_percent_s: float = 0.0  # integral of its share of the GPU (percent x seconds)
    peak_memory_bytes: int = 0

    def memory_bytes(self) -> float:
        """What it holds now, by the ramp over its progress."""
        start, full_at = self.ramp
        if full_at <= 0:
            return float(self.spec.memory_bytes)
        return self.spec.memory_bytes * (start + (1 - start) * min(1.0, self.done / (full_at * self.spec.work_s)))

    def ramp_slope(self) -> tuple[float, float] | None:
        """``(bytes per second, seconds until it stops growing)`` at the current rate, or None
        when its memory no longer grows."""
        start, full_at = self.ramp
        end = min(full_at * self.spec.work_s, self.target)
        if full_at <= 0 or self.rate <= 0 or self.done >= end:
            return None
        slope = self.spec.memory_bytes * (1 - start) / (full_at * self.spec.work_s) * self.rate
        return slope, (end - self.done) / self.rate


@dataclass
class SimWorker:
    spec: WorkerSpec
    tasks: dict[str, Attempt] = field(default_factory=dict)
    bg_cores: float = 0.0
    bg_memory: int = 0
    last_s: float = 0.0
    version: int = 0
    cpu_factor: float = 1.0
    gpu_factor: float = 1.0
    room_for_waiting: bool = False  # a free slot and room for a waiting task (set by the simulation)
    room_type: str | None = None  # the type of that waiting task
    room_reason: str | None = None  # why the policy holds it off this worker (see Policy.held_on)
    cpu_busy_core_s: float = 0.0  # integral of min(demand, cores)
    tenant_core_s: float = 0.0  # the other tenants' demand, integrated
    tenant_taken_core_s: float = 0.0  # the part of it they did not get
    idle_while_waiting_core_s: float = 0.0
    idle_by_reason: dict[str, float] = field(default_factory=dict)  # the same, by room_reason
    overload_s: float = 0.0
    background_overload_s: float = 0.0
    overload_by_resource: dict[str, float] = field(default_factory=lambda: {"cpu": 0.0, "memory": 0.0, "gpu": 0.0})

    def demand(self) -> float:
        return self.bg_cores + sum(t.spec.cores for t in self.tasks.values())

    def memory_used(self) -> float:
        return self.bg_memory + sum(t.memory_bytes() for t in self.tasks.values())

    def memory_committed(self) -> int:
        """Background plus every running task's peak: what is spoken for."""
        return self.bg_memory + sum(t.spec.memory_bytes for t in self.tasks.values())

    def gpu_percent(self) -> float:
        return sum(t.spec.gpu_percent for t in self.tasks.values() if t.spec.needs_gpu)

    def gpu_memory_used(self) -> int:
        return sum(t.gpu_memory_bytes for t in self.tasks.values())

    def has_free_slot(self) -> bool:
        return len(self.tasks) < self.spec.slots

    def has_room_for(self, spec: TaskSpec) -> bool:
        """Whether ``spec`` could start here now without harm: its peak memory fits beside the
        background and every running task's peak, its GPU memory in what is free, and a task
        that asked for quiet hardware keeps the CPU (and GPU) under the utilisation threshold,
        alone when it asked for exclusive hardware."""
        if spec.memory_bytes > self.spec.memory_bytes - self.memory_committed():
            return False
        gpu = self.spec.gpu
        if spec.needs_gpu and (gpu is None or spec.gpu_memory_bytes > gpu.memory_bytes - self.gpu_memory_used()):
            return False
        if spec.isolation == "shared":
            return True
        if spec.isolation == "exclusive" and self.tasks:
            return False
        return (100.0 * (self.demand() + spec.cores) / self.spec.cores < ISOLATION_THRESHOLD_PERCENT
                and not (spec.needs_gpu and self.gpu_percent() + spec.gpu_percent >= ISOLATION_THRESHOLD_PERCENT))

    def advance(self, t: float) -> None:
        """Integrate progress and ground truth up to ``t`` at the current rates."""
        dt = t - self.last_s
        if dt <= 0:
            return
        cores = self.spec.cores
        demand = self.demand()
        self.cpu_busy_core_s += min(demand, cores) * dt
        self.tenant_core_s += self.bg_cores * dt
        self.tenant_taken_core_s += self.bg_cores * (1 - self.cpu_factor) * dt
        if self.room_for_waiting:
            idle = max(0.0, cores - demand) * dt
            self.idle_while_waiting_core_s += idle
            if self.room_reason is not None:
                self.idle_by_reason[self.room_reason] = self.idle_by_reason.get(self.room_reason, 0.0) + idle
        for task in self.tasks.values():
            task.done += task.rate * dt
            task.cpu_seconds += task.spec.cores * self.cpu_factor * dt
            if task.spec.needs_gpu:
                task.gpu_percent_s += task.spec.gpu_percent * self.gpu_factor * dt
            task.peak_memory_bytes = max(task.peak_memory_bytes, int(task.memory_bytes()))
        over = {"cpu": 100.0 * demand / cores > OVERLOAD_PERCENT,
                "memory": 100.0 * self.memory_used() / self.spec.memory_bytes > OVERLOAD_PERCENT,
                "gpu": self.gpu_percent() > OVERLOAD_PERCENT}
        for resource, flag in over.items():
            if flag:
                self.overload_by_resource[resource] += dt
        if any(over.values()):
            self.overload_s += dt
            if 100.0 * self.bg_cores / cores > OVERLOAD_PERCENT:
                self.background_overload_s += dt  # no placement could have avoided it
        self.last_s = t

    def set_rates(self) -> None:
        """Each task's rate after a change on the worker (fair share of cores and GPU)."""
        self.version += 1
        demand = self.demand()
        self.cpu_factor = min(1.0, self.spec.cores / demand) if demand > 0 else 1.0
        gpu = self.gpu_percent()
        self.gpu_factor = min(1.0, 100.0 / gpu) if gpu > 0 else 1.0
        for task in self.tasks.values():
            factor = min(self.cpu_factor, self.gpu_factor) if task.spec.needs_gpu else self.cpu_factor
            task.rate = self.spec.speed * factor

    def oom_time(self, now: float) -> float | None:
        """When the memory in use reaches the worker's memory at the current rates (``now`` if
        it already has), or None if it does not before the next change. The total is piecewise
        linear: it grows while tasks ramp up, each stops growing at its peak."""
        capacity = self.spec.memory_bytes
        used = self.memory_used()
        if used >= capacity:
            return now
        slopes = filter(None, (task.ramp_slope() for task in self.tasks.values()))
        ramps = sorted((now + until, slope) for slope, until in slopes)
        slope = sum(s for _, s in ramps)
        t = now
        for end, s in ramps:
            if used + slope * (end - t) >= capacity:
                return t + (capacity - used) / slope
            used += slope * (end - t)
            t, slope = end, slope - s
        return None

    def largest_task(self) -> str:
        """The task the OOM killer picks: the one holding the most memory now."""
        return max(self.tasks, key=lambda task_id: self.tasks[task_id].memory_bytes())
