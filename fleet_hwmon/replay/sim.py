"""The discrete-event simulation of a fleet running a workload under one scheduling policy.

Physics (the same for every policy):

* A worker's cores are shared fairly: when background plus task demand exceeds its cores, every
  task on it slows by ``cores / demand``; GPU tasks sharing a GPU above 100 % slow the same way.
  A task progresses at ``worker speed * slowdown``.
* A task whose memory does not fit in what is free when it starts (background plus the other
  tasks' memory) fails: it takes what is free, runs a quarter of its work and is killed (OOM).
  The same for GPU memory (CUDA out of memory, after a tenth of its work). A failed attempt is
  queued again (at the back) until the task has had ``max_attempts``, as a test framework
  retries a task killed for lack of memory; its lost work is paid again.
* Background load (other tenants) changes at random times from a per-worker stream.
* Each worker's monitor samples every ``sample_interval_s`` (CPU percent averaged over the
  interval, as ``psutil.cpu_percent`` does; memory and GPU at the instant) and the sample
  reaches the scheduler after a delay; samples of a worker arrive in order.
* The coordinator mirrors the reference one: a FIFO queue (priority first), a worker is
  available while it runs fewer tasks than its slots, a task the policy cannot place waits;
  the queue is looked at when a task arrives or finishes and when a sample arrives.

Everything is driven by simulated time; the event log records arrivals, starts and finishes.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from fleet_hwmon.replay.workload import GIB, ReplayConfig, TaskSpec, WorkerSpec, build_fleet, build_tasks, stream
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
OVERLOAD_PERCENT = 95.0

# Event kinds, in the order they are handled at the same instant.
_FINISH, _BACKGROUND, _SAMPLE, _DELIVER, _ARRIVE = range(5)


class Policy(Protocol):
    """A scheduling policy under test. ``choose`` returns a worker among ``available`` or None
    (the task waits). ``matches_hardware``: the policy claims never to pick a worker lacking
    the hardware. The hooks see what a coordinator would: starts, finishes, delivered samples."""

    name: str
    matches_hardware: bool

    def attach(self, coordinator: SimCoordinator, clock: Any) -> None: ...
    def choose(self, task: dict, available: list[str], counts: dict[str, int]) -> str | None: ...
    def on_start(self, spec: TaskSpec, worker_id: str) -> None: ...
    def on_finish(self, spec: TaskSpec, worker_id: str, success: bool, error: str | None,
                  usage: dict[str, Any]) -> None: ...
    def on_sample(self, worker_id: str, sample: ResourceUtilization) -> None: ...
    def close(self) -> None: ...


class SimCoordinator:
    """The minimal contract coordinator: ``workers`` and the reference ``task_scheduler``."""

    def __init__(self, fleet: list[WorkerSpec], seed: int) -> None:
        from fleet_hwmon.coordinator.scheduler import TaskScheduler

        self.workers: dict[str, dict] = {w.worker_id: {"capabilities": w.capabilities(), "status": "active"}
                                         for w in fleet}
        self.task_scheduler = TaskScheduler(self.workers, seed=seed)


@dataclass
class _Running:
    spec: TaskSpec
    start_s: float
    remaining: float  # work seconds left at speed 1
    memory_bytes: int  # what it holds
    gpu_memory_bytes: int
    error: str | None  # set when it will end as a failure
    rate: float = 0.0
    cpu_seconds: float = 0.0
    gpu_percent_s: float = 0.0  # integral of its share of the GPU (percent x seconds)


@dataclass
class _Worker:
    spec: WorkerSpec
    tasks: dict[str, _Running] = field(default_factory=dict)
    bg_cores: float = 0.0
    bg_memory: int = 0
    last_s: float = 0.0
    version: int = 0
    cpu_factor: float = 1.0
    gpu_factor: float = 1.0
    cpu_busy_core_s: float = 0.0  # integral of min(demand, cores)
    sampled_core_s: float = 0.0  # cpu_busy_core_s at the previous sample
    last_sample_s: float = 0.0
    last_delivery_s: float = 0.0
    overload_s: float = 0.0
    background_overload_s: float = 0.0
    overload_by_resource: dict[str, float] = field(default_factory=lambda: {"cpu": 0.0, "memory": 0.0, "gpu": 0.0})

    def demand(self) -> float:
        return self.bg_cores + sum(t.spec.cores for t in self.tasks.values())

    def memory_used(self) -> int:
        return self.bg_memory + sum(t.memory_bytes for t in self.tasks.values())

    def gpu_percent(self) -> float:
        return sum(t.spec.gpu_percent for t in self.tasks.values() if t.spec.needs_gpu)

    def gpu_memory_used(self) -> int:
        return sum(t.gpu_memory_bytes for t in self.tasks.values())


@dataclass
class ReplayResult:
    """What one replay produced: the event log, per-worker ground truth and the outcomes.

    ``events``: ``(time_s, kind, task_id, worker_id, detail)`` with kind ``arrive``, ``start``
    or ``finish`` (detail: ``None`` on success, else the error).
    """

    policy: str
    seed: int
    events: list[tuple[float, str, str, str | None, str | None]]
    workers: dict[str, dict[str, Any]]
    incompatible_placements: int
    wall_s: float = 0.0
    outcomes: dict[str, Any] = field(default_factory=dict)


class Simulation:
    """One replay of ``config``'s workload under ``policy``. Call :meth:`run` once."""

    def __init__(self, config: ReplayConfig, policy: Policy) -> None:
        self.config = config
        self.policy = policy
        self.fleet = build_fleet(config)
        self.tasks = build_tasks(config, self.fleet)
        self.now = 0.0
        self._workers = {w.worker_id: _Worker(w) for w in self.fleet}
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._queue: list[tuple[int, int, str]] = []
        self._specs = {t.task_id: t for t in self.tasks}
        self._done = 0
        self.events: list[tuple[float, str, str, str | None, str | None]] = []
        self._incompatible = 0
        self._bg_rng = {w.worker_id: stream(config.seed, "background", w.worker_id) for w in self.fleet}
        self._delay_rng = {w.worker_id: stream(config.seed, "delay", w.worker_id) for w in self.fleet}
        phase_rng = stream(config.seed, "phase")
        self._phase = {w.worker_id: phase_rng.uniform(0, config.sample_interval_s) for w in self.fleet}
        self._req_cache: dict[str, TaskRequirements] = {}
        self._attempts: dict[str, int] = {}
        self.coordinator = SimCoordinator(self.fleet, config.seed)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        import time

        started = time.perf_counter()
        self.policy.attach(self.coordinator, lambda: self.now)
        try:
            for spec in self.tasks:
                self._push(spec.arrival_s, _ARRIVE, spec.task_id)
            for worker_id in self._workers:
                self._background(worker_id)
                self._push(self._phase[worker_id], _SAMPLE, worker_id)
            while self._heap and self._done < len(self.tasks):
                t, kind, _, a, b = heapq.heappop(self._heap)
                self.now = t
                if kind == _FINISH:
                    worker = self._workers[a]
                    if b[1] == worker.version and b[0] in worker.tasks:
                        self._finish(worker, b[0])
                        self._dispatch()
                elif kind == _ARRIVE:
                    self.events.append((t, "arrive", a, None, None))
                    spec = self._specs[a]
                    heapq.heappush(self._queue, (-spec.priority, next(self._seq), a))
                    self._dispatch()
                elif kind == _BACKGROUND:
                    self._background(a)
                elif kind == _SAMPLE:
                    self._take_sample(a)
                elif kind == _DELIVER:
                    self.policy.on_sample(a, b)
                    # A sample changes the scheduler's view of this worker only: worth a look at
                    # the queue when this worker could take a task.
                    worker = self._workers[a]
                    if self._queue and len(worker.tasks) < worker.spec.slots:
                        self._dispatch()
            makespan = self.now
            for worker in self._workers.values():
                self._advance(worker, makespan)
        finally:
            self.policy.close()
        result = ReplayResult(self.policy.name, self.config.seed, self.events, self._worker_totals(),
                              self._incompatible)
        result.wall_s = time.perf_counter() - started
        return result

    def _push(self, t: float, kind: int, a: Any, b: Any = None) -> None:
        heapq.heappush(self._heap, (t, kind, next(self._seq), a, b))

    # -- the coordinator --------------------------------------------------------------------------
    def _requirements(self, spec: TaskSpec) -> TaskRequirements:
        req = self._req_cache.get(spec.type)
        if req is None:
            req = self._req_cache[spec.type] = TaskRequirements.from_task(spec.as_task())
        return req

    def _dispatch(self) -> None:
        """The reference coordinator's dispatch_once: place queued tasks in order while workers
        are available; a task nobody takes now waits. Within one pass a task type the policy just
        declined is not asked again (nothing it could use has changed since)."""
        deferred = []
        declined: set[str] = set()
        counts = {w: len(s.tasks) for w, s in self._workers.items()}
        while self._queue:
            available = [w for w, s in self._workers.items() if counts[w] < s.spec.slots]
            if not available:
                break
            entry = heapq.heappop(self._queue)
            spec = self._specs[entry[2]]
            if spec.type in declined:
                deferred.append(entry)
                continue
            worker_id = self.policy.choose(spec.as_task(), available, counts)
            if worker_id is None:
                declined.add(spec.type)
                deferred.append(entry)
                continue
            if worker_id not in available:
                raise RuntimeError(f"policy {self.policy.name} chose {worker_id!r}, which is not available")
            self._start(spec, self._workers[worker_id])
            counts[worker_id] += 1
        for entry in deferred:
            heapq.heappush(self._queue, entry)

    # -- worker physics ---------------------------------------------------------------------------
    def _advance(self, worker: _Worker, t: float) -> None:
        dt = t - worker.last_s
        if dt <= 0:
            return
        cores = worker.spec.cores
        demand = worker.demand()
        worker.cpu_busy_core_s += min(demand, cores) * dt
        for task in worker.tasks.values():
            task.remaining -= task.rate * dt
            task.cpu_seconds += task.spec.cores * worker.cpu_factor * dt
            if task.spec.needs_gpu:
                task.gpu_percent_s += task.spec.gpu_percent * worker.gpu_factor * dt
        over = {"cpu": 100.0 * demand / cores > OVERLOAD_PERCENT,
                "memory": 100.0 * worker.memory_used() / worker.spec.memory_bytes > OVERLOAD_PERCENT,
                "gpu": worker.gpu_percent() > OVERLOAD_PERCENT}
        for resource, flag in over.items():
            if flag:
                worker.overload_by_resource[resource] += dt
        if any(over.values()):
            worker.overload_s += dt
            if 100.0 * worker.bg_cores / cores > OVERLOAD_PERCENT:
                worker.background_overload_s += dt  # no placement could have avoided it
        worker.last_s = t

    def _reschedule(self, worker: _Worker) -> None:
        """New rates after a change on the worker, and the finish event of each task."""
        worker.version += 1
        demand = worker.demand()
        worker.cpu_factor = min(1.0, worker.spec.cores / demand) if demand > 0 else 1.0
        gpu = worker.gpu_percent()
        gpu_factor = worker.gpu_factor = min(1.0, 100.0 / gpu) if gpu > 0 else 1.0
        for task_id, task in worker.tasks.items():
            factor = min(worker.cpu_factor, gpu_factor) if task.spec.needs_gpu else worker.cpu_factor
            task.rate = worker.spec.speed * factor
            self._push(self.now + max(0.0, task.remaining) / task.rate, _FINISH, worker.spec.worker_id,
                       (task_id, worker.version))

    def _start(self, spec: TaskSpec, worker: _Worker) -> None:
        self._advance(worker, self.now)
        ws = worker.spec
        if hardware_mismatch(self._requirements(spec), ws.capabilities()) is not None or not _fits(spec, ws):
            self._incompatible += 1
        free = ws.memory_bytes - worker.memory_used()
        memory, gpu_memory, remaining, error = spec.memory_bytes, spec.gpu_memory_bytes, spec.work_s, None
        if memory > free:
            memory, remaining, error = max(0, free), spec.work_s * 0.25, "out of memory"
        if spec.needs_gpu:
            gpu_free = (ws.gpu.memory_bytes if ws.gpu else 0) - worker.gpu_memory_used()
            if gpu_memory > gpu_free:
                gpu_memory = max(0, gpu_free)
                if error is None:
                    remaining, error = spec.work_s * 0.1, "CUDA out of memory"
        self._attempts[spec.task_id] = self._attempts.get(spec.task_id, 0) + 1
        worker.tasks[spec.task_id] = _Running(spec, self.now, remaining, memory, gpu_memory, error)
        self.events.append((self.now, "start", spec.task_id, ws.worker_id, None))
        self.policy.on_start(spec, ws.worker_id)
        self._reschedule(worker)

    def _finish(self, worker: _Worker, task_id: str) -> None:
        self._advance(worker, self.now)
        task = worker.tasks.pop(task_id)
        self.events.append((self.now, "finish", task_id, worker.spec.worker_id, task.error))
        retry = task.error is not None and self._attempts[task_id] < self.config.max_attempts
        if retry:  # queued again, at the back
            heapq.heappush(self._queue, (-task.spec.priority, next(self._seq), task_id))
        else:
            self._done += 1
        # What a process-tree measurement would report: CPU seconds, peak memory, and for a GPU
        # task its GPU memory and its mean share of the GPU (NVML per-process utilization).
        duration = self.now - task.start_s
        gpu = task.spec.needs_gpu
        usage = {"cpu_seconds": task.cpu_seconds, "peak_rss_bytes": task.memory_bytes,
                 "gpu_memory_peak_bytes": task.gpu_memory_bytes if gpu else None,
                 "gpu_utilization_percent": task.gpu_percent_s / duration if gpu and duration > 0 else None}
        self.policy.on_finish(task.spec, worker.spec.worker_id, task.error is None, task.error, usage)
        self._reschedule(worker)

    def _background(self, worker_id: str) -> None:
        """Draw the worker's next background level and when it changes again."""
        worker = self._workers[worker_id]
        self._advance(worker, self.now)
        rng, ws = self._bg_rng[worker_id], worker.spec
        level = min(0.9, ws.background_level * math.exp(rng.gauss(-0.045, 0.3)))
        if rng.random() < self.config.background_spike_chance:
            level += rng.uniform(0.2, 0.4)
        worker.bg_cores = ws.cores * min(1.0, level)
        room = ws.memory_bytes - sum(t.memory_bytes for t in worker.tasks.values())
        worker.bg_memory = int(min(room, ws.memory_bytes * min(0.5, ws.background_memory_fraction
                                                               * math.exp(rng.gauss(0, 0.2)))))
        self._push(self.now + rng.expovariate(1.0 / self.config.background_change_s), _BACKGROUND, worker_id)
        self._reschedule(worker)

    def _take_sample(self, worker_id: str) -> None:
        worker = self._workers[worker_id]
        self._advance(worker, self.now)
        ws, config = worker.spec, self.config
        interval = self.now - worker.last_sample_s
        cpu = None
        if interval > 0 and worker.last_sample_s > 0:  # like psutil, the first reading has no reference
            cpu = min(100.0, 100.0 * (worker.cpu_busy_core_s - worker.sampled_core_s) / (ws.cores * interval))
        worker.sampled_core_s, worker.last_sample_s = worker.cpu_busy_core_s, self.now
        used = worker.memory_used()
        gpus = ()
        if ws.gpu is not None:
            gpus = (GpuUtilization(0, f"GPU-{ws.worker_id}", ws.gpu.name,
                                   utilization_percent=min(100.0, worker.gpu_percent()),
                                   memory_used_bytes=worker.gpu_memory_used(), memory_total_bytes=ws.gpu.memory_bytes),)
        sample = ResourceUtilization(
            worker_id=ws.worker_id, timestamp=EPOCH + timedelta(seconds=self.now), cpu_percent=cpu,
            cpu_count_effective=float(ws.cores), memory_used_bytes=used, memory_total_bytes=ws.memory_bytes,
            memory_available_bytes=max(0, ws.memory_bytes - used), memory_percent=100.0 * used / ws.memory_bytes,
            gpus=gpus, task_ids=tuple(worker.tasks))
        rng = self._delay_rng[worker_id]
        delay = rng.expovariate(1.0 / config.sample_delay_s)
        if rng.random() < config.late_sample_chance:
            delay += rng.uniform(*config.late_sample_s)
        worker.last_delivery_s = max(worker.last_delivery_s, self.now + delay)
        self._push(worker.last_delivery_s, _DELIVER, worker_id, sample)
        self._push(self.now + config.sample_interval_s, _SAMPLE, worker_id)

    def _worker_totals(self) -> dict[str, dict[str, Any]]:
        makespan = self.now
        out = {}
        for worker_id, worker in self._workers.items():
            ws = worker.spec
            out[worker_id] = {
                "kind": ws.kind, "cores": ws.cores, "memory_gb": ws.memory_bytes / GIB,
                "gpu": ws.gpu.name if ws.gpu else None, "speed": ws.speed, "slots": ws.slots,
                "background_level": round(ws.background_level, 3),
                "cpu_utilization": worker.cpu_busy_core_s / (ws.cores * makespan) if makespan else 0.0,
                "overload_s": worker.overload_s,
                "background_overload_s": worker.background_overload_s,
                "overload_by_resource_s": dict(worker.overload_by_resource),
            }
        return out


