"""The integration against a coordinator written to the framework's own contract
(``tests/framework_coordinator.py``): heartbeat metrics as the only source of samples,
``"idle"`` / ``"busy"`` statuses, a dict of available workers, and no worker callbacks.

The first tests move an injected clock and call ``ingest_heartbeats()`` (what the integration's
thread does each update interval) so every step is exact; the last one runs it all for real."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime, timezone

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.scheduling import CoordinatorContractError
from fleet_hwmon.scheduling.heartbeats import HeartbeatReader, sample_from_heartbeat
from fleet_hwmon.store import close_store, open_store
from tests.framework_coordinator import FrameworkCoordinator
from tests.test_coordinator_integration import FakeClock, cpu_caps, gpu_caps

GIB = 1024**3


def cpu_task(task_id: str) -> dict:
    return {"task_id": task_id, "type": "unit", "priority": 1, "requirements": {"hardware": ["cpu"]}}


def gpu_task(task_id: str) -> dict:
    return {"task_id": task_id, "type": "training", "priority": 1, "requirements": {"hardware": ["gpu"]}}


@pytest.fixture
def fleet(db_path):
    """A framework coordinator with two CPU workers and one GPU worker, each with one heartbeat,
    and the integration on top (injected clock, samples only from heartbeats)."""
    coordinator = FrameworkCoordinator(max_tasks_per_worker=2)
    coordinator.register_worker("cpu-a", cpu_caps(memory_gb=16))
    coordinator.register_worker("cpu-b", cpu_caps(memory_gb=16))
    coordinator.register_worker("gpu-a", gpu_caps())
    coordinator.handle_heartbeat("cpu-a", cpu_percent=35.0, memory_percent=50.0, disk_percent=42.0)
    coordinator.handle_heartbeat("cpu-b", cpu_percent=20.0, memory_percent=30.0)
    coordinator.handle_heartbeat("gpu-a", cpu_percent=60.0, memory_percent=20.0, gpu_percent=80.0)
    clock = FakeClock()
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=clock,
                                                           detect_capabilities=False)
    integration.initialize()  # reads the heartbeats already there
    yield coordinator, integration, clock
    integration.shutdown()


def test_sample_from_heartbeat_exact():
    metrics = {"cpu_percent": 35.0, "memory_percent": 25.0, "gpu_percent": "80", "disk_percent": None,
               "updated": "2026-03-01T10:15:02"}
    assert sample_from_heartbeat("w", metrics, gpu_caps(memory_gb=80) | {"memory": {"total_gb": 64}}) == {
        "worker_id": "w", "timestamp": "2026-03-01T10:15:02", "cpu_percent": 35.0, "memory_percent": 25.0,
        "gpus": [{"index": 0, "uuid": "w/gpu0", "name": "NVIDIA A100-SXM4-80GB", "utilization_percent": "80"}],
        "memory_total_bytes": 64 * GIB, "memory_available_bytes": 48 * GIB}
    # Unknown stays unknown: no capabilities, no memory total; nothing made up.
    assert sample_from_heartbeat("w", {"cpu_percent": 5, "updated": 1}) == {
        "worker_id": "w", "timestamp": 1, "cpu_percent": 5}


def test_reader_yields_only_newer_heartbeats():
    reader = HeartbeatReader()
    read_at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    workers = {"a": {"hardware_metrics": {"cpu_percent": 1.0, "updated": 100.0}},
               "b": {"hardware_metrics": {}}, "c": {"status": "idle"},
               "d": {"hardware_metrics": {"cpu_percent": 7.0}}}
    assert [(w, s["timestamp"]) for w, s in reader.new_samples(workers, read_at)] == [("a", 100.0), ("d", read_at)]
    assert list(reader.new_samples(workers, read_at)) == []
    workers["a"]["hardware_metrics"] = {"cpu_percent": 1.0, "updated": 105.0}  # same figure, newer
    workers["d"]["hardware_metrics"] = {"cpu_percent": 8.0}  # undated: new because it changed
    assert [w for w, _ in reader.new_samples(workers, read_at)] == ["a", "d"]


def test_heartbeat_metrics_are_samples_of_their_worker(fleet, db_path):
    coordinator, integration, _ = fleet
    sent = datetime.fromisoformat(coordinator.workers["cpu-a"]["hardware_metrics"]["updated"])
    latest = integration.get_worker_utilization("cpu-a")
    assert (latest.timestamp, latest.cpu_percent, latest.memory_percent, latest.disk_usage_percent) == \
        (sent, 35.0, 50.0, 42.0)
    assert (latest.memory_total_bytes, latest.memory_available_bytes) == (16 * GIB, 8 * GIB)
    assert latest.gpus == ()  # no gpu_percent sent: no GPU figure at all
    gpu = integration.get_worker_utilization("gpu-a")
    assert gpu.gpu_utilization_percent == 80.0 and gpu.gpus[0].name == "NVIDIA A100-SXM4-80GB"
    assert integration.ingest_heartbeats() == 0  # nothing newer
    coordinator.handle_heartbeat("cpu-a", cpu_percent=60.0, memory_percent=50.0)
    assert integration.ingest_heartbeats() == 1
    assert integration.get_worker_utilization("cpu-a").cpu_percent == 60.0
    integration.shutdown()
    store = open_store(db_path)
    try:
        rows = store.query_dicts("SELECT cpu_percent FROM resource_utilization WHERE worker_id = 'cpu-a' "
                                 "ORDER BY timestamp")
    finally:
        close_store(store)
    assert [r["cpu_percent"] for r in rows] == [35.0, 60.0]


def test_placement_from_heartbeats_alone(fleet):
    coordinator, integration, _ = fleet
    # The scheduler's own favourite: cpu-a (its record is better). Its heartbeat says 97 % CPU.
    coordinator.task_scheduler.update_worker_performance("cpu-a", {"success": True})
    coordinator.handle_heartbeat("cpu-a", cpu_percent=97.0, memory_percent=50.0)
    integration.ingest_heartbeats()
    assert coordinator.assign([cpu_task("t1")]) == {"t1": "cpu-b"}
    decision = integration.recent_decisions()[-1]
    assert decision.original_worker_id == "cpu-a"
    assert "original choice cpu-a scored lower after penalties" in decision.explanation
    # cpu-a's load is its two heartbeats smoothed (35 then 97 %) plus the task's default 1 of 8 cores.
    alpha = integration.hardware_scoring_factors["ewma_alpha"]
    hot = {c.worker_id: c for c in decision.candidates}["cpu-a"]
    assert hot.cpu_percent == pytest.approx(35.0 + alpha * (97.0 - 35.0) + 12.5) and hot.cpu_penalty > 0


def test_stopped_heartbeats_turn_stale_and_a_new_one_readmits(fleet):
    coordinator, integration, clock = fleet
    clock.advance(16.0)  # three 5 s update intervals and more without a newer heartbeat
    coordinator.handle_heartbeat("cpu-a", cpu_percent=35.0, memory_percent=50.0)
    assert integration.ingest_heartbeats() == 1
    assert coordinator.assign([cpu_task("t1")]) == {"t1": "cpu-a"}
    reasons = {e.worker_id: e.reason for e in integration.recent_decisions()[-1].exclusions}
    assert reasons == {"cpu-b": "stale: last sample 16 s ago (limit 15 s)",
                       "gpu-a": "stale: last sample 16 s ago (limit 15 s)"}
    coordinator.handle_heartbeat("cpu-b", cpu_percent=20.0, memory_percent=30.0)
    assert integration.ingest_heartbeats() == 1
    assert coordinator.assign([cpu_task("t2")]) == {"t2": "cpu-b"}
    assert [e.worker_id for e in integration.recent_decisions()[-1].exclusions] == ["gpu-a"]


def test_idle_is_available_and_busy_is_at_its_task_limit(fleet):
    coordinator, integration, _ = fleet
    workers = coordinator.workers
    workers["cpu-b"]["status"] = "busy"
    scheduler = coordinator.task_scheduler
    choice = asyncio.run(scheduler.find_best_worker_for_task(cpu_task("t1"), dict(workers), {}))
    assert choice[0] == "cpu-a"
    decision = integration.recent_decisions()[-1]
    assert [(e.worker_id, e.reason) for e in decision.exclusions] == [("cpu-b", "at task limit (status busy)")]
    assert integration.scheduler_statistics()["exclusions_by_kind"]["task_limit"] == 1


def test_a_malformed_heartbeat_is_skipped_with_a_warning(fleet, caplog):
    coordinator, integration, _ = fleet
    coordinator.workers["cpu-a"]["hardware_metrics"] = {"cpu_percent": 99.0, "updated": "yesterday"}
    coordinator.handle_heartbeat("cpu-b", cpu_percent=21.0, memory_percent=30.0)
    with caplog.at_level(logging.WARNING):
        assert integration.ingest_heartbeats() == 1
    assert integration.get_worker_utilization("cpu-a").cpu_percent == 35.0
    assert integration.get_worker_utilization("cpu-b").cpu_percent == 21.0
    assert "heartbeat metrics of worker cpu-a skipped" in caplog.text and "yesterday" in caplog.text


def test_workers_joining_later_are_monitored_and_views_written_back(db_path):
    coordinator = FrameworkCoordinator()
    coordinator.register_worker("w1", cpu_caps())
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock(),
                                                           detect_capabilities=False, write_back_utilization=True)
    with integration:
        assert coordinator.workers["w1"]["hardware_utilization"]["cpu_percent"] is None  # nothing reported yet
        coordinator.register_worker("w2", cpu_caps())
        coordinator.handle_heartbeat("w2", cpu_percent=40.0, memory_percent=30.0)
        sent = dict(coordinator.workers["w2"]["hardware_metrics"])
        assert integration.ingest_heartbeats() == 1
        ingested = datetime.now(timezone.utc)
        assert sorted(integration.worker_monitors) == ["w1", "w2"]
        written = dict(coordinator.workers["w2"]["hardware_utilization"])
        # The time is the heartbeat's, mapped onto the coordinator's clock: with one heartbeat
        # its transit delay counts as clock offset, so on a loaded host it may move up to arrival.
        assert datetime.fromisoformat(sent["updated"]) <= datetime.fromisoformat(written.pop("updated")) <= ingested
        assert written == {"cpu_percent": 40.0, "memory_percent": 30.0, "gpu_percent": None, "excluded_reason": None}
        assert coordinator.workers["w2"]["hardware_metrics"] == sent  # the worker's own figures untouched


class Heartbeats:
    """Each worker of the coordinator sends its fixed figures every ``every_s``, on a thread."""

    def __init__(self, coordinator: FrameworkCoordinator, figures: dict[str, dict], every_s: float = 0.1) -> None:
        self._stop = threading.Event()

        def beat() -> None:
            while True:
                for worker_id, metrics in figures.items():
                    coordinator.handle_heartbeat(worker_id, **metrics)
                if self._stop.wait(every_s):
                    return
        self._thread = threading.Thread(target=beat, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_framework_coordinator_end_to_end(db_path):
    """Real threads and clocks: the workers' heartbeats are the only source of load; hot-cpu
    (the scheduler's favourite by record) is overloaded and gpu-hot's GPU is busy, so the tasks
    go elsewhere; after shutdown the scheduler is its own again."""
    coordinator = FrameworkCoordinator(max_tasks_per_worker=2)
    for worker_id in ("hot-cpu", "cool-1", "cool-2"):
        coordinator.register_worker(worker_id, cpu_caps())
    for worker_id in ("gpu-hot", "gpu-cool"):
        coordinator.register_worker(worker_id, gpu_caps())
    scheduler = coordinator.task_scheduler
    for worker_id in ("hot-cpu", "gpu-hot"):
        scheduler.update_worker_performance(worker_id, {"success": True})
    heartbeats = Heartbeats(coordinator, {
        "hot-cpu": {"cpu_percent": 98.0, "memory_percent": 60.0},
        "cool-1": {"cpu_percent": 15.0, "memory_percent": 30.0},
        "cool-2": {"cpu_percent": 25.0, "memory_percent": 30.0},
        "gpu-hot": {"cpu_percent": 20.0, "memory_percent": 30.0, "gpu_percent": 90.0},
        "gpu-cool": {"cpu_percent": 20.0, "memory_percent": 30.0, "gpu_percent": 5.0}})
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, update_interval_seconds=1.0,
                                                           detect_capabilities=False)
    try:
        original = scheduler.find_best_worker_for_task
        integration.initialize()
        assert scheduler.find_best_worker_for_task is not original
        deadline = time.monotonic() + 30
        while None in integration.get_worker_utilization().values():  # the thread reads them each second
            assert time.monotonic() < deadline, "the heartbeats did not become samples"
            time.sleep(0.05)
        placed = coordinator.assign([cpu_task("c1"), cpu_task("c2"), gpu_task("g1"), cpu_task("c3")])
        assert placed["g1"] == "gpu-cool"
        assert "hot-cpu" not in placed.values() and None not in placed.values()
        for task_id in placed:
            coordinator.complete_task(task_id)
    finally:
        integration.shutdown()
        heartbeats.stop()
    assert "find_best_worker_for_task" not in vars(scheduler)
    assert coordinator.assign([cpu_task("after")]) == {"after": "hot-cpu"}  # the original, blind to load


def test_max_tasks_per_worker_read_from_a_config_file(db_path):
    coordinator = FrameworkCoordinator()
    coordinator.register_worker("w1", cpu_caps())
    coordinator.register_worker("w2", cpu_caps())
    coordinator.max_tasks_per_worker = "2"  # as a config file gives it
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock(),
                                                  detect_capabilities=False) as integration:
        decision = integration.decide_task(cpu_task("t1"), dict(coordinator.workers), {"w1": 2, "w2": 1})
        assert decision.chosen_worker_id == "w2"
        assert [(e.worker_id, e.reason) for e in decision.exclusions] == [("w1", "at task limit (2)")]
    coordinator.max_tasks_per_worker = "two"
    with pytest.raises(CoordinatorContractError,
                       match="FrameworkCoordinator.max_tasks_per_worker must be a whole number of tasks, got 'two'"):
        CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path).initialize()


def test_unknown_task_requirement_keys_are_a_clear_error(fleet):
    coordinator, integration, _ = fleet
    task = {"task_id": "t1", "type": "unit", "requirements": {"hardware_type": "gpu"}}
    with pytest.raises(ValueError, match="task 't1': unknown requirement\\(s\\) hardware_type \\(did you mean "
                                         "'hardware'\\?\\); known: hardware, min_memory_gb, min_cuda_compute, "
                                         "min_gpu_memory_gb, device, vendor, precision, allow_software, isolation"):
        coordinator.assign([task])
    assert coordinator.assign([cpu_task("t2")])["t2"] is not None  # the next task is placed as usual


# -- a peer framework's own coordinator, written to the contract with its own habits --------------
class MinimalScheduler:
    """Least loaded; honours ``exclude``, an argument beyond the contract's three."""

    def find_best_worker_for_task(self, task, available_workers, worker_task_count, exclude=()):
        ids = [w for w in available_workers if w not in exclude]
        return (min(ids, key=lambda w: worker_task_count.get(w, 0)), 1.0) if ids else (None, 0.0)


class MinimalCoordinator:
    """``workers`` and ``task_scheduler`` only: no callbacks, records replaced as it pleases."""

    def __init__(self, workers: dict) -> None:
        self.workers = workers
        self.task_scheduler = MinimalScheduler()


def _worker(caps: dict) -> dict:
    return {"status": "idle", "capabilities": caps}


@pytest.fixture
def minimal(db_path):
    coordinator = MinimalCoordinator({"gpu-a": _worker(gpu_caps()), "cpu-a": _worker(cpu_caps(memory_gb=16))})
    clock = FakeClock()
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=clock,
                                                           detect_capabilities=False).initialize()
    yield coordinator, integration
    integration.shutdown()


