"""The replay's fleet and workload: seeded, plain data, independent of any scheduling policy.

Everything a policy could influence is kept out of here: worker specs (monitor faults included),
each task's true demand (drawn once per task, so the same task costs the same on every policy),
arrival times, and the random streams of background load and sample delay (one stream per
worker, consumed in time order, so every policy sees the same background and the same delays).

Units: cores, bytes, seconds, percent 0-100. ``work_s`` is the task's duration on an idle
worker of speed 1.0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    cuda_compute: float
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class FleetClass:
    """A kind of worker and its share of the fleet; ``memory_gib`` of RAM, ``speed`` relative to
    the reference machine."""

    kind: str
    share: float
    cores: int
    memory_gib: float
    gpu: GpuSpec | None
    speed: float


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One simulated worker. ``speed``: task progress per second when not contended (1.0 = the
    reference machine); ``slots``: tasks the coordinator gives it at once; ``background_level``:
    mean fraction of its cores other tenants use. Its monitor may be faulty:
    ``monitor_extra_delay_s`` is added (mean) to every sample's delay, and from
    ``monitor_stops_s`` on no sample reaches the scheduler, while the coordinator still sees
    the worker alive."""

    worker_id: str
    kind: str
    cores: int
    memory_bytes: int
    gpu: GpuSpec | None
    speed: float
    slots: int
    background_level: float
    background_memory_fraction: float
    monitor_extra_delay_s: float = 0.0
    monitor_stops_s: float | None = None

    def capabilities(self) -> dict[str, Any]:
        """The coordinator contract's capabilities dict, as a registering worker would send it."""
        caps: dict[str, Any] = {"hardware": ["cpu"] + (["gpu"] if self.gpu else []),
                                "cpu": {"cores": self.cores, "model": f"{self.kind} cpu"},
                                "memory": {"total_gb": self.memory_bytes / GIB}}
        if self.gpu is not None:
            caps["gpu"] = {"name": self.gpu.name, "cuda_compute": self.gpu.cuda_compute,
                           "memory_gb": self.gpu.memory_bytes / GIB}
        return caps


