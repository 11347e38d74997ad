"""A Dask worker plugin that measures the worker's own host and publishes it with the heartbeats.

On every worker it runs the monitor's sampler (``Sampler(worker_id, build_host_sources(level,
nvml=get_gateway()))``) in a thread every ``interval_s`` seconds and keeps the latest sample;
a callable in ``worker.metrics`` hands that sample (``ResourceUtilization.to_dict()``) to every
heartbeat, so it reaches the scheduler as a plain dict (see :mod:`fleet_hwmon.cluster.wire` for
the record). Capability detection runs once, on the same thread, when the worker joins; its
result rides in the same record. The worker's id is its Dask address.

The heartbeat, not the sampler, sets how often a sample reaches the scheduler: Dask sends one
every 0.5 s up to 10 workers, 1 s up to 50, 2 s up to 200 (``distributed.scheduler.
heartbeat_interval``). A sampler faster than that only makes the published sample fresher.

Register it from a client (``client.register_plugin(HardwareMetricsPlugin(interval_s=1.0))``;
:class:`~fleet_hwmon.cluster.coordinator.ClusterCoordinator` does) or start workers with
``--preload fleet_hwmon.cluster.preload``. Workers never open the DuckDB file.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from typing import Any

import psutil
from distributed import WorkerPlugin

from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV, METRIC_KEY, PLUGIN_NAME, VERSION
from fleet_hwmon.levels import MonitoringLevel
from fleet_hwmon.logutil import RateLimitedLogger

log = logging.getLogger(__name__)

_RUNTIME = ("_worker", "_thread", "_stop", "_resume", "_record", "_stop_events", "_lock", "_log",
            "_process", "_sampler")


class HardwareMetricsPlugin(WorkerPlugin):
    """Samples the worker's host every ``interval_s`` seconds and publishes it in the heartbeat.

    Args:
        interval_s: seconds between samples (positive).
        monitoring_level: which metric groups to read (:class:`MonitoringLevel` or its name).
        detect_capabilities: run :class:`HardwareCapabilityDetector` when the worker joins
            (a worker without capabilities is never registered by the coordinator).
        enable_gpu: read NVIDIA GPUs through the product's NVML gateway.
        extra_source: ``"module:factory"``; on the worker, ``factory(worker_id)`` returns a
            metric source read after the host's, whose fields replace theirs (a seam for tests
            and rehearsals: a fixed load, labelled in ``simulated_fields``). Default: the
            worker's ``$FLEET_HWMON_EXTRA_SOURCE``, else none.

    Methods for the coordinator and tests, called on the worker (``client.run``):
    :meth:`pause` / :meth:`resume` (stop and restart publishing new samples),
    :meth:`cancel` (stop a running task). ``name`` is ``"fleet-hwmon"``; ``idempotent`` so
    registering it again (from a second client) keeps the running one.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, interval_s: float = 1.0, monitoring_level: MonitoringLevel | str = MonitoringLevel.STANDARD,
                 *, detect_capabilities: bool = True, enable_gpu: bool = True,
                 extra_source: str | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self.interval_s = float(interval_s)
        self.monitoring_level = MonitoringLevel.parse(monitoring_level).value
        self.detect_capabilities = detect_capabilities
        self.enable_gpu = enable_gpu
        self.extra_source = extra_source
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._lock = threading.Lock()
        self._stop_events: dict[str, threading.Event] = {}
        self._record: dict[str, Any] = {}
        self._log = RateLimitedLogger(log)
        self._process: psutil.Process | None = None
        self._sampler: Any = None

    # The plugin travels to the workers pickled: configuration only, never threads or state.
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _RUNTIME}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # -- WorkerPlugin hooks ---------------------------------------------------------------------
    def setup(self, worker: Any) -> None:
        """Start sampling (on a thread: detection and NVML start-up never block the event loop)
        and hook the heartbeat metrics."""
        self._worker = worker
        self._record = {"version": VERSION, "epoch": uuid.uuid4().hex, "seq": 0, "sample": None,
                        "capabilities": None, "hardware_capabilities": None,
                        "process": {"pid": os.getpid(), "hostname": socket.gethostname()},
                        "paused": False, "interval_s": self.interval_s}
        worker.metrics[METRIC_KEY] = self._publish
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-hwmon-sampler", daemon=True)
        self._thread.start()

    def teardown(self, worker: Any) -> None:
        """Stop the sampling thread and unhook the metrics. Safe twice."""
        self._stop.set()
        self._resume.set()
        if worker is not None and getattr(worker, "metrics", None) is not None:
            worker.metrics.pop(METRIC_KEY, None)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        for event in list(self._stop_events.values()):
            event.set()

    # -- published record ---------------------------------------------------------------------
    def _publish(self, worker: Any = None) -> dict[str, Any]:
        """Called by the worker on each heartbeat (event loop thread): a shallow copy, no I/O."""
        return dict(self._record)

    @property
    def worker_id(self) -> str:
        worker = self._worker
        return str(getattr(worker, "contact_address", None) or getattr(worker, "address", None) or "")

    def latest(self) -> dict[str, Any]:
        """The record as the next heartbeat will carry it."""
        return dict(self._record)

    # -- sampling thread -------------------------------------------------------------------------
    def _run(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only sets the reference point
        if self.detect_capabilities:
            self._detect()
        else:
            self._record = {**self._record, "capabilities": {"hardware": ["cpu"]}}
        while not self._stop.is_set():
            if not self._resume.is_set():
                self._resume.wait(self.interval_s)
                continue
            started = time.monotonic()
            try:
                self._sample_once()
            except Exception as err:  # errors never kill the loop
                self._log.log(f"sample:{type(err).__name__}", logging.WARNING,
                              "fleet-hwmon sampling failed on %s: %s: %s", self.worker_id, type(err).__name__, err)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _detect(self) -> None:
        try:
            from hardware_capability_detector import HardwareCapabilityDetector

            detector = HardwareCapabilityDetector(worker_id=self.worker_id)
            caps = detector.detect_all_capabilities()
            self._record = {**self._record, "capabilities": detector.to_coordinator_capabilities(caps),
                            "hardware_capabilities": _plain(caps.to_dict())}
        except Exception as err:  # a broken probe leaves the basics: the worker still has a CPU
            self._log.log("detect", logging.WARNING, "capability detection failed on %s: %s: %s",
                          self.worker_id, type(err).__name__, err)
            self._record = {**self._record, "capabilities": {"hardware": ["cpu"]}}

    def _make_sampler(self) -> Any:
        from fleet_hwmon.sampling.sampler import Sampler, build_host_sources

        nvml = None
        if self.enable_gpu:
            from fleet_hwmon.sampling.nvml import get_gateway

            nvml = get_gateway()
        level = MonitoringLevel.parse(self.monitoring_level)
        sources = build_host_sources(level, nvml=nvml)
        extra = self.extra_source or os.environ.get(EXTRA_SOURCE_ENV)
        if extra:
            module, _, factory = extra.partition(":")
            sources.append(getattr(importlib.import_module(module), factory)(self.worker_id))
        return Sampler(self.worker_id, sources)

    def _sample_once(self) -> None:
        if self._sampler is None:
            self._sampler = self._make_sampler()
        with self._lock:
            running = sorted(self._stop_events)
        sample = self._sampler.sample(task_ids=running)
        process = {"pid": os.getpid(), "hostname": socket.gethostname()}
        try:
            with self._process.oneshot():
                process.update(rss_bytes=self._process.memory_info().rss,
                               cpu_percent=self._process.cpu_percent(None),
                               num_threads=self._process.num_threads())
        except psutil.Error:
            pass
        self._record = {**self._record, "seq": self._record["seq"] + 1, "sample": sample.to_dict(),
                        "process": process, "paused": False}

    # -- control (called on the worker through client.run) ---------------------------------------
    def pause(self) -> None:
        """Stop taking samples; heartbeats go on carrying the last one (the coordinator then sees
        no new sample, and the worker turns stale)."""
        self._resume.clear()
        self._record = {**self._record, "paused": True}

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def task_started(self, task_id: str) -> threading.Event:
        """A fleet task begins on this worker; the returned event cancels it."""
        event = threading.Event()
        with self._lock:
            self._stop_events[task_id] = event
        return event

    def task_finished(self, task_id: str) -> None:
        with self._lock:
            self._stop_events.pop(task_id, None)

    def cancel(self, task_id: str) -> bool:
        """Cancel a running fleet task (its process tree is stopped); False when not running here."""
        with self._lock:
            event = self._stop_events.get(task_id)
        if event is None:
            return False
        event.set()
        return True


class HardwareMetricsInstaller(WorkerPlugin):
    """Adds ``plugin`` to every current and future worker that does not run one yet.

    Registered by the coordinator in place of the metrics plugin itself: Dask's
    ``register_plugin`` replaces a worker plugin of the same name, which would discard one
    started with ``--preload fleet_hwmon.cluster.preload`` and its ``--hwmon-*`` options.
    """

    name = PLUGIN_NAME + "-installer"
    idempotent = True

    def __init__(self, plugin: HardwareMetricsPlugin) -> None:
        self.plugin = plugin

    async def setup(self, worker: Any) -> None:
        if get_plugin(worker) is None:
            await worker.plugin_add(self.plugin, name=PLUGIN_NAME)


class GroupSignalsIgnored(WorkerPlugin):
    """Makes a worker process ignore SIGINT and SIGTERM; for the worker processes the
    coordinator starts itself (:meth:`ClusterCoordinator.local`), passed to each at its start (a
    worker the nanny restarts gets it again). A terminal's Ctrl-C, or a SIGTERM to the job,
    reaches the whole process group: workers it killed would drop their tasks as lost, print
    tracebacks and leave the coordinator waiting on them, while the coordinator's process, which
    the signal also reaches, cancels the tasks and closes the workers in order. They still end
    with that process, however it ends (Dask's worker processes watch their parent). Only the
    main thread may set a signal handler; a worker run elsewhere (in a thread) is left as it is."""

    name = PLUGIN_NAME + "-ignore-group-signals"
    idempotent = True

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _plain(value: Any) -> Any:
    """Only msgpack-able values in the heartbeat: tuples become lists, odd objects strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def get_plugin(worker: Any) -> HardwareMetricsPlugin | None:
    """This product's plugin on ``worker`` (``None`` when the worker does not run it)."""
    plugin = getattr(worker, "plugins", {}).get(PLUGIN_NAME)
    return plugin if isinstance(plugin, HardwareMetricsPlugin) else None
