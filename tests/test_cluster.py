"""The Dask backend with real worker processes on loopback (``LocalCluster``).

The cluster tests are skipped when Dask distributed is not installed (the ``cluster`` extra);
the last test checks the embedded demo without ``distributed`` and runs either way.

Load: every worker here measures the same shared host, so each worker's plugin reads its CPU
and memory from a fixed quiet source (``tests.fakes.fixed_load``, through the workers'
``$FLEET_HWMON_EXTRA_SOURCE``): what other processes do on the machine never decides placement.

Timing: Dask sends a heartbeat every 0.5 s in a cluster of up to 10 workers, so samples reach
the coordinator at most that often; the plugin samples every 0.2 s and the integration's update
interval is 0.5 s, making a worker stale after 3 intervals (1.5 s) without a new sample.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import duckdb
import pytest

from fleet_hwmon.cluster.wire import METRIC_KEY, VERSION, parse_published
from tests.fakes import fixed_load

ROOT = Path(__file__).resolve().parent.parent

try:
    import distributed  # noqa: F401

    HAVE_DISTRIBUTED = True
except ImportError:
    HAVE_DISTRIBUTED = False

pytestmark = pytest.mark.cluster
needs_distributed = pytest.mark.skipif(
    not HAVE_DISTRIBUTED,
    reason="Dask distributed is not installed (pip install '.[cluster]' in the project's folder); "
           "cluster tests skipped")

SAMPLE_INTERVAL_S = 0.2
UPDATE_INTERVAL_S = 0.5  # >= Dask's heartbeat interval (0.5 s up to 10 workers)
STALE_AFTER_S = 3 * UPDATE_INTERVAL_S


def _wait_for(predicate, timeout_s: float, what: str, step_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _task(task_id: str, code: str, **extra) -> dict:
    return {"task_id": task_id, "type": extra.pop("type", "unit"), "priority": 0,
            "requirements": {"hardware": ["cpu"]},
            "spec": {"command": [sys.executable, "-c", code], "timeout_s": 60.0}, **extra}


class Fleet:
    """A LocalCluster, its ClusterCoordinator and an integration writing to ``db_path``."""

    def __init__(self, db_path: str, n_workers: int = 2, *, max_tasks_per_worker: int = 1, max_retries: int = 1,
                 cluster_kwargs: dict | None = None, register_plugin: bool = True,
                 stale_after_intervals: float = 20.0, **coordinator_kwargs):
        from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
        from fleet_hwmon.cluster import ClusterCoordinator, HardwareMetricsPlugin

        self.db_path = db_path
        self.coordinator = ClusterCoordinator.local(
            n_workers, cluster_kwargs={"threads_per_worker": 1, **(cluster_kwargs or {})},
            plugin=HardwareMetricsPlugin(SAMPLE_INTERVAL_S, "basic"), register_plugin=register_plugin,
            watch_interval_s=0.1, max_tasks_per_worker=max_tasks_per_worker, max_retries=max_retries,
            dispatch_interval_s=0.05, **coordinator_kwargs)
        self.client = self.coordinator.client
        # Heartbeats a loaded host delays do not make workers stale (except in the staleness
        # test), and critical-load exclusion is off, so that only what a test is about decides.
        self.integration = CoordinatorHardwareMonitoringIntegration(
            self.coordinator, db_path=db_path, update_interval_seconds=UPDATE_INTERVAL_S,
            hardware_scoring_factors={"critical_percent": 100.0, "recovery_percent": 100.0, "recovery_s": 0.0,
                                      "stale_after_intervals": stale_after_intervals})
        self.integration.initialize()
        self.coordinator.register_sample_callback(self.integration.update_worker_utilization)
        self.coordinator.start()
        assert self.coordinator.wait_for_workers(n_workers, timeout_s=30)

    def pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def close(self) -> None:
        try:
            self.coordinator.stop(timeout_s=10)
            self.integration.shutdown()
        finally:
            self.coordinator.close()

    def query(self, sql: str, *params) -> list[tuple]:
        with duckdb.connect(self.db_path, read_only=True) as con:
            return con.execute(sql, params).fetchall()


@pytest.fixture
def fleet_factory(db_path, monkeypatch):
    from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV

    monkeypatch.setenv(EXTRA_SOURCE_ENV, fixed_load.ENV_VALUE)  # worker processes inherit it
    fleets: list[Fleet] = []

    def make(**kwargs) -> Fleet:
        fleet = Fleet(db_path, **kwargs)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


# -- the wire format (no cluster) ---------------------------------------------------------------
def test_published_record_parsing_and_newness():
    record = {"version": VERSION, "epoch": "e1", "seq": 3, "sample": {"worker_id": "w", "timestamp": 0},
              "capabilities": {"hardware": ["cpu"]}, "process": {"pid": 7}, "paused": False, "interval_s": 0.2}
    published = parse_published({METRIC_KEY: record, "memory": 1})
    assert published is not None and published.ready and published.process == {"pid": 7}
    assert published.is_newer_than(None) and published.is_newer_than(("e1", 2))
    assert not published.is_newer_than(("e1", 3))
    assert published.is_newer_than(("e0", 99))  # a restarted plugin counts again from 0
    assert parse_published({"memory": 1}) is None
    assert parse_published({METRIC_KEY: {**record, "version": VERSION + 1}}) is None
    assert not parse_published({METRIC_KEY: {**record, "sample": None}}).ready


# -- real clusters --------------------------------------------------------------------------------
@needs_distributed
def test_each_worker_publishes_its_own_samples_and_runs_what_it_was_sent(fleet_factory):
    fleet = fleet_factory(n_workers=2, max_tasks_per_worker=1)
    coordinator, integration = fleet.coordinator, fleet.integration
    pids = fleet.pids()
    assert set(coordinator.workers) == set(pids) and len(set(pids.values())) == 2

    def two_samples_each():
        return all(len(integration.worker_monitors[w].get_historical_metrics()) >= 2 for w in pids)

    _wait_for(two_samples_each, 10, "two samples from every worker")
    for address, pid in pids.items():
        latest = integration.get_worker_utilization(address)
        assert latest.worker_id == address and latest.memory_total_bytes > 0
        process = coordinator.worker_process(address)  # the worker process's own figures
        assert process["pid"] == pid and process["rss_bytes"] > 0
        info = coordinator.workers[address]
        assert "cpu" in info["capabilities"]["hardware"] and info["pid"] == pid
        assert info["hardware_capabilities"].worker_id == address

    for i in range(4):
        coordinator.submit_task(_task(f"where-{i}", "import os; print(os.getppid())"))
    assert coordinator.wait_until_done(30)
    used = set()
    for task_id, record in coordinator.tasks.items():
        assert record.status == "completed", record.error
        placement = coordinator.placement(task_id)
        assert placement["worker_address"] == record.worker_id == placement["assigned_worker"]
        assert placement["worker_pid"] == pids[record.worker_id]
        assert int(record.result.stdout_tail.strip()) == pids[record.worker_id]  # the task's parent
        used.add(record.worker_id)
    assert used == set(pids)  # one slot per worker: both were used
    stats = integration.scheduler_statistics()
    # exactly one placement per task (a loaded host may add "no worker" decisions while workers look stale)
    assert stats["tasks_succeeded"] == 4 and stats["decisions"] - stats["no_worker"] == 4

    fleet.close()  # flushes the database; the coordinator process was its only writer
    per_worker = dict(fleet.query("SELECT worker_id, count(*) FROM resource_utilization GROUP BY 1"))
    assert set(per_worker) == set(pids) and min(per_worker.values()) >= 2
    tasks = fleet.query("SELECT task_id, worker_id, success FROM task_resource_usage ORDER BY task_id")
    assert [(t, w) for t, w, _ in tasks] == [(t, coordinator.tasks[t].worker_id) for t in sorted(coordinator.tasks)]
    assert {w for (w,) in fleet.query("SELECT worker_id FROM hardware_capabilities")} == set(pids)


@needs_distributed
@pytest.mark.parametrize("max_retries", [1, 0])
def test_worker_killed_mid_task_is_deregistered_and_its_task_requeued_or_failed(fleet_factory, max_retries):
    fleet = fleet_factory(n_workers=2, max_tasks_per_worker=1, max_retries=max_retries)
    coordinator, integration = fleet.coordinator, fleet.integration
    pids = fleet.pids()
    coordinator.submit_task(_task("long", "import time; time.sleep(8)"))  # outlives a slow start
    record = coordinator.tasks["long"]
    victim = _wait_for(lambda: record.worker_id if record.status == "running" else None, 10, "the task to start")

    def running_on_victim():  # the worker's own sample lists the task: it really runs there
        latest = integration.get_worker_utilization(victim)
        return latest is not None and "long" in latest.task_ids

    _wait_for(running_on_victim, 10, "the worker to report the running task")
    os.kill(pids[victim], signal.SIGKILL)

    _wait_for(lambda: victim not in coordinator.workers, 10, "the dead worker to be deregistered")
    assert coordinator.wait_until_done(60)
    if max_retries:
        assert record.status == "completed" and record.attempts == 2 and record.worker_id != victim
        assert coordinator.placement("long")["worker_address"] != victim
    else:
        assert record.status == "failed" and record.attempts == 1
        assert victim in record.error and "left the cluster" in record.error
    assert integration.scheduler_statistics()["tasks_failed"] >= 1  # the lost attempt is on record

    fleet.close()
    rows = fleet.query("SELECT worker_id, success, error FROM task_resource_usage WHERE task_id = 'long' "
                       "ORDER BY end_time")
    assert rows[0][0] == victim and rows[0][1] is False and "left" in rows[0][2]
    assert len(rows) == 1 + max_retries and (not max_retries or rows[1][1] is True)
    assert fleet.query("SELECT count(*) FROM resource_utilization WHERE worker_id = ?", victim)[0][0] >= 1


@needs_distributed
def test_worker_added_during_the_run_is_registered_and_used(fleet_factory):
    fleet = fleet_factory(n_workers=2, max_tasks_per_worker=1)
    coordinator = fleet.coordinator
    before = set(coordinator.workers)
    coordinator.cluster.scale(3)
    assert coordinator.wait_for_workers(3, timeout_s=30)
    (late,) = set(coordinator.workers) - before
    for i in range(3):
        coordinator.submit_task(_task(f"late-{i}", "import time; time.sleep(0.5)"))
    assert coordinator.wait_until_done(30)
    assert late in {r.worker_id for r in coordinator.tasks.values()}
    assert all(r.status == "completed" for r in coordinator.tasks.values())


@needs_distributed
def test_worker_whose_samples_stop_turns_stale_and_is_not_scheduled(fleet_factory):
    from fleet_hwmon.cluster.remote import pause_sampling, resume_sampling

    fleet = fleet_factory(n_workers=2, max_tasks_per_worker=2, stale_after_intervals=STALE_AFTER_S / UPDATE_INTERVAL_S)
    coordinator, integration = fleet.coordinator, fleet.integration
    quiet, busy = sorted(coordinator.workers)
    fleet.client.run(pause_sampling, workers=[quiet])
    paused_at = time.monotonic()
    stale = _wait_for(lambda: integration._worker_snapshot()[quiet]["stale"], STALE_AFTER_S + 5, "staleness")
    # not before the window (less the age the last sample already had, up to a heartbeat and a poll)
    assert time.monotonic() - paused_at >= STALE_AFTER_S - 2 * UPDATE_INTERVAL_S
    assert "stale" in stale and integration._worker_snapshot()[busy]["stale"] is None
    assert quiet in coordinator.workers  # still in the cluster, just not schedulable

    for i in range(4):
        coordinator.submit_task(_task(f"fresh-{i}", "pass"))
    assert coordinator.wait_until_done(30)
    assert {r.worker_id for r in coordinator.tasks.values()} == {busy}
    decisions = [d for d in integration.recent_decisions() if d.task_id.startswith("fresh-")]
    assert decisions and all(any(e.worker_id == quiet and "stale" in e.reason for e in d.exclusions)
                             for d in decisions)

    fleet.client.run(resume_sampling, workers=[quiet])
    _wait_for(lambda: integration._worker_snapshot()[quiet]["stale"] is None, 10, "fresh samples again")


@needs_distributed
@pytest.mark.parametrize("register_plugin", [False, True])
def test_workers_started_with_the_preload_keep_their_plugin_and_options(fleet_factory, register_plugin):
    preload = {"preload": ["fleet_hwmon.cluster.preload"],
               "preload_argv": ["--hwmon-interval", "0.3", "--hwmon-level", "basic"]}
    fleet = fleet_factory(n_workers=2, register_plugin=register_plugin, cluster_kwargs=preload)
    coordinator = fleet.coordinator
    registered = fleet.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert "fleet-hwmon" not in registered  # at most the installer, which adds it only where absent
    assert ("fleet-hwmon-installer" in registered) == register_plugin
    intervals = fleet.client.run(lambda dask_worker: dask_worker.plugins["fleet-hwmon"].interval_s)
    assert set(intervals) == set(coordinator.workers) and set(intervals.values()) == {0.3}
    coordinator.submit_task(_task("preloaded", "pass"))
    assert coordinator.wait_until_done(30) and coordinator.tasks["preloaded"].status == "completed"


@needs_distributed
def test_stop_cancels_a_running_task_and_kills_its_process_tree(fleet_factory, tmp_path):
    fleet = fleet_factory(n_workers=1, max_tasks_per_worker=1)
    coordinator = fleet.coordinator
    pids_file = tmp_path / "pids"
    code = ("import os, subprocess, sys, time; child = subprocess.Popen(['sleep', '25']); "
            f"open({str(pids_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}'); time.sleep(25)")
    coordinator.submit_task(_task("sleeper", code))
    pids = [int(p) for p in _wait_for(lambda: pids_file.is_file() and pids_file.read_text().split(), 20,
                                      "the task and its child to start")]
    started = time.monotonic()
    coordinator.stop(cancel_running=True, timeout_s=20)
    stopped_s = time.monotonic() - started
    record = coordinator.tasks["sleeper"]
    assert record.status == "cancelled" and record.result.cancelled, (record.status, record.error)
    assert "cancelled" in record.error and coordinator.counts()["cancelled"] == 1
    # The worker stopped the tree at its next poll, far from the task's 25 s: SIGTERM, then
    # SIGKILL after the grace period, under a loaded host's scheduling delays.
    assert stopped_s < 15, stopped_s
    assert not [p for p in pids if _alive(p)]
    fleet.close()
    (row,) = fleet.query("SELECT success, error FROM task_resource_usage WHERE task_id = 'sleeper'")
    assert row[0] is False and "cancelled" in row[1]


def _fails_on_odd_numbers(task_id: str, spec: dict, poll_interval_s: float) -> dict:
    from fleet_hwmon.cluster.remote import noop_task

    if int(task_id.rsplit("-", 1)[1]) % 2:
        raise ValueError(f"{task_id} is odd")
    return noop_task(task_id, spec, poll_interval_s)


@needs_distributed
def test_results_and_remote_errors_gathered_together_each_reach_their_task(fleet_factory):
    fleet = fleet_factory(n_workers=2, max_tasks_per_worker=20, task_function=_fails_on_odd_numbers)
    coordinator = fleet.coordinator
    for i in range(20):
        coordinator.submit_task(_task(f"n-{i}", "pass"))
    assert coordinator.wait_until_done(60)
    for i in range(20):
        record = coordinator.tasks[f"n-{i}"]
        if i % 2:
            assert record.status == "failed" and f"ValueError: n-{i} is odd" in record.error, record.error
        else:
            assert record.status == "completed" and coordinator.placement(f"n-{i}")["worker_address"] == \
                record.worker_id


def _reaching_a_handler(logger_name: str, emit: Callable[[logging.Logger], None]) -> list[logging.LogRecord]:
    """The ERROR records that ``emit`` logs on ``logger_name`` and that reach a handler there
    (its filters passed)."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = seen.append
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return seen


