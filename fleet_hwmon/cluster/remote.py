"""Functions that run ON a Dask worker, submitted by the cluster coordinator.

A task function has the signature ``fn(task_id, spec_dict, poll_interval_s) -> dict`` and
returns ``TaskExecutionResult.to_dict()`` plus where it ran (``worker_address``,
``worker_pid``, ``hostname``): the resource use in it is measured on that worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Mapping

from fleet_hwmon.execution import TaskExecutionResult, TaskSpec, run_task

LOCATION_KEYS = ("worker_address", "worker_pid", "hostname")
_HEARTBEAT_ERROR = "Failed to communicate with scheduler during heartbeat"


def _where() -> tuple[Any, dict[str, Any]]:
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not inside a worker (called directly, e.g. in a unit test)
        return None, {"worker_address": None, "worker_pid": os.getpid(), "hostname": socket.gethostname()}
    return worker, {"worker_address": worker.address, "worker_pid": os.getpid(), "hostname": socket.gethostname()}


def run_remote_task(task_id: str, spec: Mapping[str, Any], poll_interval_s: float = 0.25) -> dict[str, Any]:
    """Run ``spec`` (a ``TaskSpec`` dict) with :func:`run_task` on this worker; the worker's
    plugin can cancel it (:meth:`HardwareMetricsPlugin.cancel`) and lists it in its samples."""
    from fleet_hwmon.cluster.plugin import get_plugin

    worker, where = _where()
    plugin = get_plugin(worker) if worker is not None else None
    stop_event = plugin.task_started(task_id) if plugin is not None else threading.Event()
    try:
        result = run_task(TaskSpec.from_dict(spec), poll_interval_s=poll_interval_s, stop_event=stop_event)
    finally:
        if plugin is not None:
            plugin.task_finished(task_id)
    return {**result.to_dict(), **where}


def noop_task(task_id: str, spec: Mapping[str, Any], poll_interval_s: float = 0.25) -> dict[str, Any]:
    """Succeed at once without starting a process (for measuring dispatch, not execution)."""
    _, where = _where()
    return {**succeeded().to_dict(), **where}


def succeeded(duration_s: float = 0.0) -> TaskExecutionResult:
    return TaskExecutionResult(
        returncode=0, success=True, error=None, duration_s=duration_s, cpu_seconds=None, peak_rss_bytes=None,
        mean_cpu_percent=None, peak_cpu_percent=None, read_bytes=None, write_bytes=None,
        gpu_memory_peak_bytes=None, timed_out=False, cancelled=False, stdout_tail="", stderr_tail="",
        num_samples=0)


async def cancel_tasks(task_ids: list[str], dask_worker: Any = None) -> list[str]:
    """``client.run`` target: cancel these fleet tasks on this worker; returns those running here.

    A coroutine, so it runs on the worker's event loop: setting a task's stop event takes no
    thread, and ``run_task`` stops the task's process tree at its next poll. (Dask runs a plain
    function with ``wait=False`` nowhere: "Combination not supported".)"""
    from fleet_hwmon.cluster.plugin import get_plugin

    plugin = get_plugin(dask_worker)
    if plugin is None:
        return []
    return [t for t in task_ids if plugin.cancel(t)]


def pause_sampling(dask_worker: Any = None) -> bool:
    """``client.run`` target: stop publishing new samples on this worker (it will turn stale)."""
    from fleet_hwmon.cluster.plugin import get_plugin

    plugin = get_plugin(dask_worker)
    if plugin is not None:
        plugin.pause()
    return plugin is not None


def resume_sampling(dask_worker: Any = None) -> bool:
    """``client.run`` target: publish samples again."""
    from fleet_hwmon.cluster.plugin import get_plugin

    plugin = get_plugin(dask_worker)
    if plugin is not None:
        plugin.resume()
    return plugin is not None


class _ShutdownHeartbeatFilter(logging.Filter):
    """Drops the Dask worker's heartbeat error. While its cluster closes, a heartbeat in flight
    when the scheduler removes the worker finds its connection closed: a race of Dask's own
    shutdown, which loses nothing but prints a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_HEARTBEAT_ERROR)


async def expect_shutdown(dask_worker: Any = None) -> bool:
    """``client.run`` target, sent just before the coordinator closes a cluster it started: from
    now on this worker's failed heartbeats are expected and not logged (a coroutine, so it runs
    on the worker's event loop at once)."""
    worker_log = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _ShutdownHeartbeatFilter) for f in worker_log.filters):
        worker_log.addFilter(_ShutdownHeartbeatFilter())
    return True