def test_a_worker_record_replaced_without_a_callback_has_its_hardware_checked_again(minimal):
    """The worker rebooted without its GPU and the coordinator replaced its record, telling no
    one: from the next heartbeat pass on, no GPU task goes there."""
    coordinator, integration = minimal
    choose = coordinator.task_scheduler.find_best_worker_for_task
    assert choose(gpu_task("t1"), coordinator.workers, {}) == ("gpu-a", 1.0)
    coordinator.workers["gpu-a"] = _worker(cpu_caps(memory_gb=16))
    integration.ingest_heartbeats()
    assert choose(gpu_task("t2"), coordinator.workers, {}) == (None, 0.0)
    assert choose(cpu_task("t3"), coordinator.workers, {})[0] in ("gpu-a", "cpu-a")


def test_arguments_beyond_the_contract_reach_the_original_and_names_work(minimal):
    """Called with an ``exclude`` the scheduler honours, or by its own parameter names, the
    patched method asks the original with every argument: an excluded worker never gets a task."""
    coordinator, _ = minimal
    choose = coordinator.task_scheduler.find_best_worker_for_task
    picks = [choose(cpu_task(f"x{i}"), coordinator.workers, {}, exclude={"cpu-a"})[0] for i in range(3)]
    assert picks == ["gpu-a"] * 3
    assert choose(task=cpu_task("n1"), available_workers={"cpu-a": coordinator.workers["cpu-a"]},
                  worker_task_count={})[0] == "cpu-a"
    with pytest.raises(TypeError):
        choose(cpu_task("n2"), coordinator.workers)  # as the original itself refuses