def _heartbeat_error_shown(dask_worker=None) -> bool:
    """On a worker: does Dask's heartbeat error still reach a handler of ``distributed.worker``?"""

    def emit(worker_log: logging.Logger) -> None:
        worker_log.error("Failed to communicate with scheduler during heartbeat.")
        worker_log.error("another worker error")

    seen = _reaching_a_handler("distributed.worker", emit)
    assert [r.getMessage() for r in seen][-1] == "another worker error"  # other errors always show
    return len(seen) == 2


@needs_distributed
def test_closing_a_cluster_it_started_tells_its_workers_a_failed_heartbeat_is_expected(fleet_factory, monkeypatch):
    """A heartbeat in flight as the scheduler removes its worker fails with a traceback on the
    worker's stderr (a race in Dask's shutdown). Before closing a cluster it started, the
    coordinator tells every worker to expect it; until then the error shows."""
    from fleet_hwmon.cluster.remote import expect_shutdown

    fleet = fleet_factory(n_workers=2)
    client = fleet.client
    assert all(client.run(_heartbeat_error_shown).values())
    sent = []
    real_run = type(client).run
    monkeypatch.setattr(type(client), "run", lambda self, function, *args, **kwargs: (
        sent.append(function), real_run(self, function, *args, **kwargs))[1])
    workers = list(client.scheduler_info()["workers"])
    client.run(expect_shutdown)
    assert client.run(_heartbeat_error_shown) == {w: False for w in workers}
    fleet.close()
    assert sent.count(expect_shutdown) == 2  # once above, once by close()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the embedded demo without distributed --------------------------------------------------------
