"""The reference coordinator: queue order, task limits, validation, workers that come and go.

Tasks run for real (short subprocesses). Where the order of events matters the tests drive
``dispatch_once`` themselves instead of the dispatch thread, so nothing depends on timing.
"""

from __future__ import annotations

import sys
import threading

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.execution import TaskSpec, workloads
from fleet_hwmon.store import close_store, open_store

CPU = {"hardware": ["cpu"], "memory": {"total_gb": 16}, "cpu": {"cores_effective": 8}}
GPU = {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64},
       "gpu": {"name": "Tesla T4", "cuda_compute": 7.5, "memory_gb": 16}}

# Sleeps a minute on its first run and exits at once on any later one: the marker file says
# which run this is, so a task cancelled mid-run and started again finishes quickly.
_FIRST_RUN_HANGS = """\
import os, sys, time
marker = sys.argv[1]
first = not os.path.exists(marker)
open(marker, "a").close()
time.sleep(60 if first else 0)
"""


def task(task_id: str, priority: int = 0, spec: TaskSpec | None = None, **requirements) -> dict:
    return {"task_id": task_id, "type": "unit", "priority": priority,
            "requirements": requirements or {"hardware": ["cpu"]}, "spec": spec or workloads.sleep_task(0)}


def wait_for(condition, timeout_s: float = 30.0) -> None:
    """Wait for a condition another thread makes true (not a timing assertion)."""
    event = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        event.wait(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
def coordinator():
    made = []

    def make(**kwargs) -> Coordinator:
        made.append(Coordinator(poll_interval_s=0.05, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.stop(cancel_running=True)


class TestReferenceCoordinator:
    def test_priorities_order_the_queue(self, coordinator):
        c = coordinator(max_tasks_per_worker=1)
        started: list[str] = []
        c.register_task_callback("task_started", lambda t, w: started.append(t["task_id"]))
        for task_id, priority in [("low-1", 0), ("high-1", 5), ("mid-1", 2), ("high-2", 5), ("low-2", 0)]:
            c.submit_task(task(task_id, priority))
        c.register_worker("only", CPU)
        c.start()
        assert c.wait_until_done(timeout_s=60)
        # Higher priority first; equal priorities in the order they were submitted.
        assert started == ["high-1", "high-2", "mid-1", "low-1", "low-2"]
        assert c.counts() == {"queued": 0, "running": 0, "completed": 5, "failed": 0, "cancelled": 0}

    def test_max_tasks_per_worker_respected(self, coordinator):
        c = coordinator(max_tasks_per_worker=2)
        c.register_worker("a", CPU)
        c.register_worker("b", CPU)
        running = {"a": 0, "b": 0}
        peak = {"a": 0, "b": 0}
        lock = threading.Lock()

        def on_assigned(t, w):
            with lock:
                running[w] += 1
                peak[w] = max(peak[w], running[w])

        def on_finished(t, w, outcome):
            with lock:
                running[w] -= 1

        c.register_task_callback("task_assigned", on_assigned)
        c.register_task_callback("task_finished", on_finished)
        for n in range(8):
            c.submit_task(task(f"t{n}", spec=workloads.sleep_task(0.3)))
        assert c.dispatch_once() == 4  # two per worker, the other four wait
        assert c.worker_task_count() == {"a": 2, "b": 2}
        assert c.counts()["queued"] == 4
        assert c.dispatch_once() == 0
        c.start()
        assert c.wait_until_done(timeout_s=60)
        assert peak == {"a": 2, "b": 2}
        assert c.counts()["completed"] == 8

    def test_malformed_task_raises(self, coordinator):
        c = coordinator()
        bad = [
            ("not a dict", "must be a dict"),
            ({"type": "unit", "spec": workloads.sleep_task(0)}, "non-empty string 'task_id'"),
            ({"task_id": "t", "spec": workloads.sleep_task(0), "requirements": ["gpu"]}, "'requirements' must be"),
            ({"task_id": "t", "spec": workloads.sleep_task(0), "requirements": {"min_memory_gb": "lots"}},
             "min_memory_gb must be a number"),
            ({"task_id": "t", "requirements": {}}, "has no 'spec'"),
            ({"task_id": "t", "spec": workloads.sleep_task(0), "priority": "urgent"}, "priority must be an integer"),
        ]
        for item, message in bad:
            with pytest.raises(ValueError, match=message):
                c.submit_task(item)
        c.submit_task(task("t"))
        with pytest.raises(ValueError, match="already submitted"):
            c.submit_task(task("t"))
        assert list(c.tasks) == ["t"]

    def test_task_no_worker_can_run_fails_clearly(self, coordinator):
        c = coordinator()
        c.register_worker("cpu-1", CPU)
        c.register_worker("t4", GPU)
        c.submit_task(task("needs-h100", hardware=["gpu"], min_cuda_compute=9.0))
        c.submit_task(task("fits"))
        assert c.dispatch_once() == 1
        record = c.tasks["needs-h100"]
        assert (record.status, record.worker_id, record.attempts) == ("failed", None, 0)
        assert record.error == "no registered worker has the hardware this task requires"
        assert c.tasks["fits"].status in ("running", "completed")

    def test_worker_deregistered_mid_task_requeues_once(self, coordinator, tmp_path, db_path):
        """The task on a leaving worker is cancelled, requeued once, and completes on another
        worker; the database keeps both attempts and both decisions."""
        c = coordinator(max_retries=1)
        integration = CoordinatorHardwareMonitoringIntegration(c, db_path=db_path, detect_capabilities=False)
        integration.initialize()
        try:
            c.register_worker("leaving", CPU)
            marker = tmp_path / "first-run"
            spec = TaskSpec(command=[sys.executable, "-c", _FIRST_RUN_HANGS, str(marker)], timeout_s=120)
            c.submit_task(task("survivor", spec=spec))
            assert c.dispatch_once() == 1
            assert c.tasks["survivor"].worker_id == "leaving"
            wait_for(marker.exists)  # the first run is under way
            c.register_worker("staying", CPU)
            assert c.deregister_worker("leaving") == ["survivor"]
            c.start()
            assert c.wait_until_done(timeout_s=60)
            record = c.tasks["survivor"]
            assert (record.status, record.worker_id, record.attempts, record.error) == \
                ("completed", "staying", 2, None)
            assert record.result.success and not record.result.cancelled

            store = open_store(db_path)
            try:
                usage = store.query_dicts("SELECT worker_id, success, error FROM task_resource_usage "
                                          "WHERE task_id = 'survivor' ORDER BY start_time")
                decisions = store.query_dicts("SELECT chosen_worker_id FROM scheduling_decisions "
                                              "WHERE task_id = 'survivor' ORDER BY timestamp")
            finally:
                close_store(store)
            assert usage == [{"worker_id": "leaving", "success": False,
                              "error": "worker leaving left while the task ran"},
                             {"worker_id": "staying", "success": True, "error": None}]
            assert decisions == [{"chosen_worker_id": "leaving"}, {"chosen_worker_id": "staying"}]
        finally:
            c.stop()
            integration.shutdown()

    def test_second_departure_fails_the_task(self, coordinator, tmp_path):
        c = coordinator(max_retries=1)
        c.register_worker("first", CPU)
        spec = TaskSpec(command=[sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=120)
        c.submit_task(task("unlucky", spec=spec))
        for worker_id, successor in (("first", "second"), ("second", None)):
            assert c.dispatch_once() == 1 and c.tasks["unlucky"].worker_id == worker_id
            wait_for(lambda: c.tasks["unlucky"].status == "running" and c.tasks["unlucky"].started_at is not None)
            if successor:
                c.register_worker(successor, CPU)
                c.deregister_worker(worker_id)
                wait_for(lambda: c.tasks["unlucky"].status == "queued")
            else:
                c.deregister_worker(worker_id)
        wait_for(lambda: c.tasks["unlucky"].status == "failed")
        assert c.tasks["unlucky"].attempts == 2
        assert c.tasks["unlucky"].error == "worker second deregistered while the task ran"

    def test_stop_cancels_running_tasks_and_outcomes_tell_every_task(self, coordinator, db_path):
        """Stopping mid-run: the running task ends ``cancelled``, the one that never started is
        recorded ``queued`` with the reason of its last refusal, the unplaceable one ``failed``."""
        c = coordinator(max_tasks_per_worker=1)
        integration = CoordinatorHardwareMonitoringIntegration(c, db_path=db_path, detect_capabilities=False)
        integration.initialize()
        try:
            c.register_worker("only", CPU)
            c.submit_task(task("needs-gpu", 2, hardware=["gpu"]))
            c.submit_task(task("running", 1, spec=workloads.sleep_task(60)))
            c.submit_task(task("waiting"))
            assert c.dispatch_once() == 1  # "only" is full after the first task
            wait_for(lambda: c.tasks["running"].started_at is not None)
            c.stop(cancel_running=True)
            assert c.counts() == {"queued": 1, "running": 0, "completed": 0, "failed": 1, "cancelled": 1}
            outcomes = {o.task_id: o for o in c.task_outcomes()}
            assert (outcomes["running"].state, outcomes["running"].worker_id, outcomes["running"].attempts) == \
                ("cancelled", "only", 1)
            assert outcomes["running"].reason == "cancelled: the coordinator stopped"
            assert (outcomes["waiting"].state, outcomes["waiting"].worker_id, outcomes["waiting"].reason) == \
                ("queued", None, None)
            assert outcomes["needs-gpu"].state == "failed" and "hardware" in outcomes["needs-gpu"].reason
            assert integration.record_task_outcomes(outcomes.values()) == 3
            store = open_store(db_path)
            try:
                rows = store.query_dicts("SELECT task_id, state, reason FROM task_outcomes ORDER BY task_id")
            finally:
                close_store(store)
            assert [(r["task_id"], r["state"]) for r in rows] == [
                ("needs-gpu", "failed"), ("running", "cancelled"), ("waiting", "queued")]
        finally:
            integration.shutdown()

    def test_worker_registered_late_gets_tasks(self, coordinator):
        c = coordinator(max_tasks_per_worker=1)
        c.register_worker("early", CPU)
        for n in range(4):  # long enough that early's first task is still running below
            c.submit_task(task(f"t{n}", spec=workloads.sleep_task(0.5)))
        assert c.dispatch_once() == 1
        assert c.dispatch_once() == 0  # early is full
        c.register_worker("late", CPU)
        assert c.dispatch_once() == 1
        assert c.tasks["t1"].worker_id == "late"
        c.start()
        assert c.wait_until_done(timeout_s=60)
        assert c.counts()["completed"] == 4
        assert {r.worker_id for r in c.tasks.values()} == {"early", "late"}

    def test_unknown_event_rejected(self, coordinator):
        c = coordinator()
        with pytest.raises(ValueError, match="unknown event 'worker_joined'"):
            c.register_worker_callback("worker_joined", print)
        with pytest.raises(ValueError, match="at least 1"):
            Coordinator(max_tasks_per_worker=0)