def test_a_task_without_an_id_is_a_clear_error_not_an_overcommitted_gpu(minimal):
    coordinator, _ = minimal
    choose = coordinator.task_scheduler.find_best_worker_for_task
    for task_id in (None, ""):
        with pytest.raises(ValueError, match="a task needs a task_id"):
            choose({"task_id": task_id, "type": "train", "requirements": {"min_gpu_memory_gb": 60}},
                   coordinator.workers, {})
    with pytest.raises(ValueError, match="a task needs a task_id"):
        choose({"type": "train"}, coordinator.workers, {})


def test_one_malformed_worker_record_does_not_break_decisions_about_the_others(db_path):
    """Figures as strings that are numbers count; those that are not, and capabilities that are
    not a mapping, are unknown: that worker satisfies no stated minimum, the others are decided
    as usual."""
    workers = {"gpu-a": _worker(gpu_caps()), "cpu-a": _worker(cpu_caps(memory_gb=16)),
               "odd": _worker({"hardware": ["cpu", "gpu"], "memory": {"total_gb": "64"},
                               "gpu": {"memory_gb": "eighty", "cuda_compute": "x"}}),
               "text": _worker("gpu")}
    coordinator = MinimalCoordinator(workers)
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock(),
                                                  detect_capabilities=False) as integration:
        choose = coordinator.task_scheduler.find_best_worker_for_task
        big_gpu = {"task_id": "g", "type": "train", "requirements": {"hardware": ["gpu"], "min_gpu_memory_gb": 20}}
        assert choose(big_gpu, ["odd", "text", "gpu-a"], {}) == ("gpu-a", 1.0)
        assert choose({**big_gpu, "task_id": "g2"}, ["odd", "text"], {}) == (None, 0.0)
        needs_memory = {"task_id": "m", "type": "etl", "requirements": {"min_memory_gb": 48}}
        assert choose(needs_memory, ["odd", "cpu-a", "text"], {}) == ("odd", 1.0)  # "64" GB is 64 GB
        reasons = {e.worker_id: e.reason for e in integration.scheduler.recent_decisions()[-1].exclusions}
        assert reasons["text"] == "its capabilities are str, not a mapping (the coordinator contract)"