@dataclass(frozen=True, slots=True)
class TaskType:
    """A kind of test task: its stated ``requirements`` (the coordinator contract's dict, e.g.
    ``{"hardware": ["gpu"], "min_gpu_memory_gb": 40, "isolation": "quiet"}``) and its mean true
    demand; each ``*_sigma`` is the log-normal spread of that demand from task to task."""

    name: str
    weight: float
    requirements: dict
    cores: float
    memory_gb: float
    work_s: float
    gpu_percent: float = 0.0
    gpu_memory_gb: float = 0.0
    memory_sigma: float = 0.35
    gpu_memory_sigma: float = 0.3
    work_sigma: float = 0.4


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of the workload with its true demand (noise already drawn). ``memory_bytes`` is
    its peak (it ramps up to it over its life), ``timeout_s`` the wall time after which the test
    framework kills an attempt."""

    task_id: str
    type: str
    arrival_s: float
    requirements: dict
    cores: float
    memory_bytes: int
    work_s: float
    gpu_percent: float
    gpu_memory_bytes: int
    timeout_s: float
    priority: int = 0

    def as_task(self) -> dict[str, Any]:
        """The dict a coordinator hands its scheduler (no demand: schedulers never see it)."""
        return {"task_id": self.task_id, "type": self.type, "priority": self.priority,
                "requirements": self.requirements}

    @property
    def needs_gpu(self) -> bool:
        return "gpu" in self.requirements.get("hardware", ())

    @property
    def isolation(self) -> str:
        return str(self.requirements.get("isolation") or "shared")


FLEET_CLASSES: tuple[FleetClass, ...] = (
    FleetClass("cpu-small", 8 / 24, 8, 32, None, 0.8),
    FleetClass("cpu-medium", 7 / 24, 16, 64, None, 1.0),
    FleetClass("cpu-large", 2 / 24, 64, 256, None, 1.2),
    FleetClass("gpu-t4", 4 / 24, 16, 64, GpuSpec("Tesla T4", 7.5, 16 * GIB), 1.0),
    FleetClass("gpu-a100", 2 / 24, 32, 128, GpuSpec("NVIDIA A100-SXM4-40GB", 8.0, 40 * GIB), 1.1),
    FleetClass("gpu-h100", 1 / 24, 32, 256, GpuSpec("NVIDIA H100 80GB HBM3", 9.0, 80 * GIB), 1.3),
)

TASK_TYPES: tuple[TaskType, ...] = (
    TaskType("unit", 0.38, {"hardware": ["cpu"]}, cores=1.0, memory_gb=1.0, work_s=30),
    TaskType("integration", 0.23, {"hardware": ["cpu"]}, cores=2.0, memory_gb=4.0, work_s=120),
    TaskType("build", 0.10, {"hardware": ["cpu"], "min_memory_gb": 16}, cores=6.0, memory_gb=8.0, work_s=240),
    TaskType("data", 0.08, {"hardware": ["cpu"], "min_memory_gb": 32}, cores=2.0, memory_gb=18.0, work_s=180),
    TaskType("gpu_inference", 0.15, {"hardware": ["gpu"], "min_cuda_compute": 7.0}, cores=2.0, memory_gb=6.0,
             work_s=90, gpu_percent=35.0, gpu_memory_gb=5.0),
    TaskType("gpu_training", 0.015, {"hardware": ["gpu"], "min_cuda_compute": 8.0, "min_gpu_memory_gb": 24},
             cores=6.0, memory_gb=32.0, work_s=180, gpu_percent=70.0, gpu_memory_gb=20.0),
    TaskType("benchmark", 0.03, {"hardware": ["cpu"], "isolation": "quiet"}, cores=2.0, memory_gb=2.0, work_s=60),
    TaskType("perf", 0.01, {"hardware": ["cpu"], "isolation": "exclusive"}, cores=4.0, memory_gb=4.0, work_s=90),
)


@dataclass(frozen=True)
class ReplayConfig:
    """Size and shape of one replay. ``load``: offered work over the arrival window as a fraction
    of the capacity of the busiest part of the fleet (CPU or GPU, over the workers a task type
    is limited to; CPU capacity is what the mean background leaves); ``burst_share``: fraction of the
    tasks that arrive in bursts (a CI pipeline fanning out), the rest arrive as a Poisson stream.
    ``sample_interval_s`` / ``sample_delay_s``: how often a worker's monitor samples and how long
    a sample takes to reach the scheduler (mean; exponential jitter, and ``late_sample_chance``
    of a sample held up by ``late_sample_s``: a slow heartbeat). ``faulty_monitor_share`` of the
    workers have a faulty monitor: half of them deliver every sample ``late_monitor_delay_s``
    later, the others stop delivering at a time drawn from ``monitor_stop_s``.

    Physics: ``max_attempts``: a failed task is queued again until it has run this many times;
    ``timeout_factor``: an attempt is killed when it has run this many times its work on the
    reference machine; ``memory_ramp``: a task holds ``memory_ramp[0]`` of its peak memory at
    start and reaches the peak after ``memory_ramp[1]`` of its work; ``cuda_oom_after``: an
    attempt whose GPU memory does not fit fails after this fraction of its work.
    ``horizon_factor``: the simulation stops, unfinished, at this multiple of the workload's
    makespan lower bound, or after ``stall_s`` with queued tasks, nothing running and nothing
    left to arrive."""

    name: str = "default"
    workers: int = 24
    tasks: int = 2000
    seed: int = 0
    load: float = 0.6
    burst_share: float = 0.4
    burst_size: tuple[int, int] = (20, 80)
    burst_spread_s: float = 2.0
    sample_interval_s: float = 5.0
    sample_delay_s: float = 1.0
    late_sample_chance: float = 0.02
    late_sample_s: tuple[float, float] = (8.0, 25.0)
    faulty_monitor_share: float = 0.0
    late_monitor_delay_s: float = 40.0
    monitor_stop_s: tuple[float, float] = (300.0, 1500.0)
    background_change_s: float = 90.0
    background_spike_chance: float = 0.1
    max_attempts: int = 10
    timeout_factor: float = 3.0
    memory_ramp: tuple[float, float] = (0.2, 0.5)
    cuda_oom_after: float = 0.05
    horizon_factor: float = 10.0
    stall_s: float = 1800.0
    task_types: tuple[TaskType, ...] = TASK_TYPES
    fleet_classes: tuple[FleetClass, ...] = FLEET_CLASSES
    extra: dict = field(default_factory=dict)


def fits(requirements: Mapping[str, Any], worker: WorkerSpec) -> bool:
    """Ground truth, independent of the product's matcher: does the worker have the hardware a
    task with these ``requirements`` needs? A GPU figure (CUDA compute, GPU memory) asks for a
    GPU as ``"gpu"`` does."""
    hardware = set(requirements.get("hardware", ()))
    if requirements.get("min_cuda_compute") is not None or requirements.get("min_gpu_memory_gb") is not None:
        hardware.add("gpu")
    if not hardware <= {"cpu"} | ({"gpu"} if worker.gpu else set()):
        return False
    if requirements.get("min_memory_gb") is not None and worker.memory_bytes < requirements["min_memory_gb"] * GIB:
        return False
    if "gpu" not in hardware:
        return True
    gpu = worker.gpu
    if requirements.get("min_cuda_compute") is not None and gpu.cuda_compute < requirements["min_cuda_compute"]:
        return False
    return requirements.get("min_gpu_memory_gb") is None or gpu.memory_bytes >= requirements["min_gpu_memory_gb"] * GIB


def arrival_window_s(config: ReplayConfig, fleet: list[WorkerSpec]) -> float:
    """How long the arrivals last so that the mean offered work is ``config.load`` of the
    capacity of the busiest part of the fleet: for each set of workers some task type is limited
    to, the CPU work (cores x work) of the types limited to it over its cores x speed left by the
    mean background, and the GPU work (share x work) over its GPUs x speed."""
    total_weight = sum(t.weight for t in config.task_types)
    limited_to = {t.name: frozenset(w.worker_id for w in fleet if fits(t.requirements, w)) for t in config.task_types}
    per_task_s = 0.0
    for workers in set(limited_to.values()) - {frozenset()}:
        members = [w for w in fleet if w.worker_id in workers]
        types = [t for t in config.task_types if limited_to[t.name] and limited_to[t.name] <= workers]
        cpu_s = sum(t.weight * t.cores * t.work_s for t in types)
        per_task_s = max(per_task_s, cpu_s / sum(w.cores * w.speed * (1 - w.background_level) for w in members))
        gpu_capacity = sum(w.speed for w in members if w.gpu is not None)
        gpu_s = sum(t.weight * t.gpu_percent / 100.0 * t.work_s for t in types)
        if gpu_s and gpu_capacity:
            per_task_s = max(per_task_s, gpu_s / gpu_capacity)
    return config.tasks * per_task_s / (total_weight * config.load)


def stream(seed: int, *names: object) -> random.Random:
    """An independent, reproducible random stream named by ``(seed, *names)``."""
    return random.Random(f"{seed}/" + "/".join(map(str, names)))


def class_counts(total: int, shares: list[float]) -> list[int]:
    """Largest-remainder split of ``total`` workers by ``shares``, every class at least one when
    there are enough workers."""
    raw = [total * s / sum(shares) for s in shares]
    counts = [int(r) for r in raw]
    if total >= len(shares):
        counts = [max(1, c) for c in counts]
    order = sorted(range(len(shares)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    i = 0
    while sum(counts) < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts) > total:
        j = max(range(len(counts)), key=lambda k: counts[k])
        counts[j] -= 1
    return counts


def build_fleet(config: ReplayConfig) -> list[WorkerSpec]:
    """The workers: classes in proportion, per-worker speed jitter and background level (most
    workers lightly shared, some busier, a few with a noisy neighbour), faulty monitors spread
    over the classes."""
    rng = stream(config.seed, "fleet")
    # A class may also be given as a plain (kind, share, cores, memory_gib, gpu, speed) tuple.
    classes = [c if isinstance(c, FleetClass) else FleetClass(*c) for c in config.fleet_classes]
    counts = class_counts(config.workers, [c.share for c in classes])
    fleet = []
    for cls, count in zip(classes, counts):
        for _ in range(count):
            roll = rng.random()
            level = rng.uniform(0.05, 0.15) if roll < 0.6 else (
                rng.uniform(0.2, 0.4) if roll < 0.9 else rng.uniform(0.5, 0.75))
            fleet.append(WorkerSpec(
                worker_id=f"w{len(fleet):02d}-{cls.kind}", kind=cls.kind, cores=cls.cores,
                memory_bytes=int(cls.memory_gib * GIB), gpu=cls.gpu, speed=round(cls.speed * rng.uniform(0.9, 1.1), 3),
                slots=max(2, cls.cores // 4), background_level=level,
                background_memory_fraction=rng.uniform(0.1, 0.3)))
    faulty = round(config.faulty_monitor_share * len(fleet))
    if faulty:
        fault_rng = stream(config.seed, "monitor-faults")
        for n, index in enumerate(sorted(fault_rng.sample(range(len(fleet)), faulty))):
            worker = fleet[index]
            fleet[index] = (replace(worker, monitor_extra_delay_s=config.late_monitor_delay_s) if n % 2 == 0
                            else replace(worker, monitor_stops_s=round(fault_rng.uniform(*config.monitor_stop_s), 1)))
    return fleet


def _lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    """A log-normal draw with the given mean (not median)."""
    return mean * math.exp(rng.gauss(-sigma * sigma / 2, sigma))


def build_tasks(config: ReplayConfig, fleet: list[WorkerSpec]) -> list[TaskSpec]:
    """The tasks, in arrival order: type by weight, demand with noise, arrivals as a Poisson
    stream plus bursts over :func:`arrival_window_s`."""
    rng = stream(config.seed, "tasks")
    types = config.task_types
    window_s = arrival_window_s(config, fleet)

    arrivals: list[float] = []
    burst_tasks = int(config.tasks * config.burst_share)
    stream_tasks = config.tasks - burst_tasks
    arrivals += [rng.uniform(0, window_s) for _ in range(stream_tasks)]
    left = burst_tasks
    while left > 0:
        size = min(left, rng.randint(*config.burst_size))
        start = rng.uniform(0, window_s * 0.9)
        arrivals += [start + rng.uniform(0, config.burst_spread_s) for _ in range(size)]
        left -= size
    arrivals.sort()

    tasks = []
    for i, arrival in enumerate(arrivals):
        kind = rng.choices(types, weights=[t.weight for t in types])[0]
        gpu_percent = min(95.0, _lognormal(rng, kind.gpu_percent, 0.2)) if kind.gpu_percent else 0.0
        cores = round(_lognormal(rng, kind.cores, 0.25), 3)
        memory_bytes = int(_lognormal(rng, kind.memory_gb, kind.memory_sigma) * GIB)
        work_s = round(_lognormal(rng, kind.work_s, kind.work_sigma), 3)
        gpu_memory_bytes = int(_lognormal(rng, kind.gpu_memory_gb, kind.gpu_memory_sigma) * GIB) \
            if kind.gpu_memory_gb else 0
        tasks.append(TaskSpec(
            task_id=f"t{i:05d}-{kind.name}", type=kind.name, arrival_s=round(arrival, 3),
            requirements=dict(kind.requirements), cores=cores, memory_bytes=memory_bytes, work_s=work_s,
            gpu_percent=round(gpu_percent, 2), gpu_memory_bytes=gpu_memory_bytes,
            timeout_s=round(config.timeout_factor * work_s, 3)))
    return tasks
