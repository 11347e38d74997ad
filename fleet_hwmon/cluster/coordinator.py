"""The reference coordinator with Dask distributed as the transport and the executor.

:class:`ClusterCoordinator` keeps everything the embedded :class:`Coordinator` does (the
coordinator contract, the priority queue, the dispatch loop that asks
``task_scheduler.find_best_worker_for_task``, task records and events, requeue on worker loss)
and changes where workers come from and where tasks run:

- **Workers** are the Dask workers that run :class:`HardwareMetricsPlugin`. A watcher thread
  polls the scheduler's identity (what ``client.scheduler_info()`` shows) every
  ``watch_interval_s``: a worker whose published record has capabilities and a first sample
  is registered (id: its Dask address); one that left the scheduler is deregistered. Polling
  needs nothing of ours on the scheduler (a plain ``dask scheduler`` works) and survives
  missed events: the next poll corrects it.
- **Samples**: each NEW published sample (by the plugin's epoch and sequence number) goes to
  every sample callback, normally ``integration.update_worker_utilization``. A worker whose
  samples stop is simply not fed, so the integration's staleness rule excludes it.
- **Tasks** go to the chosen worker with ``client.submit(fn, ..., workers=[address],
  allow_other_workers=False, pure=False)``; ``fn`` (default :func:`run_remote_task`) runs
  ``run_task`` on that worker and returns ``TaskExecutionResult.to_dict()`` plus where it ran.
  Results are collected with ``distributed.as_completed`` and go through the same ``_finish``
  as embedded results, so ``task_started`` / ``task_finished`` and the history work unchanged.
- **A worker that dies mid-task**: the worker is deregistered, the integration records the
  attempt as failed, and the task is REQUEUED (at most ``max_retries`` times, then failed) and
  runs on another worker; the Dask future of the lost attempt is cancelled.

The coordinator process is the only one that touches the DuckDB file (through the
integration); workers only publish.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import Any, Callable, Mapping

from fleet_hwmon.cluster import require_distributed
from fleet_hwmon.cluster.plugin import GroupSignalsIgnored, HardwareMetricsInstaller, HardwareMetricsPlugin
from fleet_hwmon.cluster.remote import LOCATION_KEYS, cancel_tasks, expect_shutdown, run_remote_task
from fleet_hwmon.cluster.wire import Published, parse_published
from fleet_hwmon.coordinator.coordinator import Coordinator, TaskRecord
from fleet_hwmon.execution import TaskExecutionResult
from fleet_hwmon.logutil import RateLimitedLogger

log = logging.getLogger(__name__)


class _ClosedSchedulerComm(logging.Filter):
    """Drops the Dask client's traceback for a message it could not send because its comm to
    the scheduler had closed (a task submitted as the scheduler went away): the coordinator
    reports a lost scheduler itself, once (reconnecting, then ``scheduler_lost``). Every other
    record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (error is not None and type(error).__name__ == "CommClosedError")


_TORNADO_LOG = logging.getLogger("tornado.application")  # where tornado logs a callback's exception

TaskFunction = Callable[[str, Mapping[str, Any], float], Mapping[str, Any]]
SampleCallback = Callable[[str, dict], Any]

_SUBMITTING = object()  # placeholder future of an attempt being submitted
_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(TaskExecutionResult))
_RESULT_DEFAULTS: dict[str, Any] = {
    "returncode": None, "success": False, "error": None, "duration_s": 0.0, "cpu_seconds": None,
    "peak_rss_bytes": None, "mean_cpu_percent": None, "peak_cpu_percent": None, "read_bytes": None,
    "write_bytes": None, "gpu_memory_peak_bytes": None, "timed_out": False, "cancelled": False,
    "stdout_tail": "", "stderr_tail": "", "num_samples": 0, "gpu_utilization_percent": None,
}


def heartbeat_interval_s(n_workers: int) -> float:
    """Seconds between two heartbeats of a worker in a cluster of ``n_workers`` (Dask's rule,
    ``distributed.scheduler.heartbeat_interval``): a sample cannot reach the coordinator more
    often than this, so the integration's ``update_interval_seconds`` should not be smaller."""
    from distributed.scheduler import heartbeat_interval

    return float(heartbeat_interval(n_workers))