def _fits(spec: TaskSpec, worker: WorkerSpec) -> bool:
    """Ground truth, independent of the product's matcher: does the worker have the hardware?"""
    req = spec.requirements
    if req.get("min_memory_gb") is not None and worker.memory_bytes < req["min_memory_gb"] * GIB:
        return False
    if not spec.needs_gpu:
        return True
    gpu = worker.gpu
    if gpu is None:
        return False
    if req.get("min_cuda_compute") is not None and gpu.cuda_compute < req["min_cuda_compute"]:
        return False
    return req.get("min_gpu_memory_gb") is None or gpu.memory_bytes >= req["min_gpu_memory_gb"] * GIB


def makespan_lower_bound_s(config: ReplayConfig) -> float:
    """The makespan no policy can beat on ``config``'s workload: the latest finish when every task
    starts at its arrival, alone on the fastest worker that has its hardware, and never fails."""
    fleet = build_fleet(config)
    return max(spec.arrival_s + spec.work_s / max(w.speed for w in fleet if _fits(spec, w))
               for spec in build_tasks(config, fleet))


def simulate(config: ReplayConfig, policy: Policy) -> ReplayResult:
    """Replay ``config``'s workload under ``policy``; outcomes filled in from the event log."""
    from fleet_hwmon.replay.outcomes import compute_outcomes

    result = Simulation(config, policy).run()
    result.outcomes = compute_outcomes(result)
    return result