def test_embedded_demo_works_when_distributed_cannot_be_imported(tmp_path):
    script = f"""
import json, sys
sys.modules["distributed"] = None  # import distributed -> ImportError
sys.path.insert(0, {str(ROOT)!r})
import run_coordinator_with_hardware_monitoring as demo
import fleet_hwmon.cluster as cluster
try:
    cluster.ClusterCoordinator
    missing = None
except cluster.ClusterUnavailableError as err:
    missing = str(err)
base = ["--num-tasks", "1", "--num-workers", "1", "--quiet", "--duration", "60",
        "--report", {str(tmp_path / "r.html")!r}]
rc = demo.main(base + ["--db-path", {str(tmp_path / "embedded.duckdb")!r}])
rc_cluster = demo.main(base + ["--db-path", {str(tmp_path / "cluster.duckdb")!r}, "--cluster", "local"])
print(json.dumps({{"rc": rc, "rc_cluster": rc_cluster, "missing": missing,
                  "loaded": "fleet_hwmon.cluster.coordinator" in sys.modules}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0  # the embedded demo ran
    assert "1 tasks completed" in proc.stdout
    assert result["rc_cluster"] == 2 and not result["loaded"]
    assert "pip install '.[cluster]' in the project's folder" in result["missing"]
    assert "pip install '.[cluster]' in the project's folder" in proc.stderr


@needs_distributed
def test_a_message_the_client_could_not_send_to_a_lost_scheduler_logs_no_traceback(fleet_factory):
    """A task submitted as the scheduler goes away makes tornado log the Dask client's
    CommClosedError with a traceback; the coordinator reports the lost scheduler itself, so from
    connect() to close() that record is dropped, and every other one shows."""
    from distributed.comm.core import CommClosedError

    def logged(error: Exception) -> bool:
        def emit(tornado_log: logging.Logger) -> None:
            try:
                raise error
            except Exception:
                tornado_log.exception("Exception in callback")

        return bool(_reaching_a_handler("tornado.application", emit))

    fleet = fleet_factory(n_workers=1)
    assert not logged(CommClosedError("Comm <TCP (closed) Client->Scheduler> already closed."))
    assert logged(ValueError("another callback error"))
    fleet.coordinator.close()
    assert logged(CommClosedError("Comm <TCP (closed) Client->Scheduler> already closed."))
