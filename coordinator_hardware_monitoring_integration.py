"""Hardware monitoring and hardware-aware scheduling for any coordinator that follows the contract.

Example::

    from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
    from hardware_utilization_monitor import MonitoringLevel

    integration = CoordinatorHardwareMonitoringIntegration(
        coordinator, db_path="hardware_metrics.duckdb", monitoring_level=MonitoringLevel.STANDARD)
    integration.initialize()            # monitors per worker; the scheduler now goes through us
    integration.start_task_monitoring("task-1", "worker-1")
    ...
    integration.stop_task_monitoring("task-1", "worker-1", success=True)
    integration.generate_html_report("hardware_utilization_report.html")
    integration.shutdown()              # restores the scheduler, flushes, closes

The coordinator needs ``workers`` (worker id -> dict with ``capabilities`` and ``status``) and
``task_scheduler.find_best_worker_for_task(task, available_workers, worker_task_count)`` (or
``find_best_worker``), sync or async. Optional: ``register_worker_callback(event, fn)`` for
``worker_registered`` / ``worker_deregistered``, ``register_task_callback(event, fn)`` for
``task_started`` / ``task_finished``, and ``max_tasks_per_worker``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import operator
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from fleet_hwmon.integration import (
    CallerShape,
    CoordinatorContractError,
    SchedulerPatch,
    check_contract,
    OriginalScores,
    original_scores_async,
    original_scores_sync,
)
from fleet_hwmon.sample import ResourceUtilization, finite, utc_now
from fleet_hwmon.scoring.decide import (Exclusion, SchedulingDecision, decide_among, fits_when_idle,
                                        task_demand_for)
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import NO_DEMAND, PerformanceHistory
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch
from fleet_hwmon.scoring.reservations import Reservations
from fleet_hwmon.scoring.views import InFlight, WorkerView, capacity_from_capabilities
from fleet_hwmon.store import close_store, open_store
from hardware_utilization_monitor import HardwareUtilizationMonitor, MonitoringLevel, TaskResourceUsage

__all__ = ["CoordinatorContractError", "CoordinatorHardwareMonitoringIntegration"]

log = logging.getLogger("fleet_hwmon.integration")

DECISIONS_TABLE = "scheduling_decisions"
_reason_of = operator.attrgetter("reason")


def exclusion_category(reason: str) -> str:
    """A short category of an exclusion reason, for statistics."""
    if reason.startswith(("lacks", "memory ", "no GPU", "no device", "rejected by")):
        return "hardware"
    if reason.startswith(("stale", "no sample")):
        return "stale"
    if "> critical" in reason:
        return "overloaded"
    if reason.startswith(("predicted memory", "predicted GPU memory", "required GPU memory")):
        return "memory"
    if reason.startswith(("predicted cpu", "predicted gpu")):
        return "capacity"
    if reason.startswith("reserved for"):
        return "reserved"
    if reason.startswith("at task limit"):
        return "task limit"
    return "other"


class CoordinatorHardwareMonitoringIntegration:
    """Plugs hardware monitoring into a coordinator and makes its scheduler hardware-aware.

    Args:
        coordinator: any object following the coordinator contract (see the module docstring).
        db_path: the DuckDB file for samples, tasks, alerts, capabilities and decisions; ``None``
            uses a temporary file removed at :meth:`shutdown`.
        monitoring_level: level of the monitors of local workers (sampling this host).
        enable_resource_aware_scheduling: patch the scheduler (False: monitor only).
        utilization_threshold: percent above which a worker counts as overloaded in statistics
            and reports.
        update_interval_seconds: expected interval of worker samples; a worker is stale after
            ``stale_after_intervals`` of them without one.
        hardware_scoring_factors: overrides of :class:`ScoringFactors` (also editable later via
            the ``hardware_scoring_factors`` dict).
        seed: makes tie-breaking reproducible.
        clock: monotonic seconds for intervals (staleness, hysteresis, in-flight tasks).
        wall_clock: the current UTC time (timezone-aware ``datetime``) used to date decisions,
            task starts and ends (handed to every worker's monitor) and assignments; samples
            are compared with it by their own timestamps. A simulation passes its own.

    Raises:
        CoordinatorContractError (a TypeError) from :meth:`initialize` when the coordinator lacks
        what the contract needs.
    """

    def __init__(self, coordinator: Any, db_path: str | None = None,
                 monitoring_level: MonitoringLevel | str = MonitoringLevel.STANDARD,
                 enable_resource_aware_scheduling: bool = True, utilization_threshold: float = 80.0,
                 update_interval_seconds: float = 5.0, *,
                 hardware_scoring_factors: Mapping[str, float] | None = None,
                 alert_thresholds: Mapping[str, Any] | None = None, seed: int = 0,
                 detect_capabilities: bool = True, max_recorded_candidates: int = 20,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = utc_now) -> None:
        if update_interval_seconds <= 0:
            raise ValueError("update_interval_seconds must be positive")
        self.coordinator = coordinator
        self.monitoring_level = MonitoringLevel.parse(monitoring_level)
        self.enable_resource_aware_scheduling = enable_resource_aware_scheduling
        self.utilization_threshold = float(utilization_threshold)
        self.update_interval_seconds = float(update_interval_seconds)
        self.hardware_scoring_factors: dict[str, float] = ScoringFactors.from_mapping(
            hardware_scoring_factors).as_dict()
        self.alert_thresholds = alert_thresholds
        self.seed = seed
        self.detect_capabilities = detect_capabilities
        self.max_recorded_candidates = max_recorded_candidates
        self._clock = clock
        self._wall_clock = wall_clock
        self._temp_dir: str | None = None
        if db_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="hwmon-")
            db_path = str(Path(self._temp_dir) / "hardware_metrics.duckdb")
        self.db_path = db_path
        self.worker_monitors: dict[str, HardwareUtilizationMonitor] = {}
        self.history = PerformanceHistory()
        self._views: dict[str, WorkerView] = {}
        # requirements -> worker id -> why its hardware cannot run them (None: it can)
        self._mismatch_cache: dict[TaskRequirements, dict[str, Exclusion | None]] = {}
        self._reservations = Reservations()
        self._task_types: dict[str, str | None] = {}
        self._inflight_at: dict[str, str] = {}  # task id -> worker its latest decision chose
        self._decisions: collections.deque[SchedulingDecision] = collections.deque(maxlen=1000)
        self._stats = collections.Counter()
        self._exclusions_by_category = collections.Counter()
        self._tasks_per_worker = collections.Counter()
        self._factors_cache: tuple[dict, ScoringFactors] | None = None
        self._lock = threading.RLock()
        self._store = None
        self._patch: SchedulerPatch | None = None
        self._active = False
        self._initialized = False

    # -- life cycle -----------------------------------------------------------------------------
    def initialize(self) -> CoordinatorHardwareMonitoringIntegration:
        """Check the contract, open the database, monitor every worker, hook the coordinator's
        events and patch its scheduler. Idempotent; returns ``self``."""
        if self._initialized:
            return self
        scheduler, method = check_contract(self.coordinator)
        self._store = open_store(self.db_path)
        self._store.ensure_table(DECISIONS_TABLE, SchedulingDecision)
        self._active = True
        for worker_id, info in list(self.coordinator.workers.items()):
            self._on_worker_registered(worker_id, info)
        self._hook_events()
        if self.enable_resource_aware_scheduling:
            self._patch = SchedulerPatch.apply(scheduler, method, self._make_patched)
        self._initialized = True
        return self

    def shutdown(self) -> None:
        """Restore the scheduler, stop every monitor, flush and close the database. Safe twice."""
        if not self._initialized:
            return
        self._active = False
        if self._patch is not None:
            self._patch.restore()
            self._patch = None
        for monitor in list(self.worker_monitors.values()):
            monitor.stop_monitoring()
        if self._store is not None:
            close_store(self._store)
            self._store = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._initialized = False

    def __enter__(self) -> CoordinatorHardwareMonitoringIntegration:
        return self.initialize()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _hook_events(self) -> None:
        register = getattr(self.coordinator, "register_worker_callback", None)
        if callable(register):
            register("worker_registered", self._guarded(self._on_worker_registered))
            register("worker_deregistered", self._guarded(self._on_worker_deregistered))
        register_task = getattr(self.coordinator, "register_task_callback", None)
        if callable(register_task):
            register_task("task_started", self._guarded(
                lambda task, worker_id: self.start_task_monitoring(task["task_id"], worker_id, task.get("type"))))
            register_task("task_finished", self._guarded(self._on_task_finished))

    def _guarded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Coordinator callbacks stay registered after shutdown; they then do nothing."""
        def call(*args: Any) -> Any:
            if self._active:
                return fn(*args)
            return None
        return call

    # -- workers --------------------------------------------------------------------------------
    def _on_worker_registered(self, worker_id: str, info: Mapping[str, Any]) -> None:
        self._describe_worker(worker_id, info)
        cores, memory_bytes = capacity_from_capabilities(info.get("capabilities") or {})
        with self._lock:
            for per_worker in self._mismatch_cache.values():
                per_worker.pop(worker_id, None)
            self._views[worker_id] = WorkerView(worker_id, registered_s=self._clock(), cpu_count=cores,
                                                memory_total_bytes=memory_bytes)
        self._monitor_for(worker_id, local=bool(info.get("local")))

    def _describe_worker(self, worker_id: str, info: Mapping[str, Any]) -> None:
        """Store the worker's detected capabilities; detect them when a local worker has none."""
        detected = info.get("hardware_capabilities")
        if detected is None and not info.get("capabilities") and info.get("local") and self.detect_capabilities:
            from hardware_capability_detector import HardwareCapabilityDetector

            detector = HardwareCapabilityDetector(worker_id=worker_id)
            detected = detector.detect_all_capabilities()
            if isinstance(info, dict):
                info["capabilities"] = detector.to_coordinator_capabilities(detected)
        if detected is not None:
            from fleet_hwmon.capabilities import storage

            storage.save(self._store, detected)

    def _monitor_for(self, worker_id: str, local: bool = False) -> HardwareUtilizationMonitor:
        """The worker's monitor: sampling this host for a local worker, else push-only (its
        samples arrive through :meth:`update_worker_utilization`)."""
        with self._lock:
            monitor = self.worker_monitors.get(worker_id)
            if monitor is None:
                monitor = HardwareUtilizationMonitor(
                    worker_id, self.db_path, self.monitoring_level,
                    self.update_interval_seconds if local else None, self.alert_thresholds,
                    push_only=not local, wall_clock=self._wall_clock)
                monitor.add_sample_listener(self._observe)
                self.worker_monitors[worker_id] = monitor
                monitor.start_monitoring()
            return monitor

    def _observe(self, sample: ResourceUtilization) -> None:
        with self._lock:
            view = self._views.get(sample.worker_id)
            if view is None:
                view = self._views[sample.worker_id] = WorkerView(sample.worker_id, registered_s=self._clock())
            view.observe(sample, self._clock(), self._factors())

    def _on_worker_deregistered(self, worker_id: str, info: Mapping[str, Any] | None = None) -> None:
        """Stop the worker's monitoring; its running tasks end as failed in the records (the
        reference coordinator requeues them and they start again elsewhere)."""
        with self._lock:
            monitor = self.worker_monitors.pop(worker_id, None)
            self._views.pop(worker_id, None)
            self._reservations.worker_left(worker_id)
        if monitor is None:
            return
        for task_id in list(monitor._active_tasks):
            try:
                self.stop_task_monitoring(task_id, worker_id, success=False,
                                          error=f"worker {worker_id} left while the task ran", _monitor=monitor)
            except KeyError:
                pass
        monitor.stop_monitoring()

    # -- samples --------------------------------------------------------------------------------
    def update_worker_utilization(self, worker_id: str, utilization: ResourceUtilization | Mapping[str, Any]) -> None:
        """Take a sample pushed by (or measured for) ``worker_id``: a :class:`ResourceUtilization`
        or its dict form. It goes down the same path as a local sample (database, alerts, task
        usage) and updates the scheduler's view of the worker.

        Raises ``ValueError`` for a malformed sample or one that names another worker.
        """
        if isinstance(utilization, Mapping):
            data = dict(utilization)
            data.setdefault("worker_id", worker_id)
            data.setdefault("timestamp", self._wall_clock())
            try:
                sample = ResourceUtilization.from_dict(data)
            except (TypeError, AttributeError) as err:  # e.g. a GPU entry without its uuid
                raise ValueError(f"malformed sample of worker {worker_id!r}: {err}") from err
        elif isinstance(utilization, ResourceUtilization):
            sample = utilization
        else:
            raise ValueError(f"a sample must be a ResourceUtilization or a dict, not {type(utilization).__name__}")
        if sample.worker_id != worker_id:
            raise ValueError(f"sample of worker {sample.worker_id!r} pushed as {worker_id!r}")
        if not self._initialized:
            raise RuntimeError("initialize() the integration before pushing samples")
        self._monitor_for(worker_id).record_sample(sample)  # -> database, alerts, tasks, view

    def get_worker_utilization(self, worker_id: str | None = None) -> Any:
        """The latest sample of ``worker_id`` (``None`` if it has none), or of every worker as a dict."""
        if worker_id is not None:
            monitor = self.worker_monitors.get(worker_id)
            return monitor.get_current_metrics() if monitor else None
        return {w: m.get_current_metrics() for w, m in self.worker_monitors.items()}

    # -- tasks ----------------------------------------------------------------------------------
    def start_task_monitoring(self, task_id: str, worker_id: str, task_type: str | None = None) -> None:
        """Attribute ``worker_id``'s samples to ``task_id`` from now on. Raises ``KeyError`` for
        an unknown worker."""
        monitor = self.worker_monitors.get(worker_id)
        if monitor is None:
            raise KeyError(f"worker {worker_id!r} is not monitored")
        task_type = task_type if task_type is not None else self._task_types.get(task_id)
        self._task_types[task_id] = task_type
        monitor.start_task_monitoring(task_id, task_type)

    def stop_task_monitoring(self, task_id: str, worker_id: str, success: bool = True, error: str | None = None,
                             *, process_usage: Mapping[str, Any] | None = None,
                             _monitor: HardwareUtilizationMonitor | None = None) -> TaskResourceUsage:
        """End ``task_id`` on ``worker_id``: its usage is stored and learnt from (performance
        history per worker and task type). ``process_usage`` adds the task's process-tree
        measurements (``cpu_seconds``, ``peak_rss_bytes``, ``read_bytes``, ``write_bytes``,
        ``gpu_memory_peak_bytes``, ``gpu_utilization_percent``: mean GPU utilization of the tree,
        percent of one GPU). Raises ``KeyError`` when the task is not monitored there."""
        monitor = _monitor or self.worker_monitors.get(worker_id)
        if monitor is None:
            raise KeyError(f"worker {worker_id!r} is not monitored")
        usage = monitor.stop_task_monitoring(task_id, success=success, error=error,
                                             process_usage=_process_fields(process_usage))
        task_type = self._task_types.pop(task_id, None) or usage.task_type
        with self._lock:
            view = self._views.get(worker_id)
            if view is not None:
                view.task_finished(task_id)
            self._inflight_at.pop(task_id, None)
            if task_type is not None:
                self.history.record(worker_id, task_type, success=success, duration_s=usage.duration_s,
                                    cpu_seconds=usage.process_cpu_seconds,
                                    peak_rss_bytes=usage.process_peak_rss_bytes,
                                    gpu_memory_bytes=usage.process_gpu_memory_peak_bytes,
                                    gpu_percent=usage.process_gpu_utilization_percent)
            self._stats["tasks_succeeded" if success else "tasks_failed"] += 1
        return usage

    def _on_task_finished(self, task: Mapping[str, Any], worker_id: str, outcome: Mapping[str, Any]) -> None:
        if worker_id not in self.worker_monitors:
            return  # the worker left; its tasks were closed then
        self.stop_task_monitoring(task["task_id"], worker_id, success=bool(outcome.get("success")),
                                  error=outcome.get("error"), process_usage=outcome)

    # -- scheduling -----------------------------------------------------------------------------
    def _factors(self) -> ScoringFactors:
        cached = self._factors_cache
        if cached is None or cached[0] != self.hardware_scoring_factors:
            cached = (dict(self.hardware_scoring_factors), ScoringFactors.from_mapping(self.hardware_scoring_factors))
            self._factors_cache = cached
        return cached[1]

    def _make_patched(self, original: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
        scheduler = self._patch.scheduler if self._patch else self.coordinator.task_scheduler
        if is_async:
            async def patched_async(task, available_workers, worker_task_count, *args, **kwargs):
                shape = CallerShape(available_workers, worker_task_count)
                original_view = await original_scores_async(scheduler, original, task, shape, worker_task_count,
                                                             self.coordinator.workers)
                return self._choose(task, shape.ids, worker_task_count, original_view)
            return patched_async

        def patched(task, available_workers, worker_task_count, *args, **kwargs):
            shape = CallerShape(available_workers, worker_task_count)
            original_view = original_scores_sync(scheduler, original, task, shape, worker_task_count,
                                                 self.coordinator.workers)
            return self._choose(task, shape.ids, worker_task_count, original_view)
        return patched

    def _hardware_aware_find_best_worker(self, task: Mapping[str, Any], available_workers: Any,
                                         worker_task_count: Mapping[str, int]) -> tuple[str | None, float]:
        """The hardware-aware choice (what the patched scheduler method calls): ``(worker_id,
        adjusted score)``, ``(None, 0.0)`` only when no available worker can take the task.
        Works for a sync scheduler; see :meth:`decide_task` for the full decision."""
        decision = self.decide_task(task, available_workers, worker_task_count)
        return decision.chosen_worker_id, decision.chosen_score or 0.0

    def decide_task(self, task: Mapping[str, Any], available_workers: Any,
                    worker_task_count: Mapping[str, int]) -> SchedulingDecision:
        """Decide (and record) where ``task`` goes, with the explanation. With an async scheduler
        this runs its coroutines to completion, so it must not be called from a running event
        loop (``RuntimeError``; await the patched scheduler method there instead)."""
        scheduler = self.coordinator.task_scheduler
        original = self._patch.original if self._patch else getattr(scheduler, check_contract(self.coordinator)[1])
        shape = CallerShape(available_workers, worker_task_count)
        workers = self.coordinator.workers
        if inspect.iscoroutinefunction(original):
            if _loop_running():
                raise RuntimeError("the scheduler is async: inside an event loop, await "
                                   "coordinator.task_scheduler's patched method instead")
            original_view = asyncio.run(original_scores_async(scheduler, original, task, shape, worker_task_count,
                                                              workers))
        else:
            original_view = original_scores_sync(scheduler, original, task, shape, worker_task_count, workers)
        return self._decide(task, shape.ids, worker_task_count, original_view)

    def _choose(self, task: Mapping[str, Any], ids: list[str], counts: Mapping[str, int],
                original_view: OriginalScores) -> tuple[str | None, float]:
        decision = self._decide(task, ids, counts, original_view)
        return decision.chosen_worker_id, decision.chosen_score or 0.0

    def _decide(self, task: Mapping[str, Any], ids: list[str], counts: Mapping[str, int],
                original_view: OriginalScores) -> SchedulingDecision:
        scores = original_view.scores
        requirements = TaskRequirements.from_task(task)
        factors = self._factors()
        limit = getattr(self.coordinator, "max_tasks_per_worker", None)
        workers = self.coordinator.workers
        now_s = self._clock()
        if limit is not None and 0 < limit and counts and _below(counts.values(), limit):
            limit = None  # no worker is at the limit: skip the check per worker
        with self._lock:
            self._forget_inflight(str(task.get("task_id", "")))  # a task asked about again is not load yet
            cache = self._mismatch_cache.get(requirements)
            if cache is None:
                if len(self._mismatch_cache) >= 256:  # many distinct requirement sets: start over
                    self._mismatch_cache.clear()
                cache = self._mismatch_cache[requirements] = {}

            def check_hardware(worker_id: str) -> Exclusion | None:  # remembered until the worker re-registers
                info = workers.get(worker_id) or {}
                reason = hardware_mismatch(requirements, info.get("capabilities") or {})
                mismatch = cache[worker_id] = None if reason is None else Exclusion(worker_id, reason)
                return mismatch

            task_id = str(task.get("task_id", ""))
            stale_after_s = factors.stale_after_intervals * self.update_interval_seconds
            reserved: list[Exclusion] = []
            if factors.reserve_for_waiting_tasks:
                blocked = self._reservations.blocked(task_id, requirements.needs_gpu, now_s)
                if blocked:
                    reserved = [Exclusion(w, blocked[w]) for w in ids if w in blocked]
                    ids = [w for w in ids if w not in blocked]
            # One pass over the available workers: the task limit, the hardware and the original
            # score are checked in decide_among's loop.
            decision = decide_among(task, requirements, ids, scores, self._views, cache, check_hardware,
                                    factors=factors, history=self.history, now_s=now_s,
                                    stale_after_s=stale_after_s, timestamp=self._wall_clock(), seed=self.seed,
                                    max_recorded=self.max_recorded_candidates, task_counts=counts, task_limit=limit,
                                    extra_exclusions=reserved, original_choice=original_view.choice)
            if factors.reserve_for_waiting_tasks:
                task_type = task.get("type")
                self._reservations.observe(
                    task_id, task_type, decision.chosen_worker_id, decision.exclusions, now_s,
                    after_s=factors.reserve_after_s, expire_s=stale_after_s,
                    preference=lambda w: counts.get(w, 0) if counts else 0,
                    fits=lambda w: self._fits_when_drained(w, task_type, requirements, factors))
            self._account(decision, task, requirements, now_s)
        if self._store is not None:
            self._store.append(DECISIONS_TABLE, decision)
        return decision

    def _fits_when_drained(self, worker_id: str, task_type: str | None, requirements: TaskRequirements,
                           factors: ScoringFactors) -> bool:
        """Could the task run on ``worker_id`` once it has drained? A starving task never
        reserves a worker too small for it."""
        demand = self.history.task_demand(worker_id, task_type) if task_type else NO_DEMAND
        return fits_when_idle(self._views.get(worker_id), demand, requirements, factors)

    def _account(self, decision: SchedulingDecision, task: Mapping[str, Any], requirements: TaskRequirements,
                 now_s: float) -> None:
        self._decisions.append(decision)
        self._stats["decisions"] += 1
        if decision.exclusions:  # thousands at a time in a large fleet; reasons repeat
            for reason, count in collections.Counter(map(_reason_of, decision.exclusions)).items():
                self._exclusions_by_category[exclusion_category(reason)] += count
        chosen = decision.chosen_worker_id
        if chosen is None:
            self._stats["no_worker"] += 1
            return
        if decision.original_worker_id != chosen:
            self._stats["alternatives_chosen"] += 1
        self._tasks_per_worker[chosen] += 1
        task_type = task.get("type")
        self._task_types[decision.task_id] = task_type
        view = self._views.get(chosen)
        if view is not None:
            cores, memory_bytes, gpu_memory_bytes, gpu_percent = task_demand_for(
                view, self.history, chosen, task_type, requirements, self._factors())
            self._inflight_at[decision.task_id] = chosen
            view.add_inflight(InFlight(decision.task_id, now_s, cores, memory_bytes, requirements.needs_gpu,
                                       gpu_memory_bytes, decision.timestamp, gpu_percent))

    def _forget_inflight(self, task_id: str) -> None:
        worker_id = self._inflight_at.pop(task_id, None)
        view = self._views.get(worker_id) if worker_id is not None else None
        if view is not None:
            view.task_finished(task_id)

    # -- statistics and reports -----------------------------------------------------------------
    def scheduler_statistics(self) -> dict[str, Any]:
        """Counts of decisions, alternatives chosen (original choice penalised or excluded), tasks
        with no worker, exclusions by category, tasks per worker, tasks succeeded / failed."""
        with self._lock:
            return {
                "decisions": self._stats["decisions"],
                "alternatives_chosen": self._stats["alternatives_chosen"],
                "no_worker": self._stats["no_worker"],
                "tasks_succeeded": self._stats["tasks_succeeded"],
                "tasks_failed": self._stats["tasks_failed"],
                "exclusions_by_category": dict(self._exclusions_by_category),
                "tasks_per_worker": dict(self._tasks_per_worker),
                "resource_aware": self.enable_resource_aware_scheduling,
            }

    def recent_decisions(self) -> list[SchedulingDecision]:
        with self._lock:
            return list(self._decisions)

    def _worker_snapshot(self) -> dict[str, dict[str, Any]]:
        now_s = self._clock()
        stale_after_s = self._factors().stale_after_intervals * self.update_interval_seconds
        out = {}
        workers = dict(self.coordinator.workers)
        with self._lock:
            ids = sorted(set(workers) | set(self.worker_monitors))
            for worker_id in ids:
                info = workers.get(worker_id, {})
                monitor = self.worker_monitors.get(worker_id)
                latest = monitor.get_current_metrics() if monitor else None
                view = self._views.get(worker_id)
                out[worker_id] = {
                    "status": info.get("status", "unknown"),
                    "capabilities": info.get("capabilities") or {},
                    "current": {"cpu_percent": latest.cpu_percent if latest else None,
                                "memory_percent": latest.memory_percent if latest else None,
                                "gpu_percent": latest.gpu_utilization_percent if latest else None},
                    "simulated_fields": list(latest.simulated_fields) if latest else [],
                    "excluded_reason": view.excluded_reason if view else None,
                    "stale": view.stale_reason(now_s, stale_after_s) if view else None,
                    "overloaded": bool(latest and any(
                        v is not None and v > self.utilization_threshold
                        for v in (latest.cpu_percent, latest.memory_percent, latest.gpu_utilization_percent))),
                }
        return out

    def generate_resource_report(self) -> dict[str, Any]:
        """Everything the HTML report shows, as JSON-ready data."""
        from fleet_hwmon.reports.fleet_report import build_report_data

        if self._store is None:
            raise RuntimeError("initialize() the integration before asking for a report")
        return build_report_data(self._store, workers=self._worker_snapshot(),
                                 scheduler_stats=self.scheduler_statistics(),
                                 scoring_factors=dict(self.hardware_scoring_factors),
                                 history=self.history.snapshot())

    def generate_html_report(self, path: str) -> Path:
        """Write the self-contained HTML report to ``path``; returns the path."""
        from fleet_hwmon.reports.fleet_report import render_fleet_report

        return render_fleet_report(self.generate_resource_report(), path)

    def export_json(self, path: str) -> Path:
        """Write the report's content as strict JSON to ``path``; returns the path."""
        from fleet_hwmon.reports.fleet_report import export_report_json

        return export_report_json(self.generate_resource_report(), path)


_PROCESS_FIELDS = {"cpu_seconds": "process_cpu_seconds", "peak_rss_bytes": "process_peak_rss_bytes",
                   "read_bytes": "process_read_bytes", "write_bytes": "process_write_bytes",
                   "gpu_memory_peak_bytes": "process_gpu_memory_peak_bytes",
                   "gpu_utilization_percent": "process_gpu_utilization_percent"}


def _below(counts: Any, limit: Any) -> bool:
    """Every count is below ``limit`` (False when they do not compare as numbers)."""
    try:
        return max(counts) < limit
    except (TypeError, ValueError):
        return False


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _process_fields(process_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """The known process measurements as ``TaskResourceUsage`` fields. A value that is not a
    finite, non-negative number is left out (unknown) with a warning, never learnt from."""
    if not process_usage:
        return {}
    out = {}
    for source, target in _PROCESS_FIELDS.items():
        value = process_usage.get(source)
        if value is None:
            continue
        number = finite(value)
        if number is None or number < 0:
            log.warning("process usage %s=%r is not a finite non-negative number; treated as unknown", source, value)
            continue
        out[target] = value if isinstance(value, int) else number
    return out