def test_a_heartbeat_time_out_of_range_is_skipped_and_the_others_are_read(db_path, caplog):
    workers = {"w1": {**_worker(cpu_caps(memory_gb=16)), "hardware_metrics": {"cpu_percent": 10, "updated": 1e20}},
               "w2": {**_worker(cpu_caps(memory_gb=16)),
                      "hardware_metrics": {"cpu_percent": 20, "updated": datetime.now(timezone.utc)}}}
    coordinator = MinimalCoordinator(workers)
    with caplog.at_level(logging.WARNING), CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=db_path, detect_capabilities=False) as integration:
        assert integration.get_worker_utilization("w2") is not None
        assert integration.get_worker_utilization("w1") is None
    assert "timestamp 1e+20 is not a time (epoch seconds out of range)" in caplog.text


def test_a_coroutine_method_behind_a_functools_wraps_decorator_is_awaited(db_path):
    import functools

    def logged(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            return method(*args, **kwargs)  # a coroutine, awaited by the caller
        return wrapper

    class AsyncScheduler:
        @logged
        async def find_best_worker_for_task(self, task, available_workers, worker_task_count):
            return (next(iter(available_workers), None), 1.0)

    coordinator = MinimalCoordinator({"cpu-a": _worker(cpu_caps(memory_gb=16))})
    coordinator.task_scheduler = AsyncScheduler()
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock(),
                                                  detect_capabilities=False):
        chosen = asyncio.run(coordinator.task_scheduler.find_best_worker_for_task(cpu_task("a"), ["cpu-a"], {}))
    assert chosen == ("cpu-a", 1.0)


