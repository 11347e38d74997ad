"""The discrete-event simulation of a fleet running a workload under one scheduling policy.

Physics, the same for every policy (the worker's own in :mod:`fleet_hwmon.replay.worker`):

* Over-subscribed cores and GPUs slow every task on the worker (and the other tenants, whose
  lost CPU is reported); an attempt still running ``timeout_s`` after its start is killed
  ("timed out"): over-subscription has a price.
* Memory ramps up over a task's life; when a worker runs out, the OOM killer ends the task
  holding the most memory. GPU memory is taken at start: an attempt whose GPU memory does not
  fit fails ("CUDA out of memory") after ``cuda_oom_after`` of its work. A failed attempt frees
  everything it held and is queued again (at the back) until the task has run ``max_attempts``
  times, so every policy does all the work; its lost work is paid again.
* Background load (other tenants) changes at random times from a per-worker stream.
* Each worker's monitor samples every ``sample_interval_s`` (CPU percent averaged over the
  interval, as ``psutil.cpu_percent`` does; memory and GPU at the instant); the sample reaches
  the scheduler after a delay, in order. A faulty monitor adds a long delay or stops for good,
  while the coordinator keeps seeing its worker alive.
* The coordinator mirrors the reference one: a FIFO queue (priority first), a worker is
  available while it runs fewer tasks than its slots, a task the policy cannot place waits, a
  task no registered worker has the hardware for fails at once; the queue is looked at when a
  task arrives or ends and when a sample of an available worker arrives.
* The run stops at ``horizon_factor`` times the makespan lower bound (of a policy that honours
  isolation: :func:`isolated_lower_bound_s`), or after ``stall_s`` with
  tasks queued, nothing running and nothing left to arrive: it is then reported unfinished,
  never a hang.

Everything is driven by simulated time; the event log records arrivals, starts and ends.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleet_hwmon.replay.bounds import isolated_lower_bound_s, makespan_lower_bound_s
from fleet_hwmon.replay.monitor import SimMonitor, runs_quiet
from fleet_hwmon.replay.worker import Attempt, SimWorker
from fleet_hwmon.replay.workload import ReplayConfig, TaskSpec, WorkerSpec, build_fleet, build_tasks, fits, stream
from fleet_hwmon.sample import ResourceUtilization
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch

NO_HARDWARE = "no registered worker has the hardware this task requires"
OOM_KILLED = "out of memory (killed by the OOM killer)"
CUDA_OOM = "CUDA out of memory"
TIMED_OUT = "timed out"

# Event kinds, in the order they are handled at the same instant.
_FINISH, _OOM, _TIMEOUT, _BACKGROUND, _SAMPLE, _DELIVER, _ARRIVE = range(7)


class Policy(Protocol):
    """A scheduling policy under test. ``choose`` returns a worker among ``available`` or None
    (the task waits). ``matches_hardware``: the policy claims never to pick a worker lacking
    the hardware. The hooks see what a coordinator would: starts, ends, delivered samples.
    ``decisions()`` (optional) is how many decisions the policy itself made, when that differs
    from how often it was asked. ``held_on(task_type, worker_id)`` (optional) says why the
    policy last held a task of the type off the worker (idle-while-waiting is counted by it).
    ``see_ground_truth(workers, specs)`` (optional, reference policies only) is handed the
    simulated workers and the tasks' true demand."""

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


class ReplayDidNotFinish(AssertionError):
    """A replay stopped at its horizon or stalled with tasks still queued or running."""


