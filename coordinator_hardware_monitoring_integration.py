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

import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from fleet_hwmon.alerts import parse_thresholds
from fleet_hwmon.clock_offset import ClockOffsets
from fleet_hwmon.clocks import WallClockStepDetector
from fleet_hwmon.durations import MAX_INTERVAL_S, checked_seconds
from fleet_hwmon.metrics.snapshot import FleetSnapshot, fleet_snapshot
from fleet_hwmon.metrics.tally import TaskTally
from fleet_hwmon.compat import earlier_export_keys, earlier_view, narrowed
from fleet_hwmon.logutil import RateLimitedLogger
from fleet_hwmon.printable import printable
from fleet_hwmon.sample import ResourceUtilization, finite, utc_now
from fleet_hwmon.scheduling.heartbeats import HEARTBEAT_METRICS_KEY, UTILIZATION_KEY, HeartbeatReader
from fleet_hwmon.scheduling.periodic import PeriodicThread
from fleet_hwmon.scheduling import CoordinatorContractError, HardwareAwareScheduler, check_contract
from fleet_hwmon.scoring.decide import SchedulingDecision
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.tasks import TaskOutcome
from hardware_utilization_monitor import HardwareUtilizationMonitor, MonitoringLevel, TaskResourceUsage

__all__ = ["CoordinatorContractError", "CoordinatorHardwareMonitoringIntegration"]

log = logging.getLogger("fleet_hwmon.integration")