def result_from_dict(data: Mapping[str, Any]) -> TaskExecutionResult:
    """A :class:`TaskExecutionResult` from a remote function's dict (missing fields: unknown)."""
    return TaskExecutionResult(**{**_RESULT_DEFAULTS, **{k: data[k] for k in _RESULT_FIELDS if k in data}})


def lost_result(error: str, *, cancelled: bool = True) -> TaskExecutionResult:
    """The result of an attempt whose worker left or that was cancelled before it reported."""
    return TaskExecutionResult(**{**_RESULT_DEFAULTS, "error": error, "cancelled": cancelled})


class ClusterCoordinator(Coordinator):
    """Coordinator whose workers are Dask workers and whose tasks run on them.

    Args:
        client: a ``distributed.Client``, a scheduler address (``"tcp://HOST:8786"``, a client
            is created and closed by :meth:`close`), or a cluster object (``LocalCluster``; a
            client is created for it).
        plugin: the worker plugin to register (default ``HardwareMetricsPlugin()``).
        register_plugin: at :meth:`start`, add ``plugin`` to every current and future worker
            that runs none (a worker started with ``--preload fleet_hwmon.cluster.preload``
            keeps its own plugin and options); False to leave the workers as they are.
        watch_interval_s: how often the scheduler is polled for workers and samples.
        task_function: what runs on the worker, ``fn(task_id, spec_dict, poll_interval_s) ->
            dict`` (``TaskExecutionResult`` fields plus ``worker_address`` / ``worker_pid`` /
            ``hostname``); default :func:`~fleet_hwmon.cluster.remote.run_remote_task`.
        max_tasks_per_worker, seed, dispatch_interval_s, max_retries, poll_interval_s: as for
            :class:`Coordinator` (``max_retries``: requeues of a task whose worker left).

    Raises:
        ClusterUnavailableError (an ImportError) when ``distributed`` is not installed.

    Example::

        coordinator = ClusterCoordinator("tcp://scheduler:8786")
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path="m.duckdb")
        integration.initialize()
        coordinator.register_sample_callback(integration.update_worker_utilization)
        coordinator.start()
        coordinator.wait_for_workers(2, timeout_s=60)
        coordinator.submit_task({"task_id": "t1", "type": "unit", "requirements": {"hardware": ["cpu"]},
                                 "spec": {"command": ["pytest", "-q", "tests/test_x.py"]}})
    """

    def __init__(self, client: Any, *, plugin: HardwareMetricsPlugin | None = None, register_plugin: bool = True,
                 watch_interval_s: float = 0.2, task_function: TaskFunction = run_remote_task,
                 max_tasks_per_worker: int = 2, seed: int = 0, dispatch_interval_s: float = 0.1,
                 max_retries: int = 1, poll_interval_s: float = 0.25) -> None:
        distributed = require_distributed()
        super().__init__(max_tasks_per_worker=max_tasks_per_worker, seed=seed,
                         dispatch_interval_s=dispatch_interval_s, max_retries=max_retries,
                         poll_interval_s=poll_interval_s)
        if not watch_interval_s > 0:
            raise ValueError(f"watch_interval_s must be positive, not {watch_interval_s!r}")
        self._owns_client = not isinstance(client, distributed.Client)
        self.client = distributed.Client(client) if self._owns_client else client
        self._scheduler_address = getattr(getattr(self.client, "scheduler", None), "address", None)
        self.scheduler_lost: str | None = None  # why the Dask scheduler is gone, once the client gave up on it
        self._closed_comm = _ClosedSchedulerComm()  # on tornado's log from connect() to close()
        self._reconnecting = False  # the client lost its scheduler and tries to reach it again
        self.cluster: Any = None  # a cluster this coordinator started (see local()) and closes
        self.plugin = plugin if plugin is not None else HardwareMetricsPlugin()
        self.register_plugin = register_plugin
        self.watch_interval_s = float(watch_interval_s)
        self.task_function = task_function
        self.placements: dict[str, dict[str, Any]] = {}
        self._uid = uuid.uuid4().hex[:8]
        self._sample_callbacks: list[SampleCallback] = []
        self._markers: dict[str, tuple[str, int]] = {}
        self._process: dict[str, dict[str, Any]] = {}
        self._futures: dict[str, Any] = {}  # task id -> Dask future of its current attempt
        self._keys: dict[str, str] = {}  # Dask key -> task id
        self._without_plugin: set[str] = set()
        # Results are gathered per batch of completed futures (one round trip for the batch, as
        # client.gather does), not one by one as as_completed(with_results=True) would.
        self._completed = distributed.as_completed(loop=self.client.loop)
        self._added = threading.Event()
        self._closing = threading.Event()
        self._watch_thread: threading.Thread | None = None
        self._collect_thread: threading.Thread | None = None
        self._plugin_registered = False
        self._closed = False
        self._watch_log = RateLimitedLogger(log, every_s=60.0)

    @classmethod
    def local(cls, n_workers: int = 2, *, cluster_kwargs: Mapping[str, Any] | None = None,
              **kwargs: Any) -> ClusterCoordinator:
        """A coordinator on a new ``LocalCluster`` of ``n_workers`` worker processes on this machine
        (loopback, one thread each, no dashboard); :meth:`close` shuts the cluster down. Its
        worker processes ignore SIGINT and SIGTERM (:class:`GroupSignalsIgnored`): a terminal's
        Ctrl-C reaches the whole process group, and the coordinator's own process stops them."""
        distributed = require_distributed()
        # No dashboard; the scheduler's small HTTP server (health, metrics) on a free port, so a
        # second cluster on the machine never fights over 8787.
        options = {"n_workers": n_workers, "processes": True, "threads_per_worker": 1,
                   "dashboard_address": None, "host": "127.0.0.1",
                   "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
                   "plugins": {GroupSignalsIgnored()}, **(cluster_kwargs or {})}
        cluster = distributed.LocalCluster(**options)
        try:
            coordinator = cls(distributed.Client(cluster), **kwargs)
        except BaseException:
            cluster.close()
            raise
        coordinator._owns_client = True
        coordinator.cluster = cluster
        return coordinator

    # -- events ---------------------------------------------------------------------------------
    def register_sample_callback(self, callback: SampleCallback) -> None:
        """``callback(worker_id, sample_dict)`` for every new sample a worker publishes;
        pass ``integration.update_worker_utilization``."""
        self._sample_callbacks.append(callback)

    def worker_process(self, worker_id: str) -> dict[str, Any] | None:
        """The worker process's own figures from its latest record: ``pid``, ``hostname``,
        ``rss_bytes``, ``cpu_percent`` (percent of one core), ``num_threads``."""
        process = self._process.get(worker_id)
        return dict(process) if process is not None else None

    def placement(self, task_id: str) -> dict[str, Any] | None:
        """Where the last attempt of ``task_id`` ran, as the worker reported it:
        ``worker_address``, ``worker_pid``, ``hostname``, plus ``assigned_worker`` and ``attempt``."""
        placement = self.placements.get(task_id)
        return dict(placement) if placement is not None else None

    # -- life cycle -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Register the plugin (unless told not to), look at the cluster once, then keep watching
        it and collecting results; no dispatch yet (see :meth:`start`). Idempotent."""
        if self._closed:
            raise RuntimeError("this coordinator was closed")
        if self.register_plugin and not self._plugin_registered:
            self.client.register_plugin(HardwareMetricsInstaller(self.plugin))
            self._plugin_registered = True
        _TORNADO_LOG.addFilter(self._closed_comm)  # (added twice, kept once)
        self._closing.clear()
        self.refresh()
        if self._watch_thread is None or not self._watch_thread.is_alive():
            self._watch_thread = threading.Thread(target=self._watch_loop, name="cluster-watch", daemon=True)
            self._watch_thread.start()
        if self._collect_thread is None or not self._collect_thread.is_alive():
            self._collect_thread = threading.Thread(target=self._collect_loop, name="cluster-results", daemon=True)
            self._collect_thread.start()

    def start(self) -> None:
        """:meth:`connect`, then dispatch queued tasks."""
        self.connect()
        super().start()

    def wait_for_workers(self, n: int, timeout_s: float = 60.0) -> bool:
        """Wait until ``n`` workers are registered (joined and published capabilities and a sample)."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for info in list(self.workers.values()) if info.get("status") != "joining") < n:
            if time.monotonic() >= deadline:
                return False
            if self._watch_thread is None or not self._watch_thread.is_alive():
                self.refresh()
            time.sleep(min(0.05, self.watch_interval_s))
        return True

    def stop(self, cancel_running: bool = True, timeout_s: float = 30.0) -> None:
        """Stop dispatching; cancel running tasks on their workers (by default) or let them end,
        waiting up to ``timeout_s``; attempts still unanswered then end as cancelled. Then stop
        watching. Idempotent."""
        deadline = time.monotonic() + timeout_s
        super().stop(cancel_running=cancel_running, timeout_s=timeout_s)
        if cancel_running:
            self._cancel_remote(max(0.0, deadline - time.monotonic()))
        while self._futures and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            leftovers = [(task_id, self._futures.pop(task_id)) for task_id in list(self._futures)]
        for task_id, future in leftovers:
            if future is not _SUBMITTING:
                self._keys.pop(future.key, None)
                self._cancel_future(future)
            record = self.tasks[task_id]
            self._finish(record, record.worker_id, lost_result(
                record.error or "cancelled: the coordinator stopped before the worker answered"))
        if self._watch_thread is not None and self._watch_thread.is_alive():
            self.refresh()  # the last samples
        self._closing.set()
        self._added.set()
        for thread in (self._watch_thread, self._collect_thread):
            if thread is not None:
                thread.join(timeout=10)

    def close(self) -> None:
        """:meth:`stop`, then close the client and the cluster this coordinator created. Idempotent."""
        if self._closed:
            return
        self.stop()
        self._closed = True
        if self.cluster is not None:
            try:
                self.client.run(expect_shutdown, on_error="ignore")
            except Exception as error:  # a worker already gone: nothing to tell it
                log.debug("could not prepare the workers for shutdown: %s", error)
        if self._owns_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        _TORNADO_LOG.removeFilter(self._closed_comm)

    def __enter__(self) -> ClusterCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers: watching the scheduler --------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._closing.wait(self.watch_interval_s):
            self.refresh()

    def refresh(self) -> None:
        """Poll the scheduler once: register joined workers, deregister departed ones, hand on
        new samples. Errors are logged (rate-limited), never raised. While the client reconnects
        to a lost scheduler no worker is used (:meth:`_scheduler_link`)."""
        if self._scheduler_link() != "up":
            return
        try:
            # The scheduler's identity straight from the RPC, as Client.scheduler_info's docstring
            # advises: scheduler_info() returns the client's cached copy, which its own periodic
            # refresh (n_workers=0, no workers) can overwrite between the fetch and the return.
            workers = self.client.sync(self.client.scheduler.identity, n_workers=-1).get("workers", {})
            if self._reconnecting:
                self._reconnecting = False
                log.warning("reached the Dask scheduler%s again; its workers are registered as they show up there",
                            self._at())
        except Exception as err:
            self._watch_log.log(f"poll:{type(err).__name__}", logging.WARNING,
                                "cannot read the Dask scheduler's workers: %s: %s", type(err).__name__, err)
            return
        for worker_id in [w for w in list(self.workers) if w not in workers]:
            self.deregister_worker(worker_id, "left the cluster")
        for address, info in workers.items():
            try:
                self._observe_worker(address, info)
            except Exception as err:  # one worker's odd record must not stop the others
                self._watch_log.log(f"worker:{type(err).__name__}", logging.WARNING,
                                    "cannot take the record of worker %s: %s: %s", address, type(err).__name__, err)

    def _observe_worker(self, address: str, info: Mapping[str, Any]) -> None:
        published = parse_published(info.get("metrics"))
        if published is None:
            if address not in self._without_plugin:
                self._without_plugin.add(address)
                log.info("Dask worker %s does not publish fleet-hwmon metrics (yet); not used until it does",
                         address)
            return
        status = "active" if info.get("status", "running") == "running" else str(info.get("status"))
        if address not in self.workers:
            if not published.ready:
                return
            self._register_dask_worker(address, info, published, status)
        elif self.workers[address].get("status") != status:
            with self._lock:
                if address in self.workers:
                    self.workers[address]["status"] = status
            self._wake.set()
        self._feed(address, published)

    def _register_dask_worker(self, address: str, info: Mapping[str, Any], published: Published, status: str) -> None:
        extra: dict[str, Any] = {"remote": True, "dask_name": info.get("name"), "host": info.get("host"),
                                 "pid": published.process.get("pid"), "nanny": info.get("nanny")}
        if published.hardware_capabilities is not None:
            from fleet_hwmon.capabilities.model import WorkerHardwareCapabilities

            record = WorkerHardwareCapabilities.from_dict({**published.hardware_capabilities, "worker_id": address})
            extra["hardware_capabilities"] = record
        # "joining" until every worker_registered listener ran (the integration creates the
        # worker's monitor there): the dispatcher only uses "active" workers.
        self.register_worker(address, published.capabilities or {"hardware": ["cpu"]}, **extra, status="joining")
        with self._lock:
            if address in self.workers:
                self.workers[address]["status"] = status
        self._wake.set()
        self._without_plugin.discard(address)
        log.info("registered Dask worker %s (%s)", address, info.get("name"))

    def _feed(self, address: str, published: Published) -> None:
        if not published.is_newer_than(self._markers.get(address)):
            return
        self._markers[address] = published.marker
        self._process[address] = published.process
        sample = {**published.sample, "worker_id": address}  # the scheduler's key is the authority
        for callback in list(self._sample_callbacks):
            try:
                callback(address, sample)
            except Exception as err:
                self._watch_log.log(f"sample:{type(err).__name__}", logging.WARNING,
                                    "sample callback failed for %s: %s: %s", address, type(err).__name__, err)

    def deregister_worker(self, worker_id: str, reason: str = "deregistered") -> list[str]:
        """Remove a worker; each task it was running is requeued (up to ``max_retries`` times,
        then failed) and its Dask future cancelled. Returns the ids of those tasks."""
        running = super().deregister_worker(worker_id, reason)
        self._markers.pop(worker_id, None)
        for task_id in running:
            with self._lock:
                future = self._futures.pop(task_id, None)
                if future is not None and future is not _SUBMITTING:
                    self._keys.pop(future.key, None)
            if future is None:
                continue  # its result arrived first and ends the attempt
            if future is not _SUBMITTING:
                self._cancel_future(future)
            record = self.tasks[task_id]
            self._finish(record, worker_id, lost_result(record.error or f"worker {worker_id} {reason}"))
        if running:
            log.warning("worker %s %s while running %s", worker_id, reason, ", ".join(running))
        return running

    # -- tasks ------------------------------------------------------------------------------------
    def _start(self, record: TaskRecord, worker_id: str) -> None:
        task_id = record.task["task_id"]
        spec = record.spec.to_dict()
        with self._lock:  # atomic with deregister_worker: a lost worker never gets a future
            if worker_id not in self.workers:
                self._set_status(record, "queued")
                record.worker_id = None
                self._queue_again(record)
                return
            self._set_status(record, "running")
            record.worker_id = worker_id
            record.attempts += 1
            record.started_at = _utc_now()
            record.stop_event = threading.Event()
            self._running[worker_id].add(task_id)
            self._futures[task_id] = _SUBMITTING  # whoever pops this entry ends the attempt
            key = f"fleet-hwmon-{self._uid}-{task_id}-{record.attempts}"
        self._emit("task_assigned", record.task, worker_id)
        self._emit("task_started", record.task, worker_id)
        with self._lock:
            if self._futures.get(task_id) is not _SUBMITTING:
                return  # the worker left meanwhile; deregister_worker ended this attempt
            future = self.client.submit(self.task_function, task_id, spec, self.poll_interval_s, key=key,
                                        workers=[worker_id], allow_other_workers=False, pure=False)
            self._futures[task_id] = future
            self._keys[key] = task_id
        self._completed.add(future)
        self._added.set()

    def _queue_again(self, record: TaskRecord) -> None:
        import heapq

        heapq.heappush(self._queue, (-int(record.task.get("priority", 0)), next(self._sequence),
                                     record.task["task_id"]))
        self._wake.set()

    def _collect_loop(self) -> None:
        while not self._closing.is_set():
            if self._completed.is_empty():
                self._added.wait(0.05)
                self._added.clear()
                continue
            try:
                batch = self._completed.next_batch(block=True)
            except StopIteration:
                continue
            for future, result in zip(batch, self._results(batch)):
                try:
                    self._on_done(future, result)
                except Exception as err:  # never lose the loop over one result
                    log.exception("handling the result of %s failed: %s", future.key, err)

    def _results(self, futures: list[Any]) -> list[Any]:
        """Each future's result, or its exception (``None`` when cancelled): the finished ones in
        one gather; one by one only when that gather fails (a future cancelled meanwhile)."""
        finished = [f for f in futures if f.status == "finished"]
        values: dict[str, Any] = {}
        try:
            values = dict(zip((f.key for f in finished), self.client.gather(finished))) if finished else {}
        except Exception:
            for future in finished:
                try:
                    values[future.key] = future.result(timeout=self.poll_interval_s * 20)
                except Exception as err:
                    values[future.key] = err
        out = []
        for future in futures:
            if future.key in values:
                out.append(values[future.key])
            elif future.status == "error":
                out.append(future.exception(timeout=self.poll_interval_s * 20))
            else:
                out.append(None)
        return out

    def _on_done(self, future: Any, result: Any) -> None:
        with self._lock:
            task_id = self._keys.pop(future.key, None)
            if task_id is None or self._futures.get(task_id) is not future:
                return  # an attempt already ended (its worker left, or stop() gave up on it)
            del self._futures[task_id]
            record = self.tasks[task_id]
            worker_id = record.worker_id
        status = future.status
        if status == "finished" and isinstance(result, Mapping):
            execution = result_from_dict(result)
            self.placements[task_id] = {**{k: result.get(k) for k in LOCATION_KEYS},
                                        "assigned_worker": worker_id, "attempt": record.attempts}
        elif status == "cancelled" and self._scheduler_link() != "up":  # the client cancelled every future
            execution = lost_result(record.error or f"the connection to the Dask scheduler was lost while it ran on "
                                    f"{worker_id}")
        elif status == "cancelled":
            execution = lost_result(record.error or "cancelled in the Dask cluster")
        elif type(result).__name__ == "KilledWorker":  # the worker died under it: requeue like a departure
            self.deregister_worker(worker_id, "died")
            execution = lost_result(f"worker {worker_id} died while the task ran: {result}")
        else:
            execution = lost_result(f"remote execution on {worker_id} failed: {type(result).__name__}: {result}",
                                    cancelled=False)
        self._finish(record, worker_id, execution)

    def _scheduler_link(self) -> str:
        """``"up"``, ``"reconnecting"`` or ``"gone"``: the Dask client cancels every future when it
        loses its scheduler and tries to reach it again for ``distributed.comm.timeouts.connect``
        (30 s by default), then closes. On the first sign of each: the workers are deregistered
        (their running tasks queued again, as after any departure; a scheduler reached again
        registers them anew), and when it is gone ``scheduler_lost`` says so, logged once."""
        status = getattr(self.client, "status", None)
        if self._closed or status not in ("connecting", "closing", "closed"):
            return "up"
        gone = status != "connecting"
        with self._lock:
            news = (gone and self.scheduler_lost is None) or not (gone or self._reconnecting)
            if not news:
                return "gone" if gone else "reconnecting"
            self._reconnecting = not gone
            if gone:
                self.scheduler_lost = f"lost the Dask scheduler{self._at()}: the client could not reach it again"
        if gone:
            log.error("%s", self.scheduler_lost)
        else:
            log.warning("lost the connection to the Dask scheduler%s; reconnecting, its workers deregistered "
                        "meanwhile", self._at())
        for worker_id in list(self.workers):
            self.deregister_worker(worker_id, "was lost with the Dask scheduler")
        return "gone" if gone else "reconnecting"

    def _at(self) -> str:
        return f" at {self._scheduler_address}" if self._scheduler_address else ""

    def _cancel_remote(self, timeout_s: float) -> None:
        """Ask every worker that runs one of our tasks to stop it: one coroutine per worker
        (``cancel_tasks``), answered within ``timeout_s``; each task's result then comes back
        ``cancelled`` within one poll interval."""
        with self._lock:
            running = {task_id: self.tasks[task_id].worker_id for task_id in self._futures}
        workers = sorted({w for w in running.values() if w is not None})
        if not workers:
            return
        try:
            answers = self.client.run(cancel_tasks, sorted(running), workers=workers, on_error="return",
                                      callback_timeout=max(0.1, timeout_s))
        except Exception as err:  # a closing client or a timeout: the leftovers end in stop()
            log.warning("cannot cancel tasks on %s: %s: %s", ", ".join(workers), type(err).__name__, err)
            return
        for worker_id, answer in answers.items():
            if isinstance(answer, BaseException):
                log.warning("cannot cancel tasks on %s: %s: %s", worker_id, type(answer).__name__, answer)

    def _cancel_future(self, future: Any) -> None:
        try:
            future.cancel()
        except Exception as err:  # the client may be closing
            log.debug("cancelling %s failed: %s", future.key, err)


def _utc_now() -> Any:
    from fleet_hwmon.sample import utc_now

    return utc_now()
