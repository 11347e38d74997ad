"""The reference coordinator: workers register with capabilities, tasks queue by priority,
the scheduler picks a worker, the task runs for real in a subprocess and its result is kept.

It follows the coordinator contract the integration relies on (``workers``,
``task_scheduler.find_best_worker_for_task``, ``update_worker_performance``,
``register_worker_callback``) and adds task events (``register_task_callback``) so task
monitoring can start and stop with each task.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from fleet_hwmon.execution import ProcessTreeSample, TaskExecutionResult, TaskSpec, run_task
from fleet_hwmon.logutil import RateLimitedLogger
from fleet_hwmon.sample import utc_now
from fleet_hwmon.tasks import TASK_STATES, TaskOutcome
from fleet_hwmon.coordinator.scheduler import TaskScheduler
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch

log = logging.getLogger(__name__)

WORKER_EVENTS = ("worker_registered", "worker_deregistered")
TASK_EVENTS = ("task_assigned", "task_started", "task_sample", "task_finished")


@dataclass
class TaskRecord:
    """A task's life in the coordinator. ``status``: queued, running, completed, failed, or
    cancelled (running when the coordinator stopped and stopped with it)."""

    task: dict
    spec: TaskSpec
    status: str = "queued"
    worker_id: str | None = None
    attempts: int = 0
    result: TaskExecutionResult | None = None
    error: str | None = None
    submitted_at: Any = field(default_factory=utc_now)
    started_at: Any = None
    finished_at: Any = None
    stop_event: threading.Event = field(default_factory=threading.Event)


class Coordinator:
    """Hands queued tasks to workers and runs them.

    Args:
        max_tasks_per_worker: tasks a worker runs at once.
        seed: seeds the scheduler's tie-breaking.
        dispatch_interval_s: how often the queue is looked at when nothing happens.
        max_retries: times a task is requeued when its worker leaves mid-task; after that it fails.
        poll_interval_s: how often a running task's process tree is measured.

    A task no worker could take is asked about again as soon as the available workers or their
    task counts change, else after ``retry_unplaced_s`` (their load may have changed).
    """

    def __init__(self, *, max_tasks_per_worker: int = 2, seed: int = 0, dispatch_interval_s: float = 0.1,
                 max_retries: int = 1, poll_interval_s: float = 0.25) -> None:
        if max_tasks_per_worker < 1:
            raise ValueError("max_tasks_per_worker must be at least 1")
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_retries = max_retries
        self.poll_interval_s = poll_interval_s
        self.dispatch_interval_s = dispatch_interval_s
        self.workers: dict[str, dict] = {}
        self.task_scheduler = TaskScheduler(self.workers, seed=seed)
        self.tasks: dict[str, TaskRecord] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._sequence = itertools.count()
        # task id -> (available workers and their task counts, when) of its last failed placement
        self._unplaced: dict[str, tuple[tuple, float]] = {}
        self.retry_unplaced_s = 1.0
        self._running: dict[str, set[str]] = {}
        self._callbacks: dict[str, list[Callable[..., Any]]] = {e: [] for e in WORKER_EVENTS + TASK_EVENTS}
        self._lock = threading.RLock()
        self._tally = dict.fromkeys(("queued", "running", "completed", "failed", "cancelled"), 0)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task_threads: list[threading.Thread] = []
        self._log = RateLimitedLogger(log)

    # -- callbacks ------------------------------------------------------------------------------
    def register_worker_callback(self, event: str, callback: Callable[..., Any]) -> None:
        """``callback(worker_id, worker_info)`` on ``worker_registered`` / ``worker_deregistered``."""
        self._register(event, callback, WORKER_EVENTS)

    def register_task_callback(self, event: str, callback: Callable[..., Any]) -> None:
        """``task_assigned(task, worker_id)``, ``task_started(task, worker_id)``,
        ``task_sample(task, worker_id, ProcessTreeSample)``, ``task_finished(task, worker_id, result)``
        where ``result`` is a dict (``success``, ``error``, ``duration_s``, ``cpu_seconds``, ...)."""
        self._register(event, callback, TASK_EVENTS)

    def _register(self, event: str, callback: Callable[..., Any], events: tuple[str, ...]) -> None:
        if event not in events:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(events)}")
        self._callbacks[event].append(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks[event]):
            try:
                callback(*args)
            except Exception as err:  # a listener's fault must not stop the coordinator
                self._log.log(f"{event}:{type(err).__name__}", logging.ERROR,
                              "%s callback failed: %s: %s", event, type(err).__name__, err)

    # -- workers --------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, capabilities: Mapping[str, Any], **info: Any) -> None:
        """Add a worker; ``capabilities`` is the contract's dict (``hardware``, ``memory``, ``gpu``)."""
        if not worker_id:
            raise ValueError("worker_id must be a non-empty string")
        with self._lock:
            self.workers[worker_id] = {"capabilities": dict(capabilities), "status": "active",
                                       "registered_at": utc_now(), **info}
            self._running.setdefault(worker_id, set())
        self._emit("worker_registered", worker_id, self.workers[worker_id])
        self._wake.set()

    def deregister_worker(self, worker_id: str, reason: str = "deregistered") -> list[str]:
        """Remove a worker. Its running tasks are cancelled and requeued (up to ``max_retries``
        times, then failed). Returns the ids of the tasks it was running."""
        with self._lock:
            info = self.workers.pop(worker_id, None)
            if info is None:
                return []
            info["status"] = "offline"
            running = sorted(self._running.get(worker_id, ()))
            for task_id in running:
                self.tasks[task_id].error = f"worker {worker_id} {reason} while the task ran"
                self.tasks[task_id].stop_event.set()
        self._emit("worker_deregistered", worker_id, info)
        return running

    def worker_task_count(self) -> dict[str, int]:
        with self._lock:
            return {w: len(self._running.get(w, ())) for w in self.workers}

    # -- tasks ----------------------------------------------------------------------------------
    def submit_task(self, task: Mapping[str, Any]) -> str:
        """Queue a task: ``task_id``, ``type``, ``priority`` (higher first), ``requirements`` and
        ``spec`` (a :class:`TaskSpec` or its dict). Raises ``ValueError`` on malformed input."""
        if not isinstance(task, Mapping):
            raise ValueError(f"a task must be a dict, not {type(task).__name__}")
        task_id = task.get("task_id")
        if not task_id or not isinstance(task_id, str):
            raise ValueError("a task needs a non-empty string 'task_id'")
        TaskRequirements.from_task(task)  # validates
        spec = task.get("spec")
        if isinstance(spec, Mapping):
            spec = TaskSpec.from_dict(spec)
        if not isinstance(spec, TaskSpec):
            raise ValueError(f"task {task_id!r} has no 'spec' (a TaskSpec or its dict) to run")
        try:
            priority = int(task.get("priority", 0))
        except (TypeError, ValueError):
            raise ValueError(f"task {task_id!r}: priority must be an integer") from None
        with self._lock:
            if task_id in self.tasks:
                raise ValueError(f"task {task_id!r} was already submitted")
            plain = {k: v for k, v in task.items() if k != "spec"}
            plain.setdefault("priority", priority)
            self.tasks[task_id] = TaskRecord(plain, spec)
            self._tally["queued"] += 1
            heapq.heappush(self._queue, (-priority, next(self._sequence), task_id))
        self._wake.set()
        return task_id

    def counts(self) -> dict[str, int]:
        """Tasks by status: ``queued``, ``running``, ``completed``, ``failed``, ``cancelled``."""
        with self._lock:
            return dict(self._tally)

    def _set_status(self, record: TaskRecord, status: str) -> None:
        """Change a task's status and the tally :meth:`counts` reads (kept as it changes, as
        waiting loops poll it). Call with ``self._lock`` held."""
        self._tally[record.status] -= 1
        self._tally[status] += 1
        record.status = status

    def task_outcomes(self) -> list[TaskOutcome]:
        """Every submitted task's state now, as :class:`TaskOutcome` records; call after
        :meth:`stop` (a task whose cancellation was not answered yet is recorded ``cancelled``)."""
        now = utc_now()
        with self._lock:
            records = list(self.tasks.values())
        return [TaskOutcome(task_id=r.task["task_id"], state=r.status if r.status in TASK_STATES else "cancelled",
                            recorded_at=now, task_type=r.task.get("type"), worker_id=r.worker_id,
                            attempts=r.attempts, reason=r.error, submitted_at=r.submitted_at,
                            started_at=r.started_at, finished_at=r.finished_at) for r in records]

    def all_done(self) -> bool:
        counts = self.counts()
        return counts["queued"] == 0 and counts["running"] == 0

    # -- dispatch loop --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._dispatch_loop, name="coordinator-dispatch", daemon=True)
        self._thread.start()

    def stop(self, cancel_running: bool = True, timeout_s: float = 30.0) -> None:
        """Stop dispatching; cancel running tasks (by default) and wait for their threads."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if cancel_running:
            with self._lock:
                for record in self.tasks.values():
                    if record.status == "running":
                        record.error = record.error or "cancelled: the coordinator stopped"
                        record.stop_event.set()
        deadline = time.monotonic() + timeout_s
        for thread in list(self._task_threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_until_done(self, timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.all_done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch_once()
            except Exception as err:
                self._log.log(f"dispatch:{type(err).__name__}", logging.ERROR,
                              "dispatch failed: %s: %s", type(err).__name__, err)
            self._wake.wait(self.dispatch_interval_s)
            self._wake.clear()

    def dispatch_once(self) -> int:
        """Assign as many queued tasks as workers can take now; returns how many started."""
        started = 0
        deferred = []
        while True:
            with self._lock:
                if not self._queue:
                    break
                entry = heapq.heappop(self._queue)
                record = self.tasks[entry[2]]
                counts = self.worker_task_count()
                available = [w for w, n in counts.items()
                             if n < self.max_tasks_per_worker and self.workers[w].get("status") == "active"]
            if not available:
                deferred.append(entry)
                break
            if not self._anyone_fits(record.task):
                self._fail(record, "no registered worker has the hardware this task requires")
                continue
            situation = tuple(sorted((w, counts[w]) for w in available))
            last = self._unplaced.get(entry[2])
            if last is not None and last[0] == situation and time.monotonic() - last[1] < self.retry_unplaced_s:
                deferred.append(entry)  # nothing changed since no worker could take it: don't ask again yet
                continue
            worker_id, _score = self._choose(record.task, available, counts)
            if worker_id is None:
                self._unplaced[entry[2]] = (situation, time.monotonic())
                deferred.append(entry)
                continue
            self._unplaced.pop(entry[2], None)
            self._start(record, worker_id)
            started += 1
        with self._lock:
            for entry in deferred:
                heapq.heappush(self._queue, entry)
        return started

    def _anyone_fits(self, task: Mapping[str, Any]) -> bool:
        requirements = TaskRequirements.from_task(task)
        with self._lock:
            workers = list(self.workers.values())
        return any(hardware_mismatch(requirements, w.get("capabilities") or {}) is None for w in workers)

    def _choose(self, task: dict, available: list[str], counts: dict[str, int]) -> tuple[str | None, float]:
        choice = self.task_scheduler.find_best_worker_for_task(task, available, counts)
        if inspect.isawaitable(choice):
            choice = asyncio.run(choice)
        worker_id, score = choice
        if worker_id is not None and worker_id not in available:
            raise RuntimeError(f"the scheduler chose {worker_id!r}, which is not available")
        return worker_id, score

    def _start(self, record: TaskRecord, worker_id: str) -> None:
        task_id = record.task["task_id"]
        with self._lock:
            self._set_status(record, "running")
            record.worker_id = worker_id
            record.attempts += 1
            record.started_at = utc_now()
            record.stop_event = threading.Event()
            self._running[worker_id].add(task_id)
        self._emit("task_assigned", record.task, worker_id)
        thread = threading.Thread(target=self._execute, args=(record, worker_id), name=f"task:{task_id}",
                                  daemon=True)
        self._task_threads = [t for t in self._task_threads if t.is_alive()] + [thread]
        thread.start()

    def _execute(self, record: TaskRecord, worker_id: str) -> None:
        task = record.task
        self._emit("task_started", task, worker_id)

        def on_sample(sample: ProcessTreeSample) -> None:
            self._emit("task_sample", task, worker_id, sample)

        result = run_task(record.spec, poll_interval_s=self.poll_interval_s, on_sample=on_sample,
                          stop_event=record.stop_event)
        self._finish(record, worker_id, result)

    def _finish(self, record: TaskRecord, worker_id: str, result: TaskExecutionResult) -> None:
        task_id = record.task["task_id"]
        requeue = False
        with self._lock:
            self._running.get(worker_id, set()).discard(task_id)
            record.result = result
            worker_gone = worker_id not in self.workers
            if result.cancelled and worker_gone and record.attempts <= self.max_retries and not self._stop.is_set():
                requeue = True
                self._set_status(record, "queued")
                record.worker_id = None
                heapq.heappush(self._queue, (-int(record.task.get("priority", 0)), next(self._sequence), task_id))
            else:
                stopped = result.cancelled and self._stop.is_set() and not worker_gone
                self._set_status(record, "completed" if result.success else "cancelled" if stopped else "failed")
                record.error = None if result.success else (record.error if result.cancelled and record.error
                                                            else result.error)
                record.finished_at = utc_now()
        outcome = {**result.to_dict(), "task_id": task_id, "success": result.success and not requeue,
                   "error": record.error if not result.success else None, "requeued": requeue}
        self._emit("task_finished", record.task, worker_id, outcome)
        if not worker_gone:
            self.task_scheduler.update_worker_performance(worker_id, outcome)
        self._wake.set()

    def _fail(self, record: TaskRecord, error: str) -> None:
        with self._lock:
            self._set_status(record, "failed")
            record.error, record.finished_at = error, utc_now()
        log.warning("task %s failed: %s", record.task["task_id"], error)