DECISIONS_TABLE = "scheduling_decisions"
OUTCOMES_TABLE = "task_outcomes"


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
        heartbeat_metrics_key: the key of a worker dict under which the worker's own heartbeat
            metrics arrive (``cpu_percent``, ``memory_percent``, ``gpu_percent``,
            ``disk_percent``, ``updated``); each update interval a newer one becomes a sample of
            that worker, as if pushed through :meth:`update_worker_utilization`. ``None``: not read.
        worker_monitors: monitors already made for some workers (worker id -> monitor), used
            instead of new ones; they are started at :meth:`initialize` and stopped at
            :meth:`shutdown` like the others.
        hardware_detector: the ``HardwareCapabilityDetector`` that detects a local worker's
            capabilities (default: one per worker).
        write_back_utilization: after each such pass, write the scheduler's smoothed view of each
            worker into its dict under ``"hardware_utilization"`` (the worker's own figures are
            never touched).
        clock: monotonic seconds for intervals (staleness, hysteresis, in-flight tasks).
        wall_clock: the current UTC time (timezone-aware ``datetime``) used to date decisions,
            task starts and ends (handed to every worker's monitor) and assignments; samples
            are compared with it by their own timestamps. A simulation passes its own.
        worker_history_s: seconds of samples each worker's monitor keeps in memory (default ten
            minutes; older samples are in the database), so a fleet of push-only workers holds
            bounded memory however long it runs.
        accept_unknown_workers: take samples of worker ids the coordinator has not registered
            (a monitor is started for them); by default such a sample is refused (``ValueError``),
            so a typo in a worker id cannot grow a phantom worker.

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
                 heartbeat_metrics_key: str | None = HEARTBEAT_METRICS_KEY, write_back_utilization: bool = False,
                 worker_monitors: Mapping[str, HardwareUtilizationMonitor] | None = None,
                 hardware_detector: Any = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = utc_now, accept_unknown_workers: bool = False,
                 worker_history_s: float = 600.0) -> None:
        update_interval_seconds = checked_seconds("update_interval_seconds", update_interval_seconds, MAX_INTERVAL_S)
        self.coordinator = coordinator
        self.monitoring_level = MonitoringLevel.parse(monitoring_level)
        self.enable_resource_aware_scheduling = enable_resource_aware_scheduling
        self.utilization_threshold = float(utilization_threshold)
        self.update_interval_seconds = float(update_interval_seconds)
        self.hardware_scoring_factors: dict[str, float] = ScoringFactors.from_mapping(
            hardware_scoring_factors).as_dict()
        self._alert_thresholds = alert_thresholds
        parse_thresholds(alert_thresholds)  # a bad one is a clear ValueError now, not at the first worker
        self.seed = seed
        self.detect_capabilities = detect_capabilities
        self.max_recorded_candidates = max_recorded_candidates
        self._clock = clock
        self._wall_clock = wall_clock
        self.accept_unknown_workers = accept_unknown_workers
        self.worker_history_s = worker_history_s
        self._temp_dir: str | None = None
        if db_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="hwmon-")
            db_path = str(Path(self._temp_dir) / "hardware_metrics.duckdb")
        self.db_path = db_path
        self.worker_monitors: dict[str, HardwareUtilizationMonitor] = dict(worker_monitors or {})
        self.hardware_detector = hardware_detector
        self.scheduler = HardwareAwareScheduler(
            coordinator, self.hardware_scoring_factors, update_interval_s=self.update_interval_seconds, seed=seed,
            clock=clock, wall_clock=wall_clock, record=self._store_decision,
            max_recorded_candidates=max_recorded_candidates)
        self.history = self.scheduler.history
        self._offsets = ClockOffsets()
        self._clock_steps = WallClockStepDetector("coordinator")  # one for every reader of these clocks
        self._lock = threading.RLock()
        self._task_tally = TaskTally()  # tasks by type and status, durations: for the metrics endpoint
        self._metrics_server = None
        self._store = None
        self._active = False
        self._hooked = False  # the coordinator callbacks are registered (see _hook_events)
        self._initialized = False
        self._heartbeats = HeartbeatReader(heartbeat_metrics_key) if heartbeat_metrics_key else None
        self.write_back_utilization = write_back_utilization
        self._heartbeat_thread: PeriodicThread | None = None
        self._heartbeat_lock = threading.Lock()
        self._capabilities_seen: dict[str, str] = {}  # worker -> its capabilities as last checked (repr)
        self._log = RateLimitedLogger(log)

    @property
    def alert_thresholds(self) -> dict[str, dict[str, float]]:
        """Alert thresholds of every worker's monitor, ``{resource: {"warning": percent,
        "critical": percent}}``. Assigning any form ``parse_thresholds`` takes (a number, a pair,
        a dict, ``<resource>_percent`` keys, numeric strings) applies to every monitor from its
        next sample on; ``ValueError`` naming the key for a bad one (nothing changes then)."""
        return {r: {"warning": t.warning_percent, "critical": t.critical_percent}
                for r, t in parse_thresholds(self._alert_thresholds).items()}

    @alert_thresholds.setter
    def alert_thresholds(self, overrides: Mapping[str, Any] | None) -> None:
        parse_thresholds(overrides)
        with self._lock:
            self._alert_thresholds = overrides
            monitors = list(self.worker_monitors.values())
        for monitor in monitors:
            monitor.alert_thresholds = overrides

    # -- life cycle -----------------------------------------------------------------------------
    def initialize(self) -> CoordinatorHardwareMonitoringIntegration:
        """Check the contract, open the database, monitor every worker, hook the coordinator's
        events and patch its scheduler. Idempotent; returns ``self``."""
        if self._initialized:
            return self
        check_contract(self.coordinator)
        self._store = open_store(self.db_path)
        try:
            self._store.ensure_table(DECISIONS_TABLE, SchedulingDecision)
            self._active = True
            for monitor in self.worker_monitors.values():  # monitors given to the constructor
                monitor.add_sample_listener(self._observe)
                monitor.start_monitoring()
            for worker_id, info in list(self.coordinator.workers.items()):
                self._on_worker_registered(worker_id, info)
            self._hook_events()
            if self.enable_resource_aware_scheduling:
                self.scheduler.install()
            self._initialized = True
        except BaseException:  # half started: undone, so nothing is left running or open
            self._initialized = True
            self.shutdown()
            raise
        if self._heartbeats is not None or self.write_back_utilization:
            self.ingest_heartbeats()  # the first decision already sees what the workers reported
            self._heartbeat_thread = PeriodicThread(max(self.update_interval_seconds, 0.05), self.ingest_heartbeats,
                                                    name="hwmon-heartbeats")
        return self

    def shutdown(self) -> None:
        """Restore the scheduler, stop every monitor, flush and close the database. Safe twice."""
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        if not self._initialized:
            return
        self._active = False
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.stop()
            self._heartbeat_thread = None
        self.scheduler.uninstall()
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
        """Register the coordinator callbacks, once: they stay registered after :meth:`shutdown`
        (the contract has no way to remove them) and serve the next :meth:`initialize` again."""
        if self._hooked:
            return
        self._hooked = True
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
        self._capabilities_seen[worker_id] = repr(info.get("capabilities"))
        self.scheduler.worker_registered(worker_id, info.get("capabilities"))
        self._monitor_for(worker_id, local=bool(info.get("local")))

    def _check_capabilities(self, workers: Mapping[str, Any]) -> None:
        """A worker whose record now states other hardware (a coordinator replaced or changed it
        without telling us: it rebooted without its GPU, say) has its hardware checked again."""
        for worker_id, info in list(workers.items()):
            seen = self._capabilities_seen.get(worker_id)
            now = repr(info.get("capabilities")) if isinstance(info, Mapping) else None
            if seen is not None and now is not None and now != seen:
                self._capabilities_seen[worker_id] = now
                log.info("worker %s states other hardware now; checked again at the next decision",
                         printable(str(worker_id)))
                self.scheduler.capabilities_changed(worker_id)

    def _describe_worker(self, worker_id: str, info: Mapping[str, Any]) -> None:
        """Store the worker's detected capabilities; detect them when a local worker has none."""
        detected = info.get("hardware_capabilities")
        if detected is None and not info.get("capabilities") and info.get("local") and self.detect_capabilities:
            from hardware_capability_detector import HardwareCapabilityDetector

            detector = self.hardware_detector or HardwareCapabilityDetector(worker_id=worker_id)
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
                    self.update_interval_seconds if local else None, self._alert_thresholds,
                    push_only=not local, wall_clock=self._wall_clock, clock=self._clock,
                    clock_steps=self._clock_steps, history_s=self.worker_history_s)
                monitor.add_sample_listener(self._observe)
                self.worker_monitors[worker_id] = monitor
                monitor.start_monitoring()
            return monitor

    def _observe(self, sample: ResourceUtilization) -> None:
        # The scheduler compares the sample's time with the coordinator's; under a millisecond off
        # (a worker on time, a simulation) it is not worth a copy of the sample.
        if sample.clock_offset_s is not None and abs(sample.clock_offset_s) >= 0.001:
            sample = sample.evolve(timestamp=sample.timestamp - timedelta(seconds=sample.clock_offset_s))
        self.scheduler.observe(sample)

    def _on_worker_deregistered(self, worker_id: str, info: Mapping[str, Any] | None = None) -> None:
        """Stop the worker's monitoring; its running tasks end as failed in the records (the
        reference coordinator requeues them and they start again elsewhere)."""
        with self._lock:
            monitor = self.worker_monitors.pop(worker_id, None)
        self._capabilities_seen.pop(worker_id, None)
        self.scheduler.worker_left(worker_id)
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

        Values out of their field's domain are repaired on the way in (``None``, counted in the
        monitor's ``invalid_values``; see ``fleet_hwmon.domains``). Raises ``ValueError`` for a
        malformed sample (unknown keys, with the closest known field; values of the wrong type),
        one that names another worker, or one of a worker the coordinator has not registered
        (unless ``accept_unknown_workers``).
        """
        built = isinstance(utilization, Mapping)
        if built:
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
        if (not self.accept_unknown_workers and worker_id not in self.worker_monitors
                and worker_id not in self.coordinator.workers):
            raise ValueError(f"sample of unregistered worker {worker_id!r} refused: register the worker with "
                             f"the coordinator first, or pass accept_unknown_workers=True")
        # Coordinator time for everything that compares times (the views, task windows, in-flight
        # accounting); the stored sample keeps the worker's own timestamp beside the offset.
        mapped = self._offsets.observe(worker_id, sample.timestamp, self._wall_clock(), self._clock())
        if built:  # built here and seen by no one yet: set in place rather than copied
            object.__setattr__(sample, "monotonic_s", mapped.monotonic_s)
            object.__setattr__(sample, "clock_offset_s", mapped.offset_s)
        else:  # the caller's record stays as it was
            sample = sample.evolve(monotonic_s=mapped.monotonic_s, clock_offset_s=mapped.offset_s)
        self._monitor_for(worker_id).record_sample(sample)  # -> database, alerts, tasks, view

    def get_worker_utilization(self, worker_id: str | None = None) -> Any:
        """The latest sample of ``worker_id`` (``None`` if it has none), or of every worker as a
        dict. Each sample reads as the :class:`ResourceUtilization` it is (``.cpu_percent``,
        ``.sample``) and as the earlier modules' dict (``["cpu_percent"]``, ``["gpu_utilization"]``;
        see :class:`fleet_hwmon.compat.EarlierSample`)."""
        if worker_id is not None:
            monitor = self.worker_monitors.get(worker_id)
            return earlier_view(monitor.get_current_metrics()) if monitor else None
        return {w: earlier_view(m.get_current_metrics()) for w, m in self.worker_monitors.items()}

    def ingest_heartbeats(self) -> int:
        """Turn each worker's newer heartbeat metrics (see ``heartbeat_metrics_key``) into a
        sample through :meth:`update_worker_utilization`; called each update interval by a
        thread started at :meth:`initialize`. Workers the coordinator gained without telling
        us (it has no ``register_worker_callback``) are registered first. A malformed heartbeat
        is logged (once per worker and fault, rate-limited) and skipped. Returns the number of
        samples taken."""
        taken = 0
        with self._heartbeat_lock:
            if not self._initialized:
                return 0
            workers = self.coordinator.workers
            self._check_capabilities(workers)
            if not callable(getattr(self.coordinator, "register_worker_callback", None)):
                for worker_id in [w for w in list(workers) if w not in self.worker_monitors]:
                    info = workers.get(worker_id)
                    if info is not None:
                        self._on_worker_registered(worker_id, info)
            if self._heartbeats is not None:
                for worker_id, data in self._heartbeats.new_samples(workers, self._wall_clock()):
                    try:
                        self.update_worker_utilization(worker_id, data)
                        taken += 1
                    except ValueError as err:
                        self._log.log(f"heartbeat:{worker_id}:{err}", logging.WARNING,
                                      "heartbeat metrics of worker %s skipped: %s", worker_id, err)
            if self.write_back_utilization:
                for worker_id, view in self.scheduler.smoothed_views().items():
                    info = workers.get(worker_id)
                    if isinstance(info, dict):  # a new dict each time: readers see the old or the new one
                        info[UTILIZATION_KEY] = view
        return taken

    # -- tasks ----------------------------------------------------------------------------------
    def start_task_monitoring(self, task_id: str, worker_id: str, task_type: str | None = None) -> None:
        """Attribute ``worker_id``'s samples to ``task_id`` from now on. Raises ``KeyError`` for
        an unknown worker."""
        monitor = self.worker_monitors.get(worker_id)
        if monitor is None:
            raise KeyError(f"worker {worker_id!r} is not monitored")
        task_type = task_type if task_type is not None else self.scheduler.task_type_of(task_id)
        self.scheduler.task_started(task_id, task_type, worker_id)
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
        self.scheduler.task_finished(task_id, worker_id, success=success, task_type=usage.task_type,
                                     duration_s=usage.duration_s, cpu_seconds=usage.process_cpu_seconds,
                                     peak_rss_bytes=usage.process_peak_rss_bytes,
                                     gpu_memory_bytes=usage.process_gpu_memory_peak_bytes,
                                     gpu_percent=usage.process_gpu_utilization_percent, error=error)
        with self._lock:
            self._task_tally.observe(usage.task_type, success, usage.duration_s)
        return usage

    def _on_task_finished(self, task: Mapping[str, Any], worker_id: str, outcome: Mapping[str, Any]) -> None:
        if worker_id not in self.worker_monitors:
            return  # the worker left; its tasks were closed then
        self.stop_task_monitoring(task["task_id"], worker_id, success=bool(outcome.get("success")),
                                  error=outcome.get("error"), process_usage=outcome)

    # -- scheduling -----------------------------------------------------------------------------
    def _hardware_aware_find_best_worker(self, task: Mapping[str, Any], available_workers: Any,
                                         worker_task_count: Mapping[str, int]) -> tuple[str | None, float]:
        """The hardware-aware choice (what the patched scheduler method calls): ``(worker_id,
        adjusted score)``, ``(None, 0.0)`` only when no available worker can take the task.
        Works for a sync scheduler; see :meth:`decide_task` for the full decision."""
        decision = self.decide_task(task, available_workers, worker_task_count)
        return decision.chosen_worker_id, decision.chosen_score or 0.0

    def decide_task(self, task: Mapping[str, Any], available_workers: Any,
                    worker_task_count: Mapping[str, int]) -> SchedulingDecision:
        """Decide (and record) where ``task`` goes, with the explanation (see
        :meth:`HardwareAwareScheduler.decide_task`)."""
        return self.scheduler.decide_task(task, available_workers, worker_task_count)

    def _store_decision(self, decision: SchedulingDecision) -> None:
        if self._store is not None:
            self._store.append(DECISIONS_TABLE, decision)

    # -- statistics and reports -----------------------------------------------------------------
    def scheduler_statistics(self) -> dict[str, Any]:
        """Plain data: decisions by outcome (original choice kept, alternative, no worker),
        exclusions by kind, decision latency, tasks per worker, tasks succeeded / failed (see
        :meth:`fleet_hwmon.scheduling.SchedulerStatistics.as_dict`)."""
        return self.scheduler.statistics(self.enable_resource_aware_scheduling)

    def record_task_outcomes(self, outcomes: Iterable[TaskOutcome]) -> int:
        """Store how each task of a run ended (table ``task_outcomes``), so the report covers the
        tasks that never started or were cancelled too. A task that never started without a
        reason gets the explanation of its last decision that found no worker. Returns the
        number of rows written (flushed on return). Raises ``RuntimeError`` before
        :meth:`initialize`."""
        if self._store is None:
            raise RuntimeError("initialize() the integration before recording task outcomes")
        last_refusal = {d.task_id: d.explanation for d in self.recent_decisions() if d.chosen_worker_id is None}
        rows = [o if o.reason or o.state != "queued" else dataclasses.replace(o, reason=last_refusal.get(o.task_id))
                for o in outcomes]
        self._store.ensure_table(OUTCOMES_TABLE, TaskOutcome)
        self._store.append_many(OUTCOMES_TABLE, rows)
        self._store.flush()
        return len(rows)

    def metrics_snapshot(self) -> FleetSnapshot:
        """The fleet as a Prometheus scrape reads it: every worker's latest sample, firing alerts,
        staleness and critical-load exclusion, the scheduler's statistics, finished tasks, the
        store's counters. References are copied under the locks; the snapshot is built outside."""
        with self._lock:
            monitors = dict(self.worker_monitors)
            tasks = self._task_tally.copy()
        verdicts = {}
        for worker_id in monitors:
            state = self.scheduler.worker_state(worker_id)
            # before its first sample no verdict is known: absent, not "not stale"
            verdicts[worker_id] = (state["stale"] is not None if state["sampled"] else None,
                                   state["excluded_reason"] is not None)
        return fleet_snapshot(monitors, verdicts=verdicts, store=self._store, scheduler=self.scheduler_statistics(),
                              tasks=tasks, taken_at=self._wall_clock())

    def start_metrics_server(self, port: int, addr: str = "127.0.0.1", *, registry: Any = None) -> Any:
        """Serve :meth:`metrics_snapshot` for Prometheus at ``http://addr:port/metrics`` until
        :meth:`shutdown` (port 0: one the system picks; the returned server's ``port`` says
        which). ``registry``: a ``prometheus_client.CollectorRegistry`` (default: a new one).
        Needs the ``metrics`` extra; raises ``ImportError`` without it, ``OSError`` when the port
        is taken, ``RuntimeError`` when a server already runs."""
        from fleet_hwmon.metrics import start_metrics_server

        if self._metrics_server is not None:
            raise RuntimeError(f"a metrics server already runs at {self._metrics_server.url}")
        self._metrics_server = start_metrics_server(self.metrics_snapshot, port, addr, registry=registry)
        return self._metrics_server

    def recent_decisions(self) -> list[SchedulingDecision]:
        return self.scheduler.recent_decisions()

    def held_decision(self, task_id: str) -> SchedulingDecision | None:
        """Why a task is still waiting: its latest decision while no worker has taken it (``None``:
        placed, or never decided); each exclusion names a worker and why it passed the task over."""
        return self.scheduler.held_decision(task_id)

    def _worker_snapshot(self) -> dict[str, dict[str, Any]]:
        out = {}
        workers = dict(self.coordinator.workers)
        with self._lock:
            ids = sorted(set(workers) | set(self.worker_monitors))
            for worker_id in ids:
                info = workers.get(worker_id, {})
                monitor = self.worker_monitors.get(worker_id)
                latest = monitor.get_current_metrics() if monitor else None
                state = self.scheduler.worker_state(worker_id)
                out[worker_id] = {
                    "status": info.get("status", "unknown"),
                    "capabilities": info.get("capabilities") or {},
                    "current": {"cpu_percent": latest.cpu_percent if latest else None,
                                "memory_percent": latest.memory_percent if latest else None,
                                "gpu_percent": latest.gpu_utilization_percent if latest else None},
                    "simulated_fields": list(latest.simulated_fields) if latest else [],
                    **state,
                    "clock_offset_s": self._offsets.offset_s(worker_id),
                    "overloaded": bool(latest and any(
                        v is not None and v > self.utilization_threshold
                        for v in (latest.cpu_percent, latest.memory_percent, latest.gpu_utilization_percent))),
                }
        return out

    def generate_resource_report(self, worker_id: str | None = None, task_id: str | None = None) -> dict[str, Any]:
        """Everything the HTML report shows, as JSON-ready data; with ``worker_id`` / ``task_id``
        only that worker's and task's rows (see :func:`fleet_hwmon.compat.narrowed`)."""
        return narrowed(self._report_data(), worker_id, task_id)

    def _report_data(self) -> dict[str, Any]:
        from fleet_hwmon.reports.fleet_report import build_report_data

        if self._store is None:
            raise RuntimeError("initialize() the integration before asking for a report")
        return build_report_data(self._store, workers=self._worker_snapshot(),
                                 scheduler_stats=self.scheduler_statistics(),
                                 scoring_factors=dict(self.hardware_scoring_factors),
                                 history=self.history.snapshot())

    def generate_html_report(self, path: str, worker_id: str | None = None, task_id: str | None = None) -> Path:
        """Write the self-contained HTML report to ``path`` (narrowed as
        :meth:`generate_resource_report`); returns the path."""
        from fleet_hwmon.reports.fleet_report import render_fleet_report

        return render_fleet_report(self.generate_resource_report(worker_id, task_id), path)

    def export_json(self, path: str) -> Path:
        """Write the report's content as strict JSON to ``path``, with the earlier modules' keys
        ``timestamp``, ``worker_tasks`` and ``task_details`` beside it (see
        :func:`fleet_hwmon.compat.earlier_export_keys`); returns the path."""
        from fleet_hwmon.reports.fleet_report import export_report_json

        data = self.generate_resource_report()
        return export_report_json({**data, **earlier_export_keys(data)}, path)


_PROCESS_FIELDS = {"cpu_seconds": "process_cpu_seconds", "peak_rss_bytes": "process_peak_rss_bytes",
                   "read_bytes": "process_read_bytes", "write_bytes": "process_write_bytes",
                   "gpu_memory_peak_bytes": "process_gpu_memory_peak_bytes",
                   "gpu_utilization_percent": "process_gpu_utilization_percent"}


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
