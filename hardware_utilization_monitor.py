"""Hardware utilization monitor of one worker: real samples into DuckDB, alerts, per-task usage.

Example::

    from hardware_utilization_monitor import HardwareUtilizationMonitor, MonitoringLevel

    with HardwareUtilizationMonitor("worker-1", db_path="metrics.duckdb",
                                    monitoring_level=MonitoringLevel.STANDARD) as monitor:
        monitor.start_task_monitoring("test-42")
        ...  # run the task
        usage = monitor.stop_task_monitoring("test-42", success=True)
        print(usage.peak_cpu_percent, usage.duration_s)

Threads: one sampling thread (short, never waits on I/O; none for a push-only monitor), the
store's writer thread (owns the DuckDB connection, batched appends) and an alert-callback
thread, started only once a callback is registered (a fleet of push-only monitors without
callbacks runs no idle threads). ``stop_monitoring`` (also called by ``with`` and at
interpreter exit) stops sampling, flushes and joins them all.

Command line: ``python hardware_utilization_monitor.py --duration 10 --level standard
--db-path metrics.duckdb --export-json metrics.json --html-report report.html``; add
``--metrics-port PORT`` to serve Prometheus metrics at ``http://127.0.0.1:PORT/metrics`` while
it samples (the ``metrics`` extra).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import socket
import sys
import threading
import time
import weakref
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from fleet_hwmon import lifecycle
from fleet_hwmon.alerts import (
    AlertResource,
    AlertSeverity,
    AlertState,
    AlertTracker,
    CallbackDispatcher,
    HardwareAlert,
    StateAlerts,
    parse_thresholds,
)
from fleet_hwmon.clocks import WallClockStepDetector
from fleet_hwmon.compat import EarlierMonitorNames
from fleet_hwmon.domains import valid_text
from fleet_hwmon.durations import MAX_DURATION_S, MAX_INTERVAL_S, checked_seconds, seconds_argument
from fleet_hwmon.levels import MonitoringLevel
from fleet_hwmon.logutil import RateLimitedLogger
from fleet_hwmon.metrics import port_argument
from fleet_hwmon.printable import printable
from fleet_hwmon.reports.jsonio import unwritable_option, write_json
from fleet_hwmon.sample import ResourceUtilization, as_utc, utc_now
from fleet_hwmon.sample_history import SampleHistory
from fleet_hwmon.sampling.host import MetricSource
from fleet_hwmon.sampling.sampler import Sampler, build_host_sources
# The writer, DuckDB and pyarrow are imported when a database is opened, not before: a monitor
# without one never loads them.
from fleet_hwmon.store import StoreError
from fleet_hwmon.tasks import TaskAccumulator, TaskResourceUsage

if TYPE_CHECKING:
    from fleet_hwmon.store import MetricsStore

__all__ = ["HardwareAlert", "HardwareUtilizationMonitor", "MonitoringLevel", "ResourceUtilization",
           "TaskResourceUsage", "AlertResource", "AlertSeverity", "AlertState"]

log = logging.getLogger("fleet_hwmon.monitor")

SAMPLES_TABLE = "resource_utilization"
TASKS_TABLE = "task_resource_usage"
ALERTS_TABLE = "hardware_alerts"


class HardwareUtilizationMonitor(EarlierMonitorNames):
    """Samples one worker at a fixed interval and keeps, stores and alerts on the samples.

    Args:
        worker_id: name of the worker (default: the host name).
        db_path: DuckDB file for samples, tasks and alerts; ``None`` keeps everything in memory.
        monitoring_level: a :class:`MonitoringLevel` or its name; sets the default interval and
            which metric groups are read.
        interval_seconds: sampling interval; overrides the level's default. Must be > 0.
        alert_thresholds: overrides of the default thresholds (percent), e.g.
            ``{"cpu": {"warning": 80, "critical": 90}}`` (see ``fleet_hwmon.alerts.parse_thresholds``).
        history_size: samples kept in memory (a ring buffer; older ones stay in the database).
        history_s: also drop from memory samples more than this many seconds older than the
            newest (``None``: only ``history_size`` bounds it). The database is the history.
        sources: metric sources replacing the host's (tests feed exact inputs this way).
        nvml: the NVML gateway (default: the process-wide one); ``enable_gpu=False`` skips GPUs.
        flush_interval_s: how often the writer flushes to disk (at most this much is lost on a
            hard kill).
        push_only: do not sample this host; samples arrive through :meth:`record_sample` (a
            remote worker's monitor on the coordinator never pretends to measure it).
        wall_clock: the current UTC time (timezone-aware ``datetime``) that dates samples, task
            starts and ends. A simulation passes its own, with ``clock``.
        clock: monotonic seconds read beside every wall-clock reading: task durations, sample
            membership and intervals come from it, so a wall-clock step changes none of them.
        clock_steps: the detector that logs a step of these clocks once (default: the monitor's
            own); monitors reading the same clocks share one.

    Raises:
        ValueError: bad level, interval or thresholds.
        fleet_hwmon.store.StoreLockedError: ``db_path`` is held by another process.
    """

    def __init__(self, worker_id: str | None = None, db_path: str | None = None,
                 monitoring_level: MonitoringLevel | str = MonitoringLevel.STANDARD,
                 interval_seconds: float | None = None,
                 alert_thresholds: Mapping[str, Any] | None = None, *,
                 history_size: int = 3600, history_s: float | None = None,
                 sources: Sequence[MetricSource] | None = None,
                 nvml: Any = None, enable_gpu: bool = True, flush_interval_s: float = 1.0,
                 alert_margin_percent: float = 5.0, disk_path: str = "/", push_only: bool = False,
                 wall_clock: Callable[[], datetime] = utc_now,
                 clock: Callable[[], float] = time.monotonic,
                 clock_steps: WallClockStepDetector | None = None) -> None:
        # As its samples store it: undecodable bytes (lone surrogates) become U+FFFD (fleet_hwmon.domains).
        self.worker_id = valid_text(worker_id or socket.gethostname())
        self.monitoring_level = MonitoringLevel.parse(monitoring_level)
        interval = self.monitoring_level.default_interval_s if interval_seconds is None else interval_seconds
        self.interval_seconds = checked_seconds("interval_seconds", interval, MAX_INTERVAL_S)
        self.db_path = db_path
        self._tracker = AlertTracker(parse_thresholds(alert_thresholds), alert_margin_percent)
        self._state_alerts = StateAlerts()
        self._nvml = None
        self.push_only = push_only
        self._wall_clock = wall_clock
        self._clock = clock
        if push_only:
            sources = []
        if sources is None:
            if enable_gpu and "gpu" in self.monitoring_level.metric_groups:
                if nvml is None:
                    from fleet_hwmon.sampling.nvml import get_gateway
                    nvml = get_gateway()
                self._nvml = nvml
            sources = build_host_sources(self.monitoring_level, nvml=self._nvml, disk_path=disk_path)
        self._clock_steps = clock_steps or WallClockStepDetector(f"worker {self.worker_id}")
        self._sampler = Sampler(self.worker_id, sources, clock=clock, wall_clock=wall_clock,
                                clock_steps=self._clock_steps)
        if history_s is not None and history_s <= 0:
            raise ValueError(f"history_s must be positive, got {history_s!r}")
        self._history = SampleHistory(history_size, history_s)  # columns: a fleet's minutes fit in memory
        self._latest: ResourceUtilization | None = None
        self._sample_count = 0
        self._invalid_values: collections.Counter[str] = collections.Counter()
        self._alerts: collections.deque[HardwareAlert] = collections.deque(maxlen=10_000)
        self._active_tasks: dict[str, TaskAccumulator] = {}
        self._finished_tasks: collections.OrderedDict[str, TaskResourceUsage] = collections.OrderedDict()
        self._state_lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._dispatcher: CallbackDispatcher | None = None  # started with the first callback
        self._dispatcher_lock = threading.Lock()
        self._store: MetricsStore | None = None
        self._flush_interval_s = flush_interval_s
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._callbacks: list[Callable[[HardwareAlert], Any]] = []
        self._log = RateLimitedLogger(log)
        self._late_ticks = 0
        self._sample_listeners: list[Callable[[ResourceUtilization], Any]] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def start_monitoring(self) -> HardwareUtilizationMonitor:
        """Open the database, start the sampling thread. Idempotent; returns ``self``."""
        if self in _RUNNING:
            return self
        self._open_store()
        if self._callbacks:
            self._start_dispatcher()
        if self._nvml is not None and not self._nvml.available:
            log.info("worker %s: GPU monitoring off: %s", self.worker_id, self._nvml.reason)
        self._stop_event.clear()
        if not self.push_only:
            self._thread = threading.Thread(target=self._run, name=f"sampler:{self.worker_id}", daemon=True)
            self._thread.start()
        _RUNNING.add(self)
        return self

    def _open_store(self) -> None:
        if self.db_path is not None and self._store is None:
            from fleet_hwmon.store import open_store
            self._store = open_store(self.db_path, flush_interval_s=self._flush_interval_s)
            self._store.ensure_table(SAMPLES_TABLE, ResourceUtilization)
            self._store.ensure_table(TASKS_TABLE, TaskResourceUsage)
            self._store.ensure_table(ALERTS_TABLE, HardwareAlert)

    def stop_monitoring(self) -> None:
        """Stop sampling, deliver pending alerts, flush and close the database. Idempotent."""
        self._stop_sampling()
        with self._dispatcher_lock:
            dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.stop()
        if self._store is not None:
            from fleet_hwmon.store import close_store
            store, self._store = self._store, None
            close_store(store)
        _RUNNING.discard(self)

    def _stop_sampling(self) -> None:
        """Stop the sampling thread only (the database stays open for a final export)."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, 2 * self.interval_seconds))
            self._thread = None

    def __enter__(self) -> HardwareUtilizationMonitor:
        return self.start_monitoring()

    def __exit__(self, *exc: object) -> None:
        self.stop_monitoring()

    @property
    def is_running(self) -> bool:
        """Started and not stopped; for a sampling monitor, its sampling thread is alive too."""
        return self in _RUNNING and (self.push_only or (self._thread is not None and self._thread.is_alive()))

    # -- sampling -----------------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self.sample_now()
            except Exception as err:  # the loop outlives any fault of one tick
                self._log.log(f"tick:{type(err).__name__}", logging.ERROR,
                              "sampling %s failed: %s: %s", self.worker_id, type(err).__name__, err)
            next_tick += self.interval_seconds
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind (suspended host): skip missed ticks, do not burst
                self._late_ticks += 1
                next_tick = time.monotonic() + self.interval_seconds
                delay = self.interval_seconds
            # A tick that ran late leaves little time to the next one; two reads a few ms apart
            # would give a window too short for CPU deltas (read as unknown), so keep half an
            # interval between them. The schedule is kept: the next delays catch up.
            self._stop_event.wait(max(delay, self.interval_seconds / 2))

    def _task_ids(self) -> tuple[str, ...]:
        with self._state_lock:
            return tuple(self._active_tasks)

    def sample_now(self) -> ResourceUtilization:
        """Take one sample right away (on the calling thread) and record it."""
        with self._sample_lock:  # taken and recorded together, so history stays in time order
            sample = self._sampler.sample(self._task_ids())
            self.record_sample(sample)
        return sample

    def record_sample(self, sample: ResourceUtilization) -> list[HardwareAlert]:
        """Put one sample down the monitor's path: latest view, history, task usage, alerts,
        database. Used by the sampling thread and for samples measured elsewhere (a remote
        worker's, or the demo's per-worker measurements). Never blocks on I/O.

        Returns the alert events the sample caused.
        """
        with self._state_lock:
            self._latest = sample
            self._history.append(sample)
            self._sample_count += 1
            if sample.invalid_fields:  # values replaced on construction (fleet_hwmon.domains)
                self._invalid_values.update(sample.invalid_fields)
            for accumulator in self._active_tasks.values():
                accumulator.add(sample)
            events = self._tracker.evaluate(sample) + self._state_alerts.evaluate(sample)
            self._alerts.extend(events)
        if self._store is not None:
            self._store.append(SAMPLES_TABLE, sample)
            for event in events:
                self._store.append(ALERTS_TABLE, event)
        if events and self._dispatcher is not None:
            for event in events:
                self._dispatcher.submit(event)
        for listener in self._sample_listeners:
            try:
                listener(sample)
            except Exception as err:
                self._log.log(f"listener:{type(err).__name__}", logging.ERROR,
                              "sample listener failed on %s: %s: %s", self.worker_id, type(err).__name__, err)
        return events

    def add_sample_listener(self, listener: Callable[[ResourceUtilization], Any]) -> None:
        """Call ``listener(sample)`` with every recorded sample, on the recording thread. For
        in-memory bookkeeping only (the scheduler's view): it must be fast and never block;
        use :meth:`register_alert_callback` for anything that does I/O. Adding one already there
        does nothing (each sample reaches a listener once)."""
        if listener not in self._sample_listeners:
            self._sample_listeners.append(listener)

    # -- reading ------------------------------------------------------------------------------
    def get_current_metrics(self) -> ResourceUtilization | None:
        """The latest sample, or ``None`` before the first one."""
        return self._latest

    def get_historical_metrics(self, start_time: datetime | None = None, end_time: datetime | None = None,
                               task_id: str | None = None) -> list[ResourceUtilization]:
        """Samples still in memory (the last ``history_size``), oldest first, filtered by time
        (inclusive; a naive ``datetime`` is read as UTC) and by a task that was running when they
        were taken."""
        with self._state_lock:
            window = self._history.window()
        return SampleHistory.records(window, as_utc(start_time), as_utc(end_time), task_id)

    def _require_store(self) -> MetricsStore:
        if self._store is None:
            reason = "no db_path was given" if self.db_path is None else "the monitor is not running"
            raise StoreError(f"no database to read from: {reason}")
        return self._store

    def get_metrics_from_db(self, start: datetime | None = None, end: datetime | None = None,
                            bucket_seconds: float | None = None) -> list[dict[str, Any]]:
        """This worker's samples from DuckDB: raw rows, or per ``bucket_seconds`` aggregated in SQL
        (mean and max of each resource percent; see ``fleet_hwmon.store.queries.bucketed``).

        Raises ``StoreError`` when the monitor has no open database.
        """
        store = self._require_store()
        from fleet_hwmon.store import queries
        start, end = as_utc(start), as_utc(end)  # naive: UTC
        if bucket_seconds is None:
            return queries.samples(store, start, end, self.worker_id)
        return queries.bucketed(store, bucket_seconds, start, end, self.worker_id)

    # -- alerts -------------------------------------------------------------------------------
    def _start_dispatcher(self) -> None:
        """Start the alert thread with every registered callback, unless it runs already."""
        with self._dispatcher_lock:
            if self._dispatcher is None:
                dispatcher = CallbackDispatcher(f"alerts:{self.worker_id}")
                for callback in self._callbacks:
                    dispatcher.register(callback)
                self._dispatcher = dispatcher

    def register_alert_callback(self, callback: Callable[[HardwareAlert], Any]) -> None:
        """Call ``callback(alert)`` for every alert event, on the alert thread (never the sampler's).
        The first callback registered on a running monitor starts that thread."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        if self._dispatcher is not None:
            self._dispatcher.register(callback)
        elif self.is_running:
            self._start_dispatcher()

    def unregister_alert_callback(self, callback: Callable[[HardwareAlert], Any]) -> bool:
        """Returns False when it was not registered."""
        found = callback in self._callbacks
        if found:
            self._callbacks.remove(callback)
        if self._dispatcher is not None:
            self._dispatcher.unregister(callback)
        return found

    def get_alerts(self, severity: AlertSeverity | str | None = None, resource: str | None = None,
                   active_only: bool = False, start_time: datetime | None = None,
                   limit: int | None = None, *, resource_type: str | None = None) -> list[HardwareAlert]:
        """Alert events of this monitor (newest last), or only the ones still firing.
        ``severity`` and ``resource`` (or its other name ``resource_type``) match case-insensitively;
        ``ValueError`` for an unknown severity."""
        with self._state_lock:
            alerts = self._tracker.active() if active_only else list(self._alerts)
        resource = resource if resource is not None else resource_type
        if severity is not None:
            severity = AlertSeverity(str(severity).lower())
            alerts = [a for a in alerts if a.severity is severity]
        if resource is not None:
            resource = str(resource).lower()
            alerts = [a for a in alerts if a.resource == resource]
        if start_time is not None:
            start_time = as_utc(start_time)  # naive: UTC
            alerts = [a for a in alerts if a.timestamp >= start_time]
        return alerts[-limit:] if limit else alerts

    @property
    def alert_thresholds(self) -> dict[str, dict[str, float]]:
        """The thresholds in force, ``{resource: {"warning": percent, "critical": percent}}``.
        Assigning any form the constructor takes replaces them from the next sample on
        (``ValueError`` naming the key for a bad one; the old ones then stay)."""
        return {r: {"warning": t.warning_percent, "critical": t.critical_percent}
                for r, t in self._tracker.thresholds.items()}

    @alert_thresholds.setter
    def alert_thresholds(self, overrides: Mapping[str, Any] | None) -> None:
        thresholds = parse_thresholds(overrides)
        with self._state_lock:  # not in the middle of evaluating a sample
            self._tracker.thresholds = thresholds

    def wait_for_alert_delivery(self, timeout_s: float = 10.0) -> None:
        """Block until every alert so far has gone through the callbacks."""
        if self._dispatcher is not None:
            self._dispatcher.join_pending(timeout_s)

    # -- tasks --------------------------------------------------------------------------------
    def start_task_monitoring(self, task_id: str, task_type: str | None = None) -> None:
        """Start attributing samples to ``task_id``; takes a sample now, so a task shorter than
        the interval still gets real values. Raises ``ValueError`` if it is already tracked.

        On a monitor never started, this opens its database first (so the task's samples and
        usage are stored; :meth:`stop_monitoring` closes it) and logs that only the samples taken
        at the task's start and end will count until :meth:`start_monitoring` is called."""
        if not task_id:
            raise ValueError("task_id must be a non-empty string")
        if self not in _RUNNING and self._store is None and self.db_path is not None:
            self._open_store()
            log.info("monitor of %s not started: its database is open for task %s, but only the samples at the "
                     "task's start and end count until start_monitoring()", self.worker_id, task_id)
        with self._state_lock:
            if task_id in self._active_tasks:
                raise ValueError(f"task {task_id!r} is already being monitored on {self.worker_id}")
            # Only samples taken from now on count: one from before the start says nothing of the task.
            start_time, start_s = self._wall_clock(), self._clock()
            self._active_tasks[task_id] = TaskAccumulator(task_id, self.worker_id, start_time, task_type,
                                                          start_s=start_s)
        self._clock_steps.observe(start_time, start_s)
        if not self.push_only:
            self.sample_now()

    def stop_task_monitoring(self, task_id: str, success: bool = True, error: str | None = None, *,
                             process_usage: Mapping[str, Any] | None = None) -> TaskResourceUsage:
        """Take a final sample, stop tracking ``task_id`` and store its usage.

        ``process_usage`` adds the task's own process-tree figures (``TaskResourceUsage``
        ``process_*`` fields). Raises ``KeyError`` when the task is not being monitored.
        """
        with self._state_lock:
            if task_id not in self._active_tasks:
                raise KeyError(f"task {task_id!r} is not being monitored on {self.worker_id}")
        if not self.push_only:
            self.sample_now()
        with self._state_lock:
            accumulator = self._active_tasks.pop(task_id)
        end_time, end_s = self._wall_clock(), self._clock()
        self._clock_steps.observe(end_time, end_s)
        usage = accumulator.snapshot(end_time=end_time, success=success, error=error, end_s=end_s)
        if process_usage:
            usage = usage.with_process_usage(**process_usage)
        self._finish_task(usage)
        return usage

    def _finish_task(self, usage: TaskResourceUsage) -> None:
        with self._state_lock:
            self._finished_tasks[usage.task_id] = usage
            while len(self._finished_tasks) > 10_000:
                self._finished_tasks.popitem(last=False)
        if self._store is not None:
            self._store.append(TASKS_TABLE, usage)

    def get_task_metrics(self, task_id: str) -> TaskResourceUsage | None:
        """Usage of a finished task, or the running usage so far of an active one; ``None`` if unknown."""
        with self._state_lock:
            if task_id in self._active_tasks:
                return self._active_tasks[task_id].snapshot()
            return self._finished_tasks.get(task_id)

    def get_task_history(self) -> list[TaskResourceUsage]:
        with self._state_lock:
            return list(self._finished_tasks.values())

    # -- status, export, report ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counters a user can check: samples taken (and held in memory), source errors, GPU
        state, and the store's rows written / rejected / dropped (``store``:
        ``MetricsStore.status()``, per table and reason)."""
        store_stats = self._store.stats() if self._store is not None else None
        return {
            "worker_id": self.worker_id,
            "monitoring_level": self.monitoring_level.value,
            "interval_s": self.interval_seconds,
            "running": self.is_running,
            "samples": self._sample_count,
            "samples_in_memory": len(self._history),
            "late_ticks": self._late_ticks,
            "wall_clock_steps": self._clock_steps.steps,
            "source_errors": dict(self._sampler.errors),
            "reader_bugs": dict(self._sampler.reader_bugs),
            "invalid_values": dict(self._invalid_values),
            "gpu_monitoring": None if self._nvml is None else
            {"status": self._nvml.status.name.lower(), "reason": self._nvml.reason},
            "db_path": self.db_path,
            "db_written_rows": store_stats.written_rows if store_stats else None,
            "db_dropped_rows": store_stats.dropped_rows if store_stats else None,
            "db_rejected_rows": store_stats.rejected_rows if store_stats else None,
            "store": self._store.status() if self._store is not None else None,
            "alert_callback_failures": self._dispatcher.failures if self._dispatcher else (
                0 if self.is_running else None),
        }

    def _summary(self) -> dict[str, Any]:
        """min / mean / max / current per resource: from DuckDB when it holds samples of this
        worker (all of them), else from the in-memory history (the same keys, ``None`` where no
        sample says)."""
        if self._store is not None:
            from fleet_hwmon.store import queries
            rows = queries.summary(self._store, self.worker_id)
            if rows:
                return rows[0]
        history = self.get_historical_metrics()
        out: dict[str, Any] = {"worker_id": self.worker_id, "samples": len(history),
                               "first_sample": history[0].timestamp if history else None,
                               "last_sample": history[-1].timestamp if history else None}
        for resource in ("cpu", "memory", "gpu", "disk"):
            values = [v for v in (s.resource_percent(resource) for s in history) if v is not None]
            current = history[-1].resource_percent(resource) if history else None
            out[resource] = {"min": min(values, default=None), "max": max(values, default=None),
                             "mean": sum(values) / len(values) if values else None, "current": current}
        return out

    def export_metrics_to_json(self, path: str) -> Path:
        """Write strict JSON (no NaN): status, summary, in-memory samples, tasks, alerts."""
        summary = self._summary()  # first: reading the store writes what it holds, so the status counts it
        return write_json(path, {
            "generated_at": utc_now(),
            "status": self.status(),
            "summary": summary,
            "samples": self.get_historical_metrics(),
            "tasks": self.get_task_history(),
            "alerts": self.get_alerts(),
        })

    def generate_html_report(self, path: str) -> Path:
        """A self-contained HTML summary of this worker: resources, tasks, alerts."""
        from fleet_hwmon.reports.render import render_to_file  # Jinja2: loaded for reports only
        summary = self._summary()  # first, as in export_metrics_to_json
        return render_to_file("monitor_summary.html.j2", path, generated_at=utc_now(), status=self.status(),
                              summary=summary, tasks=self.get_task_history(),
                              alerts=self.get_alerts(), current=self.get_current_metrics())


_RUNNING: weakref.WeakSet[HardwareUtilizationMonitor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The child has none of the parent's threads: its monitors are not running here, and locks
    # a sampler held at the fork are replaced so the child never waits on them. Their store
    # refuses to write with a clear error (fleet_hwmon.store.writer); a child monitors with a
    # monitor of its own, on its own db_path.
    for monitor in list(_RUNNING):
        monitor._state_lock = threading.Lock()
        monitor._sample_lock = threading.Lock()
        monitor._dispatcher_lock = threading.Lock()
        monitor._sampler._lock = threading.Lock()
        # The sampling thread also holds these on every tick (clock-step check, cgroup files,
        # rate-limited logs); a child's first sample_now would otherwise wait on them forever.
        monitor._clock_steps._lock = threading.Lock()
        for log_owner in (monitor, monitor._sampler):
            log_owner._log._lock = threading.Lock()
        for source in monitor._sampler.sources:
            if getattr(source, "_cgroup", None) is not None:
                source._cgroup._lock = threading.Lock()
        monitor._thread = None
        monitor._dispatcher = None
    _RUNNING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _stop_all_at_exit() -> None:
    # Sampling stops before the writer flushes and closes the file on its own thread, and
    # before NVML shuts down (fleet_hwmon.lifecycle orders the phases).
    for monitor in list(_RUNNING):
        monitor.stop_monitoring()


lifecycle.at_exit("monitors", _stop_all_at_exit)


def _serve_metrics(monitor: HardwareUtilizationMonitor, port: int) -> Any:
    """Serve the monitor's latest sample, alerts and store counters for Prometheus."""
    from fleet_hwmon.metrics import fleet_snapshot, start_metrics_server

    try:
        server = start_metrics_server(lambda: fleet_snapshot({monitor.worker_id: monitor}, store=monitor._store),
                                      port)
    except BaseException:
        monitor.stop_monitoring()
        raise
    print(f"metrics: {server.url}", flush=True)
    return server


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sample this machine's hardware utilization.")
    parser.add_argument("--duration", type=seconds_argument(MAX_DURATION_S, zero=True), default=10.0,
                        help="seconds to sample (default 10)")
    parser.add_argument("--level", default="standard", choices=[lv.value for lv in MonitoringLevel])
    parser.add_argument("--interval", type=seconds_argument(MAX_INTERVAL_S), default=None,
                        help="seconds between samples")
    parser.add_argument("--worker-id", default=None, help="worker name (default: host name)")
    parser.add_argument("--db-path", default="hardware_metrics.duckdb")
    parser.add_argument("--export-json", default=None, metavar="PATH")
    parser.add_argument("--html-report", default=None, metavar="PATH")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--metrics-port", type=port_argument, default=None, metavar="PORT",
                        help="serve Prometheus metrics on 127.0.0.1:PORT while sampling (0: any free port)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    problem = unwritable_option([("--export-json", args.export_json), ("--html-report", args.html_report)])
    if problem:  # found now, not after the sampling
        parser.error(problem)
    handler = logging.StreamHandler()
    utc = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    utc.converter = time.gmtime  # the times of the samples, the reports and the database are UTC too
    handler.setFormatter(utc)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    monitor: HardwareUtilizationMonitor | None = None
    server = None
    stopped_by: int | None = None  # the signal that ended the sampling early
    try:
        with lifecycle.sigterm_interrupts():  # from the start, SIGTERM stops early as Ctrl-C does: every sample kept
            try:
                monitor = HardwareUtilizationMonitor(args.worker_id, args.db_path, args.level, args.interval)
                monitor.register_alert_callback(lambda alert: log.warning("ALERT %s", alert.message))
                monitor.start_monitoring()
                server = None if args.metrics_port is None else _serve_metrics(monitor, args.metrics_port)
            except (StoreError, ValueError, ImportError, OSError) as err:
                if monitor is not None:
                    monitor.stop_monitoring()
                print(f"error: {err}", file=sys.stderr)
                return 2
            time.sleep(args.duration)
    except KeyboardInterrupt as err:
        stopped_by = signal.SIGTERM if isinstance(err, lifecycle.Terminated) else signal.SIGINT
        if monitor is None:  # stopped while it was opening: nothing sampled, nothing to keep
            print(f"{'terminated' if stopped_by == signal.SIGTERM else 'interrupted'} while opening: nothing sampled",
                  file=sys.stderr)
            return 128 + stopped_by
    if server is not None:
        server.stop()
    monitor._stop_sampling()  # every figure below then describes the same, final set of samples
    import duckdb  # (the sampling ran without it when no database was asked for)

    try:
        if args.export_json:
            monitor.export_metrics_to_json(args.export_json)
        if args.html_report:
            monitor.generate_html_report(args.html_report)
        summary, current = monitor._summary(), monitor.get_current_metrics()
    except (StoreError, duckdb.Error) as err:  # found only when read: a damaged file, a value it cannot hold
        monitor.stop_monitoring()
        print(f"error: {_store_problem(args.db_path, err)}", file=sys.stderr)
        return 2
    monitor.stop_monitoring()
    if stopped_by is not None:
        print(f"{'terminated' if stopped_by == signal.SIGTERM else 'interrupted'}: sampling stopped early; "
              f"every sample taken is kept", file=sys.stderr)
    if not args.quiet:
        print(f"worker {printable(monitor.worker_id)}: {summary.get('samples', 0)} samples in {args.db_path}")
        if current is not None:
            from fleet_hwmon.reports.render import fmt_percent
            print("  latest: " + "  ".join(
                f"{name} {fmt_percent(current.resource_percent(name))}" for name in ("cpu", "memory", "disk", "gpu")))
        for path in (args.export_json, args.html_report):
            if path:
                print(f"  wrote {path}")
    return 0 if stopped_by is None else 128 + stopped_by


def _store_problem(db_path: str, err: BaseException) -> str:
    """One line for a store error met after the sampling (the damaged-file advice when it is that)."""
    from fleet_hwmon.store.opening import damaged_file_error, is_damaged

    if isinstance(err, StoreError):
        return str(err)
    return str(damaged_file_error(db_path, err)) if is_damaged(err) else f"metrics database {db_path!r}: {err}"


if __name__ == "__main__":
    sys.exit(main())