def test_an_initialize_that_fails_halfway_leaves_nothing_open(db_path):
    class BrokenWorkers(dict):
        def items(self):
            raise RuntimeError("the coordinator's worker table is being rebuilt")

    coordinator = MinimalCoordinator(BrokenWorkers(w=_worker(cpu_caps(memory_gb=16))))
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, detect_capabilities=False)
    with pytest.raises(RuntimeError, match="being rebuilt"):
        integration.initialize()
    assert integration._store is None
    assert not [t for t in threading.enumerate() if t.name.startswith("duckdb-writer")]
    assert "find_best_worker_for_task" not in vars(coordinator.task_scheduler)  # not patched


def test_shutdown_then_initialize_again_hooks_once_and_sees_each_sample_once(db_path):
    from fleet_hwmon.coordinator.coordinator import Coordinator

    coordinator = Coordinator(max_tasks_per_worker=2)
    callbacks = {"worker": 0, "task": 0}
    register_worker, register_task = coordinator.register_worker_callback, coordinator.register_task_callback

    def counted(kind, register):
        def wrapper(event, fn):
            callbacks[kind] += 1
            return register(event, fn)
        return wrapper

    coordinator.register_worker_callback = counted("worker", register_worker)
    coordinator.register_task_callback = counted("task", register_task)
    coordinator.register_worker("cpu-a", cpu_caps(memory_gb=16))
    integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, detect_capabilities=False)
    integration.initialize()
    first = dict(callbacks)
    integration.shutdown()
    integration.initialize()
    try:
        assert callbacks == first
        seen = []
        integration.worker_monitors["cpu-a"].add_sample_listener(seen.append)
        integration.update_worker_utilization("cpu-a", {"cpu_percent": 10.0, "memory_percent": 20.0})
        assert len(seen) == 1
        assert integration.worker_monitors["cpu-a"]._sample_listeners.count(integration._observe) == 1
    finally:
        integration.shutdown()


@pytest.mark.parametrize("order", ["first started, first shut down", "last started, first shut down"])
def test_two_integrations_on_one_coordinator_leave_the_method_as_it_was(tmp_path, order):
    coordinator = MinimalCoordinator({"cpu-a": _worker(cpu_caps(memory_gb=16))})
    first = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "a.duckdb"),
                                                     detect_capabilities=False).initialize()
    second = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "b.duckdb"),
                                                      detect_capabilities=False).initialize()
    for integration in ((first, second) if order.startswith("first") else (second, first)):
        integration.shutdown()
        assert coordinator.task_scheduler.find_best_worker_for_task(cpu_task("t"), ["cpu-a"], {}) == ("cpu-a", 1.0)
    assert "find_best_worker_for_task" not in vars(coordinator.task_scheduler)  # the class's own method again