@dataclass
class ReplayResult:
    """What one replay produced: the event log, per-worker ground truth and the outcomes.

    ``events``: ``(time_s, kind, task_id, worker_id, detail)`` with kind ``arrive``, ``start``
    or ``finish`` (detail: ``None`` on success, else the error; a task no worker has the
    hardware for finishes at its arrival with worker ``None``). ``finished``: every task ended
    (succeeded, or failed for good: ``tasks_failed``, whose share of the workload's work, in
    seconds on the reference machine, is ``dropped_work_percent``); otherwise ``stop_reason`` says why the
    run was cut at ``end_s`` with ``unfinished_tasks`` queued or running. ``asks``: how often
    the coordinator asked the policy; ``decisions``: what the policy reports making (None when
    it does not say). ``isolation``: per task with ``requirements.isolation`` quiet or
    exclusive, ``[samples, samples under the threshold]``.
    """

    policy: str
    seed: int
    events: list[tuple[float, str, str, str | None, str | None]]
    workers: dict[str, dict[str, Any]]
    incompatible_placements: int
    end_s: float = 0.0
    finished: bool = True
    stop_reason: str | None = None
    makespan_lower_bound_s: float = 0.0
    asks: int = 0
    decisions: int | None = None
    tasks_failed: int = 0
    dropped_work_percent: float = 0.0
    unfinished_tasks: int = 0
    isolation: dict[str, list[int]] = field(default_factory=dict)
    workload: str = "default"
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
        self._workers = {w.worker_id: SimWorker(w) for w in self.fleet}
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._queue: list[tuple[int, int, str]] = []
        self._waiting: dict[str, list[tuple[int, int, str]]] = {}  # type -> sorted (memory, GPU memory, id)
        self._waiting_changed = False
        self._changed: set[str] = set()  # workers whose state changed in this event
        self._specs = {t.task_id: t for t in self.tasks}
        self._fits: dict[tuple[str, str], bool] = {}
        self._done = 0
        self._failed: list[str] = []  # tasks failed for good
        self._running = 0
        self._arrivals_left = len(self.tasks)
        self._last_activity_s = 0.0
        self.events: list[tuple[float, str, str, str | None, str | None]] = []
        self._incompatible = 0
        self._asks = 0
        self._asks_settled = 0  # asks when idle-while-waiting's reasons were last read
        self._isolation: dict[str, list[int]] = {}
        self._bg_rng = {w.worker_id: stream(config.seed, "background", w.worker_id) for w in self.fleet}
        self._monitors = {w.worker_id: SimMonitor(config, stream(config.seed, "delay", w.worker_id))
                          for w in self.fleet}
        phase_rng = stream(config.seed, "phase")
        self._phase = {w.worker_id: phase_rng.uniform(0, config.sample_interval_s) for w in self.fleet}
        self._req_cache: dict[str, TaskRequirements] = {}
        self._attempts: dict[str, int] = {}
        self.bound_s = makespan_lower_bound_s(config)
        self.coordinator = SimCoordinator(self.fleet, config.seed)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> ReplayResult:
        started = time.perf_counter()
        self.policy.attach(self.coordinator, lambda: self.now)
        see = getattr(self.policy, "see_ground_truth", None)
        if see is not None:  # a reference policy, not a scheduler: it reads the simulation's truth
            see(self._workers, self._specs)
        # Never before the last arrival: a workload no worker can run has a bound of 0, and its
        # tasks must still arrive (and fail at once).
        horizon_s = max(self.config.horizon_factor * isolated_lower_bound_s(self.config),
                        max((spec.arrival_s for spec in self.tasks), default=0.0))
        stop_reason = None
        try:
            for spec in self.tasks:
                self._push(spec.arrival_s, _ARRIVE, spec.task_id)
            for worker_id in self._workers:
                self._background(worker_id)
                self._push(self._phase[worker_id], _SAMPLE, worker_id)
            self._settle()
            while self._heap and self._done < len(self.tasks):
                t = self._heap[0][0]
                if t > horizon_s:
                    stop_reason = f"horizon {horizon_s:.0f} s reached ({self.config.horizon_factor:g}x the lower bound)"
                    self.now = horizon_s
                    break
                if self._stalled(t):
                    stop_reason = (f"stalled: {len(self._queue)} tasks queued, none running, "
                                   f"nothing started for {self.config.stall_s:g} s")
                    self.now = self._last_activity_s + self.config.stall_s
                    break
                t, kind, _, a, b = heapq.heappop(self._heap)
                self.now = t
                self._handle(kind, a, b)
                self._settle()
            for worker in self._workers.values():
                worker.advance(self.now)
            decisions = getattr(self.policy, "decisions", None)
            decisions = decisions() if callable(decisions) else None
        finally:
            self.policy.close()
        result = ReplayResult(
            self.policy.name, self.config.seed, self.events, self._worker_totals(), self._incompatible,
            end_s=self.now, finished=self._done == len(self.tasks), stop_reason=stop_reason,
            makespan_lower_bound_s=self.bound_s, asks=self._asks, decisions=decisions,
            isolation=self._isolation, workload=self.config.name, tasks_failed=len(self._failed),
            dropped_work_percent=100.0 * sum(self._specs[t].work_s for t in self._failed) / sum(
                t.work_s for t in self.tasks),
            unfinished_tasks=len(self.tasks) - self._done)
        if not result.finished and result.stop_reason is None:
            result.stop_reason = "no event left with tasks unfinished"
        result.wall_s = time.perf_counter() - started
        return result

    def _stalled(self, next_s: float) -> bool:
        return (bool(self._queue) and self._running == 0 and self._arrivals_left == 0
                and next_s - self._last_activity_s > self.config.stall_s)

    def _handle(self, kind: int, a: Any, b: Any) -> None:
        if kind == _FINISH or kind == _OOM or kind == _TIMEOUT:
            worker = self._workers[a]
            worker.advance(self.now)
            if kind == _FINISH and b[1] == worker.version and b[0] in worker.tasks:
                self._end(worker, b[0])
            elif kind == _OOM and b == worker.version:
                if worker.memory_used() >= worker.spec.memory_bytes - 2**20 and worker.tasks:
                    self._end(worker, worker.largest_task(), OOM_KILLED)
                else:  # rounding: the crossing is a hair later
                    self._reschedule(worker)
            elif kind == _TIMEOUT:
                task = worker.tasks.get(b[0])
                if task is not None and task.number == b[1]:
                    self._end(worker, b[0], TIMED_OUT)
        elif kind == _ARRIVE:
            self._arrive(self._specs[a])
        elif kind == _BACKGROUND:
            self._background(a)
        elif kind == _SAMPLE:
            self._take_sample(a)
        elif kind == _DELIVER:
            self.policy.on_sample(a, b)
            # A sample changes the scheduler's view of this worker only: worth a look at the
            # queue when this worker could take a task.
            if self._queue and self._workers[a].has_free_slot():
                self._dispatch()

    def _push(self, t: float, kind: int, a: Any, b: Any = None) -> None:
        heapq.heappush(self._heap, (t, kind, next(self._seq), a, b))

    # -- the coordinator --------------------------------------------------------------------------
    def _requirements(self, spec: TaskSpec) -> TaskRequirements:
        req = self._req_cache.get(spec.type)
        if req is None:
            req = self._req_cache[spec.type] = TaskRequirements.from_task(spec.as_task())
        return req

    def _fits_worker(self, spec: TaskSpec, worker: WorkerSpec) -> bool:
        key = (spec.type, worker.worker_id)
        ok = self._fits.get(key)
        if ok is None:
            ok = self._fits[key] = fits(spec.requirements, worker)
        return ok

    def _arrive(self, spec: TaskSpec) -> None:
        self.events.append((self.now, "arrive", spec.task_id, None, None))
        self._arrivals_left -= 1
        self._last_activity_s = self.now
        if not any(self._fits_worker(spec, w) for w in self.fleet):
            self.events.append((self.now, "finish", spec.task_id, None, NO_HARDWARE))
            self._done += 1
            self._failed.append(spec.task_id)
            return
        self._enqueue(spec)
        self._dispatch()

    def _enqueue(self, spec: TaskSpec) -> None:
        heapq.heappush(self._queue, (-spec.priority, next(self._seq), spec.task_id))
        bisect.insort(self._waiting.setdefault(spec.type, []), (spec.memory_bytes, spec.gpu_memory_bytes, spec.task_id))
        self._waiting_changed = True

    def _dequeued(self, spec: TaskSpec) -> None:
        waiting = self._waiting[spec.type]
        del waiting[bisect.bisect_left(waiting, (spec.memory_bytes, spec.gpu_memory_bytes, spec.task_id))]
        if not waiting:
            del self._waiting[spec.type]
        self._waiting_changed = True

    def _dispatch(self) -> None:
        """The reference coordinator's dispatch_once: place queued tasks in order while workers
        are available; a task nobody takes now waits. Within one pass a task type the policy just
        declined is not asked again for tasks on their first attempt (the policy knows nothing
        else of them, and nothing it could use has changed since). A task with a failed attempt
        behind it is asked on its own and stands for no other: what a policy learnt from its
        failure (a raised estimate of its own need) is not its type's."""
        deferred = []
        declined: set[str] = set()
        counts = {w: len(s.tasks) for w, s in self._workers.items()}
        while self._queue:
            available = [w for w, s in self._workers.items() if counts[w] < s.spec.slots]
            if not available:
                break
            entry = heapq.heappop(self._queue)
            spec = self._specs[entry[2]]
            retried = spec.task_id in self._attempts
            if not retried and spec.type in declined:
                deferred.append(entry)
                continue
            self._asks += 1
            worker_id = self.policy.choose(spec.as_task(), available, counts)
            if worker_id is None:
                if not retried:
                    declined.add(spec.type)
                deferred.append(entry)
                continue
            if worker_id not in available:
                raise RuntimeError(f"policy {self.policy.name} chose {worker_id!r}, which is not available")
            self._dequeued(spec)
            self._start(spec, self._workers[worker_id])
            counts[worker_id] += 1
        for entry in deferred:
            heapq.heappush(self._queue, entry)

    def _settle(self) -> None:
        """After an event: which workers now have a free slot and room
        (:meth:`SimWorker.has_room_for`) for some waiting task they have the hardware for. Their
        idle cores count as idle-while-waiting until that changes, by why the policy holds that
        task off the worker (its ``held_on``, asked again whenever it has decided since)."""
        workers = self._workers.values() if self._waiting_changed else [self._workers[w] for w in self._changed]
        for worker in workers:
            worker.advance(self.now)
            worker.room_type = self._room_for_waiting(worker) if worker.has_free_slot() else None
            worker.room_for_waiting = worker.room_type is not None
        held_on = getattr(self.policy, "held_on", None)
        if held_on is not None:
            if self._asks != self._asks_settled:  # the policy decided: it may say otherwise of any worker
                workers, self._asks_settled = self._workers.values(), self._asks
            for worker in workers:
                if worker.room_type is not None:
                    worker.advance(self.now)  # (the interval so far counts under the reason it had)
                worker.room_reason = None if worker.room_type is None else held_on(worker.room_type,
                                                                                   worker.spec.worker_id)
        self._waiting_changed = False
        self._changed.clear()

    def _room_for_waiting(self, worker: SimWorker) -> str | None:
        """The type of a waiting task that has room on ``worker`` (:meth:`SimWorker.has_room_for`),
        if any. Each type's waiting tasks are in order of memory: every one whose memory fits is
        tried, since a GPU task's GPU memory and a quiet task's cores and GPU share vary apart
        from it (the smallest by memory alone is not always the one that fits)."""
        free = worker.spec.memory_bytes - worker.memory_committed()
        for waiting in self._waiting.values():
            if not self._fits_worker(self._specs[waiting[0][2]], worker.spec):
                continue
            for memory, _, task_id in waiting:
                if memory > free:
                    break
                spec = self._specs[task_id]
                if worker.has_room_for(spec):
                    return spec.type
        return None

    # -- attempts ---------------------------------------------------------------------------------
    def _start(self, spec: TaskSpec, worker: SimWorker) -> None:
        worker.advance(self.now)
        ws = worker.spec
        if hardware_mismatch(self._requirements(spec), ws.capabilities()) is not None \
                or not self._fits_worker(spec, ws):
            self._incompatible += 1
        number = self._attempts[spec.task_id] = self._attempts.get(spec.task_id, 0) + 1
        gpu_memory, target, error = spec.gpu_memory_bytes, spec.work_s, None
        if spec.needs_gpu:
            gpu_free = (ws.gpu.memory_bytes if ws.gpu else 0) - worker.gpu_memory_used()
            if gpu_memory > gpu_free:  # the allocation fails: nothing is held on the GPU
                gpu_memory, target, error = 0, spec.work_s * self.config.cuda_oom_after, CUDA_OOM
        worker.tasks[spec.task_id] = Attempt(spec, number, self.now, target, error, gpu_memory, self.config.memory_ramp)
        self._running += 1
        self._last_activity_s = self.now
        self.events.append((self.now, "start", spec.task_id, ws.worker_id, None))
        self.policy.on_start(spec, ws.worker_id)
        self._push(self.now + spec.timeout_s, _TIMEOUT, ws.worker_id, (spec.task_id, number))
        self._reschedule(worker)

    def _end(self, worker: SimWorker, task_id: str, error: str | None = None) -> None:
        """An attempt ends: at its target (its own error, if it was bound to fail) or killed
        with ``error``. What it held is freed; a failed attempt is queued again."""
        task = worker.tasks.pop(task_id)
        error = error or task.error
        self._running -= 1
        self._last_activity_s = self.now
        self.events.append((self.now, "finish", task_id, worker.spec.worker_id, error))
        if error is not None and task.number < self.config.max_attempts:
            self._enqueue(task.spec)
        else:
            self._done += 1
            if error is not None:
                self._failed.append(task_id)
        # What a process-tree measurement would report: CPU seconds, peak memory, and for a GPU
        # task its GPU memory and its mean share of the GPU (NVML per-process utilization).
        duration = self.now - task.start_s
        gpu = task.spec.needs_gpu
        usage = {"cpu_seconds": task.cpu_seconds, "peak_rss_bytes": task.peak_memory_bytes,
                 "gpu_memory_peak_bytes": task.gpu_memory_bytes if gpu else None,
                 "gpu_utilization_percent": task.gpu_percent_s / duration if gpu and duration > 0 else None}
        self.policy.on_finish(task.spec, worker.spec.worker_id, error is None, error, usage)
        self._reschedule(worker)
        self._dispatch()

    def _reschedule(self, worker: SimWorker) -> None:
        """New rates after a change on the worker; the next end of each task and the next OOM."""
        worker.set_rates()
        worker_id = worker.spec.worker_id
        for task_id, task in worker.tasks.items():
            self._push(self.now + max(0.0, task.target - task.done) / task.rate, _FINISH, worker_id,
                       (task_id, worker.version))
        oom_s = worker.oom_time(self.now) if worker.tasks else None
        if oom_s is not None:
            self._push(oom_s, _OOM, worker_id, worker.version)
        self._changed.add(worker_id)

    # -- the world around the tasks ---------------------------------------------------------------
    def _background(self, worker_id: str) -> None:
        """Draw the worker's next background level and when it changes again."""
        worker = self._workers[worker_id]
        worker.advance(self.now)
        rng, ws = self._bg_rng[worker_id], worker.spec
        level = min(0.9, ws.background_level * math.exp(rng.gauss(-0.045, 0.3)))
        if rng.random() < self.config.background_spike_chance:
            level += rng.uniform(0.2, 0.4)
        worker.bg_cores = ws.cores * min(1.0, level)
        worker.bg_memory = int(ws.memory_bytes * min(0.5, ws.background_memory_fraction * math.exp(rng.gauss(0, 0.2))))
        self._push(self.now + rng.expovariate(1.0 / self.config.background_change_s), _BACKGROUND, worker_id)
        self._reschedule(worker)

    def _take_sample(self, worker_id: str) -> None:
        worker = self._workers[worker_id]
        worker.advance(self.now)
        cpu_percent, delivery = self._monitors[worker_id].take(worker, self.now)
        for task in worker.tasks.values():
            if task.spec.isolation != "shared":
                counts = self._isolation.setdefault(task.spec.task_id, [0, 0])
                counts[0] += 1
                counts[1] += runs_quiet(worker, task, cpu_percent)
        self._push(self.now + self.config.sample_interval_s, _SAMPLE, worker_id)
        if delivery is not None:
            self._push(delivery[0], _DELIVER, worker_id, delivery[1])

    def _worker_totals(self) -> dict[str, dict[str, Any]]:
        end_s = self.now
        out = {}
        for worker_id, worker in self._workers.items():
            ws = worker.spec
            out[worker_id] = {
                "kind": ws.kind, "cores": ws.cores, "memory_gb": ws.memory_bytes / 1024**3,
                "gpu": ws.gpu.name if ws.gpu else None, "speed": ws.speed, "slots": ws.slots,
                "background_level": round(ws.background_level, 3),
                "monitor": ("stops" if ws.monitor_stops_s is not None
                            else "late" if ws.monitor_extra_delay_s else "ok"),
                "cpu_utilization": worker.cpu_busy_core_s / (ws.cores * end_s) if end_s else 0.0,
                "overload_s": worker.overload_s,
                "background_overload_s": worker.background_overload_s,
                "overload_by_resource_s": dict(worker.overload_by_resource),
                "tenant_core_s": worker.tenant_core_s,
                "tenant_taken_core_s": worker.tenant_taken_core_s,
                "idle_while_waiting_core_s": worker.idle_while_waiting_core_s,
                "idle_by_reason_core_s": dict(worker.idle_by_reason),
            }
        return out


def simulate(config: ReplayConfig, policy: Policy, *, require_finish: bool = False) -> ReplayResult:
    """Replay ``config``'s workload under ``policy``; outcomes filled in from the event log.
    With ``require_finish``, a run that did not finish raises :class:`ReplayDidNotFinish`."""
    from fleet_hwmon.replay.outcomes import compute_outcomes

    result = Simulation(config, policy).run()
    result.outcomes = compute_outcomes(result)
    if require_finish and not result.finished:
        raise ReplayDidNotFinish(f"{config.name} seed {config.seed} under {result.policy}: {result.stop_reason}")
    return result
