"""The coordinator integration: monitors per worker, pushed samples, task usage, and the
hardware-aware choice of worker through the coordinator's own (patched) scheduler method.

Scheduling tests feed fixed samples through ``update_worker_utilization`` and move an
injected clock, so staleness and hysteresis are exact and nothing sleeps. Expected scores are
worked out from the default ``hardware_scoring_factors`` in each test's comments.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import html.parser
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.coordinator.scheduler import TaskScheduler
from fleet_hwmon.execution import workloads
from fleet_hwmon.scheduling import CoordinatorContractError
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now
from fleet_hwmon.store import close_store, open_store
from hardware_utilization_monitor import MonitoringLevel, TaskResourceUsage

GIB = 1024**3
XSS_WORKER = "<script>alert(1)</script>"


# -- helpers ----------------------------------------------------------------------------------
class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cpu_caps(cores: int = 8, memory_gb: float = 16) -> dict[str, Any]:
    return {"hardware": ["cpu"], "memory": {"total_gb": memory_gb}, "cpu": {"cores_effective": cores}}


def gpu_caps(name: str = "NVIDIA A100-SXM4-80GB", cuda_compute: float = 8.0, memory_gb: float = 80,
             cores: int = 8) -> dict[str, Any]:
    return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64}, "cpu": {"cores_effective": cores},
            "gpu": {"name": name, "cuda_compute": cuda_compute, "memory_gb": memory_gb}}


def sample(worker_id: str, cpu: float | None = None, memory: float | None = None, gpu: float | None = None, *,
           mig: bool = False, cores: float = 8, memory_gb: float = 16,
           gpu_memory: float | None = None) -> ResourceUtilization:
    """A sample with fixed percents (``None``: not read). ``mig`` adds a GPU whose utilization
    NVML cannot report; ``gpu_memory``: percent of its 80 GiB used."""
    total = int(memory_gb * GIB)
    gpus: tuple[GpuUtilization, ...] = ()
    if gpu is not None or mig or gpu_memory is not None:
        gpu_total = 80 * GIB if gpu_memory is not None else None
        gpus = (GpuUtilization(index=0, uuid=f"GPU-{worker_id}", name="NVIDIA A100-SXM4-80GB",
                               utilization_percent=gpu, mig_enabled=mig or None,
                               unavailable_reason="MIG" if mig else None, memory_total_bytes=gpu_total,
                               memory_used_bytes=None if gpu_total is None else int(gpu_total * gpu_memory / 100)),)
    return ResourceUtilization(
        worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=memory,
        cpu_count_effective=cores, memory_total_bytes=total,
        memory_available_bytes=None if memory is None else int(total * (1 - memory / 100)), gpus=gpus)


def cpu_task(task_id: str, task_type: str = "unit") -> dict[str, Any]:
    return {"task_id": task_id, "type": task_type, "priority": 1, "requirements": {"hardware": ["cpu"]}}


def gpu_task(task_id: str, **requirements: Any) -> dict[str, Any]:
    return {"task_id": task_id, "type": "gpu-training", "priority": 1,
            "requirements": {"hardware": ["gpu"], **requirements}}


def db_rows(db_path: str, sql: str, params: list | tuple = ()) -> list[dict]:
    """Rows read back from the DuckDB file (pending appends flushed first)."""
    store = open_store(db_path)
    try:
        return store.query_dicts(sql, params)
    finally:
        close_store(store)


class Fleet:
    """The reference coordinator (its dispatch loop not started) with the integration on top."""

    def __init__(self, db_path: str, workers: dict[str, dict], *, seed: int = 0, start_s: float = 1000.0,
                 max_tasks_per_worker: int = 100) -> None:
        self.clock = FakeClock(start_s)
        self.coordinator = Coordinator(max_tasks_per_worker=max_tasks_per_worker, seed=seed)
        for worker_id, capabilities in workers.items():
            self.coordinator.register_worker(worker_id, capabilities)
        self.integration = CoordinatorHardwareMonitoringIntegration(
            self.coordinator, db_path=db_path, update_interval_seconds=5.0, seed=seed, clock=self.clock,
            detect_capabilities=False)
        self.integration.initialize()

    def push(self, *samples: ResourceUtilization) -> None:
        for s in samples:
            self.integration.update_worker_utilization(s.worker_id, s)

    def choose(self, task: dict, counts: dict[str, int] | None = None,
               available: list[str] | None = None) -> tuple[str | None, float]:
        """The choice of the coordinator's patched method; the integration's own entry point
        must give the same answer for the same state."""
        available = list(self.coordinator.workers) if available is None else available
        counts = {w: 0 for w in available} if counts is None else counts
        patched = self.coordinator.task_scheduler.find_best_worker_for_task(task, available, counts)
        direct = self.integration._hardware_aware_find_best_worker(task, available, counts)
        assert direct[0] == patched[0]
        assert direct[1] == pytest.approx(patched[1])
        return patched

    def last_decision(self):
        return self.integration.recent_decisions()[-1]

    def close(self) -> None:
        self.integration.shutdown()


@pytest.fixture
def make_fleet(tmp_path):
    fleets: list[Fleet] = []

    def make(workers: dict[str, dict], **kwargs: Any) -> Fleet:
        fleet = Fleet(str(tmp_path / f"fleet-{len(fleets)}.duckdb"), workers, **kwargs)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


# -- minimal coordinators: only what the contract asks for ------------------------------------
def _fewest_tasks(workers: dict, task: dict, available_workers: list[str],
                  worker_task_count: dict[str, int]) -> tuple[str | None, float]:
    needed = set((task.get("requirements") or {}).get("hardware") or [])
    best: tuple[str, float] | None = None
    for worker_id in available_workers:
        if not needed <= set(workers[worker_id]["capabilities"].get("hardware", [])):
            continue
        score = 1.0 / (1 + worker_task_count.get(worker_id, 0))
        if best is None or score > best[1]:
            best = (worker_id, score)
    return best if best is not None else (None, 0.0)


class SyncScheduler:
    def __init__(self, workers: dict) -> None:
        self.workers = workers

    def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        return _fewest_tasks(self.workers, task, available_workers, worker_task_count)


class AsyncScheduler:
    def __init__(self, workers: dict) -> None:
        self.workers = workers

    async def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        await asyncio.sleep(0)
        return _fewest_tasks(self.workers, task, available_workers, worker_task_count)


class ShortNameScheduler:
    def __init__(self, workers: dict) -> None:
        self.workers = workers

    def find_best_worker(self, task, available_workers, worker_task_count):
        return _fewest_tasks(self.workers, task, available_workers, worker_task_count)


class ItemsScheduler:
    """The framework's own habit: ``available_workers`` is a dict worker id -> worker dict,
    iterated with ``.items()``; every call it receives is recorded."""

    def __init__(self, workers: dict) -> None:
        self.workers = workers
        self.calls: list[tuple[Any, Any]] = []

    def choose(self, task, available_workers, worker_task_count):
        self.calls.append((available_workers, worker_task_count))
        needed = set((task.get("requirements") or {}).get("hardware") or [])
        best: tuple[str, float] | None = None
        for worker_id, worker in available_workers.items():
            if needed <= set(worker["capabilities"].get("hardware", [])):
                score = 1.0 / (1 + worker_task_count.get(worker_id, 0))
                if best is None or score > best[1]:
                    best = (worker_id, score)
        return best if best is not None else (None, 0.0)

    def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        return self.choose(task, available_workers, worker_task_count)


class AsyncItemsScheduler(ItemsScheduler):
    async def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        await asyncio.sleep(0)
        return self.choose(task, available_workers, worker_task_count)


class IndexingScheduler(ItemsScheduler):
    """Loops over the ids of a dict and indexes both arguments by id (a missing count raises)."""

    def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        self.calls.append((available_workers, worker_task_count))
        scores = {w: 1.0 / (1 + worker_task_count[w]) for w in available_workers
                  if "cpu" in available_workers[w]["capabilities"]["hardware"]}
        best = max(scores, key=scores.get, default=None)
        return (best, scores[best]) if best is not None else (None, 0.0)


class WorkerDictListScheduler(ItemsScheduler):
    """Takes a list of worker dicts, each naming its ``worker_id``."""

    async def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        self.calls.append((available_workers, worker_task_count))
        best = max(available_workers, key=lambda w: 1.0 / (1 + worker_task_count.get(w["worker_id"], 0)),
                   default=None)
        return (best["worker_id"], 1.0 / (1 + worker_task_count.get(best["worker_id"], 0))) if best else (None, 0.0)


class IdListScheduler(ItemsScheduler):
    """Takes a list of worker ids (the worker dicts come from its own table)."""

    def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        self.calls.append((available_workers, worker_task_count))
        return _fewest_tasks(self.workers, task, available_workers, worker_task_count)


class AsyncIdListScheduler(IdListScheduler):
    async def find_best_worker_for_task(self, task, available_workers, worker_task_count):
        return IdListScheduler.find_best_worker_for_task(self, task, available_workers, worker_task_count)


class MinimalCoordinator:
    def __init__(self, scheduler_cls: type) -> None:
        self.workers = {"w1": {"capabilities": cpu_caps(), "status": "active"},
                        "w2": {"capabilities": cpu_caps(), "status": "active"}}
        self.task_scheduler = scheduler_cls(self.workers)


def _overloaded_first_choice(integration: CoordinatorHardwareMonitoringIntegration) -> None:
    """w1 (no tasks: original score 1.0) at 90 % CPU smoothed (88 then 92), w2 (one task: 0.5)
    at 10 % CPU; both at 30 % memory."""
    for cpu in (88.0, 92.0):
        integration.update_worker_utilization("w1", sample("w1", cpu, 30.0))
    integration.update_worker_utilization("w2", sample("w2", 10.0, 30.0))


# Scores use the load after placing the task; without history a task counts as the default
# 1 core (12.5 % of 8) and 256 MiB (1.5625 % of 16 GiB).
# w1: CPU 90 + 12.5 = 102.5 %: penalty 0.6 * 32.5 / 30 = 0.65 plus 10 * 2.5 / 100 = 0.25 above
#     capacity, balance 0.25 * 1.025 = 0.25625 -> more than 0.95 in all: the floor, 1.0 * 0.05
# w2: CPU 22.5 %, memory 31.5625 % (its busiest): balance 0.25 * 0.315625 -> 0.5 * 0.92109375
W1_ADJUSTED, W2_ADJUSTED = 0.05, 0.460546875
W1_CPU_PENALTY, W1_BALANCE, W2_BALANCE = 0.9, 0.25625, 0.07890625
COUNTS = {"w1": 0, "w2": 1}


class TestCoordinatorHardwareMonitoringIntegration:
    # -- monitors and workers ---------------------------------------------------------------
    def test_worker_monitors_created(self, db_path):
        coordinator = Coordinator()
        coordinator.register_worker("remote-1", cpu_caps())
        coordinator.register_worker("remote-2", gpu_caps())
        coordinator.register_worker("local-1", cpu_caps(), local=True)
        integration = CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=db_path, monitoring_level=MonitoringLevel.BASIC, update_interval_seconds=2.0)
        try:
            integration.initialize()
            assert integration.initialize() is integration  # idempotent
            monitors = integration.worker_monitors
            assert sorted(monitors) == ["local-1", "remote-1", "remote-2"]
            assert monitors["remote-1"].push_only and monitors["remote-2"].push_only
            assert not monitors["local-1"].push_only  # samples this host: the worker runs here
            assert monitors["local-1"].interval_seconds == 2.0
            assert monitors["local-1"].monitoring_level is MonitoringLevel.BASIC
            assert all(m.is_running and m.worker_id == w for w, m in monitors.items())
            assert all(m.db_path == db_path for m in monitors.values())
            # A push-only monitor never measures this host: no sample until one is pushed.
            assert integration.get_worker_utilization("remote-1") is None
        finally:
            integration.shutdown()
        assert not any(m.is_running for m in monitors.values())

    def test_worker_registration_callback(self, db_path):
        coordinator = Coordinator()
        coordinator.register_worker("early", cpu_caps())
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path,
                                                               detect_capabilities=False)
        integration.initialize()
        try:
            coordinator.register_worker("late", cpu_caps(cores=4, memory_gb=8))
            assert sorted(integration.worker_monitors) == ["early", "late"]
            late_monitor = integration.worker_monitors["late"]
            assert late_monitor.push_only and late_monitor.is_running
            view = integration.scheduler._views["late"]
            assert (view.cpu_count, view.memory_total_bytes) == (4.0, 8 * GIB)  # from its capabilities

            integration.start_task_monitoring("t-running", "late", "unit")
            integration.update_worker_utilization("late", sample("late", 40.0, 20.0, cores=4, memory_gb=8))
            assert coordinator.deregister_worker("late") == []  # the coordinator itself ran nothing there

            assert "late" not in integration.worker_monitors and "late" not in integration.scheduler._views
            assert not late_monitor.is_running
            rows = db_rows(db_path, "SELECT worker_id, success, error, peak_cpu_percent FROM task_resource_usage "
                                    "WHERE task_id = 't-running'")
            assert rows == [{"worker_id": "late", "success": False,
                             "error": "worker late left while the task ran", "peak_cpu_percent": 40.0}]
            assert integration.history.stats("late", "unit").failures == 1
            assert integration.scheduler_statistics()["tasks_failed"] == 1
            # A worker that left takes no new task monitoring.
            with pytest.raises(KeyError, match="late"):
                integration.start_task_monitoring("t-next", "late")
        finally:
            integration.shutdown()

    # -- samples --------------------------------------------------------------------------------
    def test_update_worker_utilization(self, db_path):
        coordinator = Coordinator()
        coordinator.register_worker("w1", cpu_caps())
        coordinator.register_worker("w2", cpu_caps())
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path,
                                                               detect_capabilities=False)
        with pytest.raises(RuntimeError, match="initialize"):
            integration.update_worker_utilization("w1", sample("w1", 1.0, 1.0))
        integration.initialize()
        try:
            first = sample("w1", 12.5, 40.0)
            integration.update_worker_utilization("w1", first)
            second = sample("w1", 30.0, 41.0, gpu=70.0)
            integration.update_worker_utilization("w1", second.to_dict())  # the dict a remote worker sends
            # A partial BASIC sample: CPU and memory only, no timestamp (stamped on arrival).
            integration.update_worker_utilization("w1", {"cpu_percent": 55.0, "memory_percent": 42.0})

            latest = integration.get_worker_utilization("w1")
            assert (latest.worker_id, latest.cpu_percent, latest.memory_percent) == ("w1", 55.0, 42.0)
            assert latest.gpus == () and latest.disk_usage_percent is None  # unknown, not 0
            assert integration.get_worker_utilization()["w2"] is None

            rows = db_rows(db_path, "SELECT worker_id, cpu_percent, memory_percent, len(gpus) AS gpus, "
                                    "disk_usage_percent FROM resource_utilization ORDER BY timestamp")
            assert rows == [
                {"worker_id": "w1", "cpu_percent": 12.5, "memory_percent": 40.0, "gpus": 0, "disk_usage_percent": None},
                {"worker_id": "w1", "cpu_percent": 30.0, "memory_percent": 41.0, "gpus": 1, "disk_usage_percent": None},
                {"worker_id": "w1", "cpu_percent": 55.0, "memory_percent": 42.0, "gpus": 0, "disk_usage_percent": None},
            ]
            # The scheduler's view follows: EWMA 0.5 of 12.5, 30, 55; GPU stays at its only reading.
            view = integration.scheduler._views["w1"]
            assert view.cpu_percent == pytest.approx(38.125)
            assert view.gpu_percent == 70.0

            with pytest.raises(ValueError, match="'w2'"):
                integration.update_worker_utilization("w1", sample("w2", 1.0, 1.0))
            with pytest.raises(ValueError, match="'w2'"):
                integration.update_worker_utilization("w1", {"worker_id": "w2", "cpu_percent": 1.0})
            for malformed in ({"timestamp": "yesterday", "cpu_percent": 3.0},
                              {"gpus": [{"index": 0}]},  # a GPU without uuid and name
                              {"task_ids": 7},
                              {"worker_id": ""}):
                with pytest.raises(ValueError):
                    integration.update_worker_utilization("w1", malformed)
            with pytest.raises(ValueError, match="ResourceUtilization or a dict"):
                integration.update_worker_utilization("w1", [12.5, 40.0])
            assert db_rows(db_path, "SELECT count(*) AS n FROM resource_utilization") == [{"n": 3}]
        finally:
            integration.shutdown()

    # -- tasks ----------------------------------------------------------------------------------
    def test_task_monitoring_integration(self, db_path):
        coordinator = Coordinator()
        coordinator.register_worker("w1", cpu_caps())
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path,
                                                               detect_capabilities=False)
        integration.initialize()
        try:
            with pytest.raises(KeyError, match="nowhere"):
                integration.start_task_monitoring("t1", "nowhere")
            integration.start_task_monitoring("t1", "w1", "unit")
            for cpu, memory, gpu in ((40.0, 20.0, None), (60.0, 30.0, 10.0)):
                integration.update_worker_utilization("w1", sample("w1", cpu, memory, gpu))
            usage = integration.stop_task_monitoring(
                "t1", "w1", success=True, process_usage={"cpu_seconds": 1.5, "peak_rss_bytes": 300 * 2**20,
                                                         "read_bytes": 0, "write_bytes": 4096})
            assert isinstance(usage, TaskResourceUsage)
            assert (usage.task_id, usage.worker_id, usage.task_type, usage.success) == ("t1", "w1", "unit", True)
            assert usage.sample_count == 2
            assert (usage.peak_cpu_percent, usage.mean_cpu_percent) == (60.0, 50.0)
            assert (usage.peak_memory_percent, usage.mean_memory_percent) == (30.0, 25.0)
            assert (usage.peak_gpu_utilization_percent, usage.mean_gpu_utilization_percent) == (10.0, 10.0)
            assert (usage.process_cpu_seconds, usage.process_peak_rss_bytes) == (1.5, 300 * 2**20)
            assert (usage.process_read_bytes, usage.process_write_bytes) == (0, 4096)
            assert usage.duration_s is not None and usage.duration_s >= 0
            with pytest.raises(KeyError, match="t1"):
                integration.stop_task_monitoring("t1", "w1")

            # History learns the type's demand on the worker and in the fleet.
            stats = integration.history.stats("w1", "unit")
            assert (stats.runs, stats.failures, stats.memory_bytes) == (1, 0, 300 * 2**20)
            assert stats.duration_s == usage.duration_s
            cores, memory_bytes = integration.history.predicted_demand("w1", "unit")
            assert memory_bytes == 300 * 2**20
            if usage.duration_s:
                assert cores == pytest.approx(1.5 / usage.duration_s)
            integration.start_task_monitoring("t2", "w1", "unit")
            # A measurement that is no number of the kind is unknown, never learnt from.
            bad = integration.stop_task_monitoring(
                "t2", "w1", success=False, error="AssertionError: 503",
                process_usage={"gpu_utilization_percent": float("nan"), "cpu_seconds": -4.0, "read_bytes": True,
                               "peak_rss_bytes": 1024})
            assert (bad.process_gpu_utilization_percent, bad.process_cpu_seconds, bad.process_read_bytes,
                    bad.process_peak_rss_bytes) == (None, None, None, 1024)
            assert integration.history.stats("w1", "unit").gpu_percent is None
            assert (integration.history.stats("w1", "unit").runs, integration.history.stats("w1", "unit").failures) \
                == (2, 1)

            rows = db_rows(db_path, "SELECT task_id, success, error, sample_count, peak_cpu_percent, "
                                    "process_cpu_seconds FROM task_resource_usage ORDER BY task_id")
            assert rows == [
                {"task_id": "t1", "success": True, "error": None, "sample_count": 2, "peak_cpu_percent": 60.0,
                 "process_cpu_seconds": 1.5},
                # t2 began after the last sample and none came while it ran: unknown, not borrowed
                {"task_id": "t2", "success": False, "error": "AssertionError: 503", "sample_count": 0,
                 "peak_cpu_percent": None, "process_cpu_seconds": None},
            ]
        finally:
            integration.shutdown()

    # -- scheduling -----------------------------------------------------------------------------
    def test_hardware_aware_find_best_worker(self, make_fleet):
        # 1. The original scheduler's favourite at 90 % CPU (smoothed) loses to the next one.
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps()})
        _overloaded_first_choice(fleet.integration)
        worker, score = fleet.choose(cpu_task("t-overload"), COUNTS)
        assert (worker, score) == ("w2", pytest.approx(W2_ADJUSTED))
        decision = fleet.last_decision()
        assert decision.original_worker_id == "w1" and decision.original_score == 1.0
        assert [(c.worker_id, c.adjusted_score) for c in decision.candidates] == [
            ("w2", pytest.approx(W2_ADJUSTED)), ("w1", pytest.approx(W1_ADJUSTED))]
        w1 = decision.candidates[1]
        assert (w1.cpu_percent, w1.cpu_penalty, w1.memory_penalty, w1.balance_penalty) == \
            (102.5, pytest.approx(W1_CPU_PENALTY), 0.0, pytest.approx(W1_BALANCE))
        assert "original choice w1 scored lower after penalties" in decision.explanation

        # 2. A GPU task avoids the busy GPU for the idle one; the CPU-only worker cannot take it.
        fleet = make_fleet({"busy-gpu": gpu_caps(), "idle-gpu": gpu_caps(), "cpu-only": cpu_caps()})
        fleet.push(sample("busy-gpu", 10.0, 20.0, gpu=85.0), sample("idle-gpu", 10.0, 20.0, gpu=5.0),
                   sample("cpu-only", 0.0, 5.0))
        worker, score = fleet.choose(gpu_task("t-gpu"))
        # With the task's own default 50 % of a GPU: busy at 135 %, GPU penalty 0.9 * 75 / 40
        # -> the floor; idle at 55 %, its busiest: balance 0.25 * 0.55 -> 1 - 0.1375
        assert (worker, score) == ("idle-gpu", pytest.approx(0.8625))
        decision = fleet.last_decision()
        assert [(c.worker_id, c.adjusted_score, c.gpu_penalty) for c in decision.candidates] == [
            ("idle-gpu", pytest.approx(0.8625), 0.0),
            ("busy-gpu", pytest.approx(0.05), pytest.approx(1.6875))]  # busy-gpu at the floor
        assert [(e.worker_id, e.reason) for e in decision.exclusions] == [("cpu-only", "lacks gpu")]
        # The same busy GPU costs a CPU task nothing (GPU penalties are for GPU tasks).
        assert fleet.choose(cpu_task("t-cpu"), {"busy-gpu": 0, "idle-gpu": 1, "cpu-only": 1},
                            available=["busy-gpu", "idle-gpu"])[0] == "busy-gpu"

        # 3. Memory above critical in the latest sample (memory is incompressible): excluded at once,
        #    readmitted only once a sample shows it under the recovery mark (85 %): a value hovering
        #    around 95 % does not flap in and out. (CPU above critical is only penalised.)
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps()})
        clock = fleet.clock
        steps = [  # (seconds later, w1's memory, w1 excluded afterwards?)
            (0, 97.0, True),   # critical: out at once, whatever the smoothed view says
            (1, 90.0, True),   # under critical, above the mark: still out
            (1, 96.0, True),
            (1, 94.0, True),   # hovering around 95 %: no flapping
            (1, 50.0, False),  # one sample under the mark: readmitted (recovery_samples 1)
        ]
        for n, (later, memory, excluded) in enumerate(steps):
            clock.advance(later)
            fleet.push(sample("w1", 30.0, memory), sample("w2", 10.0, 30.0))
            worker, _ = fleet.choose(cpu_task(f"t-hysteresis-{n}"), COUNTS)
            assert worker == ("w2" if excluded else "w1"), (n, memory)
            reasons = {e.worker_id: e.reason for e in fleet.last_decision().exclusions}
            if excluded:
                assert reasons == {"w1": f"memory at {97 if n < 2 else 96}% > critical 95%"}
            else:
                assert reasons == {}
        # four excluded steps, each decided through both entry points
        by_kind = fleet.integration.scheduler_statistics()["exclusions_by_kind"]
        assert {kind: n for kind, n in by_kind.items() if n} == {"critical": 8}

        # 3b. With recovery_samples 0, every resource must stay under the mark for recovery_s (10 s).
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps()})
        fleet.integration.hardware_scoring_factors["recovery_samples"] = 0
        steps = [
            (0, 97.0, True),
            (1, 50.0, True),   # under the mark since t=1
            (3, 90.0, True),   # above the mark again: the wait starts over
            (1, 40.0, True),   # under the mark since t=5
            (9, 40.0, True),   # 9 s under the mark
            (1, 40.0, False),  # 10 s under the mark: readmitted
        ]
        for n, (later, memory, excluded) in enumerate(steps):
            fleet.clock.advance(later)
            fleet.push(sample("w1", 30.0, memory), sample("w2", 10.0, 30.0))
            assert fleet.choose(cpu_task(f"t-timed-{n}"), COUNTS)[0] == ("w2" if excluded else "w1"), (n, memory)

        # 4. A stale worker (no sample for 3 intervals of 5 s) is skipped; a fresh one is not.
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps()})
        fleet.push(sample("w1", 5.0, 10.0))
        fleet.clock.advance(16)
        fleet.push(sample("w2", 10.0, 30.0))
        assert fleet.choose(cpu_task("t-stale"), COUNTS) == ("w2", pytest.approx(W2_ADJUSTED))
        assert [(e.worker_id, e.reason) for e in fleet.last_decision().exclusions] == [
            ("w1", "stale: last sample 16 s ago (limit 15 s)")]

        # 5. Unknown load is not idle: CPU unknown with 90 % memory loses to a known-light worker,
        #    and a worker with no sample yet counts as the median of the known ones.
        fleet = make_fleet({"null-cpu": cpu_caps(), "light": cpu_caps(), "new": cpu_caps()})
        fleet.push(sample("null-cpu", None, 90.0), sample("light", 20.0, 30.0))
        assert fleet.choose(cpu_task("t-null")) == ("light", pytest.approx(0.91875))
        # Each with the task's default core (12.5 %) and 256 MiB (1.5625 %) added.
        # light: CPU 32.5 % is its busiest: balance 0.25 * 0.325
        # new: CPU the sampled median (20) + 12.5, memory median(90, 30) + 1.5625: balance
        #      0.25 * 0.615625
        # null-cpu: CPU likewise 32.5 (not 0), memory 91.5625: penalty 0.6 * 21.5625 / 30 = 0.43125,
        #      balance 0.25 * 0.915625
        assert [(c.worker_id, c.cpu_percent, c.adjusted_score) for c in fleet.last_decision().candidates] == [
            ("light", 32.5, pytest.approx(0.91875)), ("new", None, pytest.approx(1 - 0.25 * 0.615625)),
            ("null-cpu", None, pytest.approx(1 - 0.43125 - 0.25 * 0.915625))]

    def test_hardware_aware_find_best_worker_burst_before_metrics(self, make_fleet):
        """C35: A 20 % CPU (2 s old), B 5 % CPU (10 min old), C just registered with no tasks,
        D with a MIG GPU (utilization NULL) and 90 % memory; 20 tasks within 1 s before any new
        metrics. The coordinator's task counts do not move (the tasks are queued at the workers),
        so only the in-flight load can spread them."""
        def burst(seed: int) -> tuple[list[str | None], Fleet]:
            fleet = make_fleet({"A": cpu_caps(), "B": cpu_caps(), "D": gpu_caps()}, seed=seed)
            fleet.push(sample("B", 5.0, 20.0))
            fleet.clock.advance(598)
            fleet.push(sample("A", 20.0, 30.0), sample("D", 10.0, 90.0, mig=True))
            fleet.clock.advance(1)
            fleet.coordinator.register_worker("C", cpu_caps())
            fleet.clock.advance(1)
            chosen = []
            for n in range(20):
                chosen.append(fleet.choose(cpu_task(f"burst-{n:02d}"))[0])
                fleet.clock.advance(0.05)
            return chosen, fleet

        chosen, fleet = burst(seed=7)
        decisions = fleet.integration.recent_decisions()
        assert len(decisions) == 40  # each task decided through both entry points
        first = decisions[0]
        assert first.task_id == "burst-00"
        d_first = next(c for c in first.candidates if c.worker_id == "D")
        # D ranks on what is known: 90 % memory, not as a 0 % busy GPU.
        # (90 % memory + the task's default 256 MiB of 16 GiB)
        assert (d_first.gpu_percent, d_first.memory_percent) == (None, 91.5625)
        assert d_first.balance_penalty == pytest.approx(0.25 * 0.915625)
        assert d_first.memory_penalty == pytest.approx(0.6 * 21.5625 / 30)
        # C has no sample: it counts as the median of the known loads plus the task, not as idle
        # (memory: median(30, 90) + 1.5625 is its busiest).
        c_first = next(c for c in first.candidates if c.worker_id == "C")
        assert c_first.balance_penalty == pytest.approx(0.25 * ((30.0 + 90.0) / 2 + 1.5625) / 100)
        assert [(e.worker_id, e.reason) for e in first.exclusions] == [
            ("B", "stale: last sample 600 s ago (limit 15 s)")]
        assert all([e.worker_id for e in d.exclusions] == ["B"] for d in decisions)

        # The last tasks find every worker penalised down to the floor (FLOOR x the same original
        # score): those exact ties go by the seeded tie-break.
        assert collections.Counter(chosen) == {"A": 8, "C": 6, "D": 6}
        assert chosen[-3:] == ["D", "A", "A"]  # burst-17..19: A, C and D all at the floor
        assert "B" not in chosen
        # The in-flight tasks are what the view of C counts until C's first sample.
        assert len(fleet.integration.scheduler._views["C"].inflight) == 6
        # Deterministic given the seed: the same burst again assigns the same way.
        assert burst(seed=7)[0] == chosen

    def test_wall_clock_dates_tasks_decisions_and_inflight(self, tmp_path):
        """One wall_clock for the monitors' task dates, the decisions and the assignments; an
        in-flight task is dropped by the timestamp a sample was TAKEN at, not when it arrived."""
        from datetime import datetime, timedelta, timezone

        epoch = datetime(2025, 1, 1, tzinfo=timezone.utc)
        clock = FakeClock(0.0)
        coordinator = Coordinator(max_tasks_per_worker=10, seed=0)
        coordinator.register_worker("w1", cpu_caps())
        integration = CoordinatorHardwareMonitoringIntegration(
            coordinator, db_path=str(tmp_path / "wall.duckdb"), clock=clock, detect_capabilities=False,
            wall_clock=lambda: epoch + timedelta(seconds=clock()), hardware_scoring_factors={"inflight_hold_s": 0})
        integration.initialize()
        try:
            def push(taken_s: float) -> None:
                integration.update_worker_utilization("w1", dataclasses.replace(
                    sample("w1", 10.0, 10.0), timestamp=epoch + timedelta(seconds=taken_s)))

            push(0.0)
            clock.advance(10)
            decision = integration.decide_task(cpu_task("t1"), ["w1"], {"w1": 0})
            assert decision.timestamp == epoch + timedelta(seconds=10)
            view = integration.scheduler._views["w1"]
            assert view.inflight["t1"].assigned_at == epoch + timedelta(seconds=10)
            clock.advance(20)
            push(9.0)  # taken before the assignment, arriving 20 s after it: still in flight
            assert "t1" in view.inflight
            push(11.0)
            assert view.inflight == {}
            integration.start_task_monitoring("t1", "w1", "unit")
            clock.advance(60)
            usage = integration.stop_task_monitoring("t1", "w1", process_usage={"cpu_seconds": 120.0})
            assert (usage.start_time, usage.duration_s) == (epoch + timedelta(seconds=30), 60.0)
            assert integration.history.task_demand("w1", "unit").cores == pytest.approx(2.0)
        finally:
            integration.shutdown()

    def test_a_starving_gpu_task_gets_a_worker_reserved(self, make_fleet):
        fleet = make_fleet({"gpu": gpu_caps(), "cpu": cpu_caps()})
        train, infer = gpu_task("t-train", min_gpu_memory_gb=40), gpu_task("t-infer", min_gpu_memory_gb=30)
        infer["type"] = "gpu-inference"
        # The only GPU's memory stays above critical for a minute: the training task waits, asked
        # each 5 s (decided again each recheck_s, 10 s, as nothing makes room).
        for _ in range(13):
            fleet.push(sample("gpu", 20.0, 20.0, gpu=50.0, gpu_memory=97.0), sample("cpu", 10.0, 10.0))
            assert fleet.choose(train)[0] is None
            fleet.clock.advance(5.0)
        assert fleet.integration.scheduler._reservations.reserved() == {"gpu": "t-train"}
        assert fleet.integration.scheduler_statistics()["asked_again_unchanged"] >= 6
        # The GPU frees up (72 GiB): another GPU task that does not fit beside the waiting one's
        # 40 GiB (+25 %) may not take it; a CPU task still may.
        fleet.push(sample("gpu", 20.0, 20.0, gpu=10.0, gpu_memory=10.0), sample("cpu", 90.0, 10.0))
        fleet.clock.advance(5.0)
        fleet.push(sample("gpu", 20.0, 20.0, gpu=10.0, gpu_memory=10.0), sample("cpu", 90.0, 10.0))
        assert fleet.choose(infer)[0] is None
        assert ("gpu", "reserved for t-train (gpu-training), waiting 70 s") in [
            (e.worker_id, e.reason) for e in fleet.last_decision().exclusions]
        assert fleet.choose(cpu_task("t-unit"))[0] == "gpu"
        # A small GPU task fits beside it: backfilled.
        assert fleet.choose(gpu_task("t-small", min_gpu_memory_gb=8))[0] == "gpu"
        # The waiting task takes it; the reservation ends and the GPU is open to all again.
        assert fleet.choose(train)[0] == "gpu"
        assert fleet.integration.scheduler._reservations.reserved() == {}
        assert fleet.choose(gpu_task("t-infer-2"))[0] == "gpu"
        assert fleet.integration.scheduler_statistics()["exclusions_by_kind"]["reserved"] >= 1
        # A reserved worker that leaves frees its task to reserve another.
        for _ in range(13):
            fleet.push(sample("gpu", 20.0, 20.0, gpu=50.0, gpu_memory=97.0))
            fleet.choose(gpu_task("t-train-2"))
            fleet.clock.advance(5.0)
        assert fleet.integration.scheduler._reservations.reserved() == {"gpu": "t-train-2"}
        fleet.coordinator.deregister_worker("gpu")
        assert fleet.integration.scheduler._reservations.reserved() == {}

    def test_a_task_whose_runs_outgrew_the_only_gpu_still_gets_it_reserved(self, make_fleet):
        fleet = make_fleet({"gpu": gpu_caps(), "cpu": cpu_caps()})
        llm = {**gpu_task("t-llm", min_gpu_memory_gb=80), "type": "gpu-llm"}
        # Its type once took 70 GiB of GPU memory: +25 % headroom is more than the 80 GiB GPU.
        # Decisions cap the prediction at 80 x 0.85 / 1.25 = 54.4 GiB, and so must the check
        # that the reserved worker could hold it once drained.
        fleet.integration.scheduler.history.record("gpu", "gpu-llm", success=True, duration_s=300.0,
                                                   gpu_memory_bytes=70 * GIB)
        for _ in range(13):  # the GPU's memory stays full for a minute
            fleet.push(sample("gpu", 20.0, 20.0, gpu=90.0, gpu_memory=97.0), sample("cpu", 10.0, 10.0))
            assert fleet.choose(llm)[0] is None
            fleet.clock.advance(5.0)
        assert fleet.integration.scheduler._reservations.reserved() == {"gpu": "t-llm"}
        # Its monitor falls silent while the coordinator still sees the worker alive: its last
        # room still binds, and it is still kept: a 30 GiB task does not fit beside 68 GiB.
        fleet.push(sample("gpu", 20.0, 20.0, gpu=10.0, gpu_memory=10.0))
        fleet.integration.scheduler.task_started("t-other", "unit", "gpu")
        fleet.clock.advance(20.0)
        fleet.integration.scheduler.task_started("t-other-2", "unit", "gpu")
        assert fleet.choose(gpu_task("t-train", min_gpu_memory_gb=30))[0] is None
        assert ("gpu", "reserved for t-llm (gpu-llm), waiting 85 s") in [
            (e.worker_id, e.reason) for e in fleet.last_decision().exclusions]
        assert fleet.integration.held_decision("t-train") is fleet.last_decision()  # why it waits
        assert fleet.choose(llm)[0] == "gpu"

    def test_hardware_aware_find_best_worker_no_capable_worker(self, make_fleet):
        fleet = make_fleet({"cpu-only": cpu_caps(), "t4": gpu_caps("Tesla T4", 7.5, 16),
                            "a100": gpu_caps(), "unhealthy": {**cpu_caps(), "gpu_health": "unhealthy"}})
        fleet.push(*(sample(w, 10.0, 10.0) for w in fleet.coordinator.workers))
        task = gpu_task("t-h100", min_cuda_compute=9.0)
        assert fleet.choose(task) == (None, 0.0)
        decision = fleet.last_decision()
        assert decision.chosen_worker_id is None and decision.candidates == ()
        assert sorted((e.worker_id, e.reason) for e in decision.exclusions) == [
            ("a100", "no GPU with CUDA compute >= 9"),
            ("cpu-only", "lacks gpu"),
            ("t4", "no GPU with CUDA compute >= 9"),
            ("unhealthy", "lacks gpu (GPU unhealthy)"),
        ]
        assert decision.unplaceable_reason == "no worker of the fleet has the hardware the task requires"
        assert "no worker can take the task (4 excluded: hardware 4)" in decision.explanation
        stats = fleet.integration.scheduler_statistics()
        # patched + direct entry: the second ask finds nothing changed and gets the same answer
        assert (stats["no_worker"], stats["asked_again_unchanged"]) == (1, 1)
        # A worker at its task limit is listed with that reason too.
        fleet = make_fleet({"w1": cpu_caps()}, max_tasks_per_worker=1)
        fleet.push(sample("w1", 10.0, 10.0))
        assert fleet.choose(cpu_task("t-full"), {"w1": 1}) == (None, 0.0)
        assert [(e.worker_id, e.reason) for e in fleet.last_decision().exclusions] == [
            ("w1", "at task limit (1)")]

    def test_hardware_aware_find_best_worker_shutdown_restores(self, make_fleet):
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps()})
        scheduler = fleet.coordinator.task_scheduler
        assert "find_best_worker_for_task" in vars(scheduler)  # patched on the instance
        _overloaded_first_choice(fleet.integration)
        assert scheduler.find_best_worker_for_task(cpu_task("t1"), ["w1", "w2"], COUNTS)[0] == "w2"
        fleet.integration.shutdown()
        assert "find_best_worker_for_task" not in vars(scheduler)
        assert scheduler.find_best_worker_for_task.__func__ is TaskScheduler.find_best_worker_for_task
        fleet.integration.shutdown()  # safe twice
        # The original again: blind to load, it picks the worker with fewer tasks.
        assert scheduler.find_best_worker_for_task(cpu_task("t2"), ["w1", "w2"], COUNTS) == ("w1", 1.0)

    def test_hardware_aware_find_best_worker_decisions_stored(self, make_fleet):
        fleet = make_fleet({"w1": cpu_caps(), "w2": cpu_caps(), "cpu-only": cpu_caps()})
        _overloaded_first_choice(fleet.integration)
        fleet.push(sample("cpu-only", 10.0, 10.0))
        fleet.coordinator.task_scheduler.find_best_worker_for_task(cpu_task("t-stored"), ["w1", "w2"], COUNTS)
        fleet.coordinator.task_scheduler.find_best_worker_for_task(gpu_task("t-nowhere"), ["w1", "cpu-only"],
                                                                   {"w1": 0, "cpu-only": 0})
        rows = db_rows(fleet.integration.db_path,
                       "SELECT task_id, task_type, chosen_worker_id, chosen_score, original_worker_id, "
                       "candidate_count, candidates, exclusions, explanation FROM scheduling_decisions "
                       "ORDER BY timestamp")
        assert [r["task_id"] for r in rows] == ["t-stored", "t-nowhere"]
        stored, nowhere = rows
        assert (stored["task_type"], stored["chosen_worker_id"], stored["original_worker_id"]) == ("unit", "w2", "w1")
        assert stored["chosen_score"] == pytest.approx(W2_ADJUSTED)
        assert stored["candidate_count"] == 2 and stored["exclusions"] == []
        candidates = {c["worker_id"]: c for c in stored["candidates"]}
        assert candidates["w1"]["original_score"] == 1.0 and candidates["w2"]["original_score"] == 0.5
        assert candidates["w1"]["cpu_penalty"] == pytest.approx(W1_CPU_PENALTY)
        assert candidates["w1"]["balance_penalty"] == pytest.approx(W1_BALANCE)
        assert candidates["w1"]["adjusted_score"] == pytest.approx(W1_ADJUSTED)
        assert candidates["w2"]["balance_penalty"] == pytest.approx(W2_BALANCE)
        assert candidates["w2"]["cpu_penalty"] == 0.0 and candidates["w2"]["history_penalty"] == 0.0
        assert "chose w2" in stored["explanation"]
        assert nowhere["chosen_worker_id"] is None and nowhere["candidates"] == []
        assert sorted((e["worker_id"], e["reason"]) for e in nowhere["exclusions"]) == [
            ("cpu-only", "lacks gpu"), ("w1", "lacks gpu")]

    # -- minimal coordinators ------------------------------------------------------------------
    @pytest.mark.parametrize("scheduler_cls", [SyncScheduler, ShortNameScheduler])
    def test_minimal_coordinator_sync(self, db_path, scheduler_cls):
        coordinator = MinimalCoordinator(scheduler_cls)
        scheduler = coordinator.task_scheduler
        name = "find_best_worker_for_task" if scheduler_cls is SyncScheduler else "find_best_worker"
        original = getattr(scheduler, name)
        assert original(cpu_task("t0"), ["w1", "w2"], COUNTS) == ("w1", 1.0)
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock())
        integration.initialize()
        try:
            assert sorted(integration.worker_monitors) == ["w1", "w2"]
            _overloaded_first_choice(integration)
            assert getattr(scheduler, name)(cpu_task("t1"), ["w1", "w2"], COUNTS) == \
                ("w2", pytest.approx(W2_ADJUSTED))
            assert integration._hardware_aware_find_best_worker(cpu_task("t1"), ["w1", "w2"], COUNTS) == \
                ("w2", pytest.approx(W2_ADJUSTED))
        finally:
            integration.shutdown()
        assert name not in vars(scheduler)
        assert getattr(scheduler, name)(cpu_task("t3"), ["w1", "w2"], COUNTS) == ("w1", 1.0)

    def test_minimal_coordinator_async(self, db_path):
        coordinator = MinimalCoordinator(AsyncScheduler)
        scheduler = coordinator.task_scheduler
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock())
        integration.initialize()
        try:
            _overloaded_first_choice(integration)
            assert inspect.iscoroutinefunction(scheduler.find_best_worker_for_task)  # stays awaitable
            choice = asyncio.run(scheduler.find_best_worker_for_task(cpu_task("t1"), ["w1", "w2"], COUNTS))
            assert choice == ("w2", pytest.approx(W2_ADJUSTED))
            # The integration's own entry point runs the async scheduler outside an event loop...
            assert integration._hardware_aware_find_best_worker(cpu_task("t1"), ["w1", "w2"], COUNTS) == \
                ("w2", pytest.approx(W2_ADJUSTED))

            # ...and inside one says to await the scheduler instead.
            async def inside_loop():
                return integration._hardware_aware_find_best_worker(cpu_task("t2"), ["w1", "w2"], COUNTS)
            with pytest.raises(RuntimeError, match="await"):
                asyncio.run(inside_loop())
            assert [d.chosen_worker_id for d in integration.recent_decisions()] == ["w2", "w2"]
        finally:
            integration.shutdown()
        assert "find_best_worker_for_task" not in vars(scheduler)
        assert asyncio.run(scheduler.find_best_worker_for_task(cpu_task("t3"), ["w1", "w2"], COUNTS)) == ("w1", 1.0)

    @pytest.mark.parametrize("scheduler_cls, shape", [
        (ItemsScheduler, "dict"), (AsyncItemsScheduler, "dict"), (IndexingScheduler, "dict"),
        (IdListScheduler, "ids"), (AsyncIdListScheduler, "ids"), (WorkerDictListScheduler, "worker dicts")])
    def test_original_scheduler_gets_the_shape_the_caller_passed(self, db_path, scheduler_cls, shape):
        """A dict of workers stays a dict of the same worker dicts (restricted to the workers
        asked about), a list stays a list, ``worker_task_count`` stays a dict likewise."""
        coordinator = MinimalCoordinator(scheduler_cls)
        coordinator.workers["gpu-only"] = {"capabilities": {"hardware": ["gpu"]}, "status": "active"}
        workers = coordinator.workers
        available = {"dict": dict(workers), "ids": list(workers),
                     "worker dicts": [{"worker_id": w, **info} for w, info in workers.items()]}[shape]
        counts = {"w1": 0, "w2": 1, "gpu-only": 0}
        scheduler = coordinator.task_scheduler
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock())
        integration.initialize()
        try:
            _overloaded_first_choice(integration)
            choice = scheduler.find_best_worker_for_task(cpu_task("t1"), available, counts)
            if inspect.isawaitable(choice):
                choice = asyncio.run(choice)
            assert choice == ("w2", pytest.approx(W2_ADJUSTED))
        finally:
            integration.shutdown()
        calls = scheduler.calls
        # One call per worker (its own score), then one with everything the caller passed.
        assert len(calls) == 4
        for (asked, asked_counts), worker_id in zip(calls, ["w1", "w2", "gpu-only"]):
            assert type(asked) is type(available) and type(asked_counts) is dict
            assert asked_counts == {worker_id: counts[worker_id]}
            if shape == "dict":
                assert asked == {worker_id: workers[worker_id]} and asked[worker_id] is workers[worker_id]
            elif shape == "ids":
                assert asked == [worker_id]
            else:
                assert [w["worker_id"] for w in asked] == [worker_id]
        assert calls[-1][0] is available and calls[-1][1] is counts
        recorded = integration.recent_decisions()[-1]
        assert (recorded.original_worker_id, recorded.original_score) == ("w1", 1.0)

    def test_alert_thresholds_assigned_on_the_integration_reach_every_monitor(self, db_path):
        with pytest.raises(ValueError, match="alert threshold 'cpu': 'x' is not a percent"):
            CoordinatorHardwareMonitoringIntegration(MinimalCoordinator(SyncScheduler), db_path=db_path,
                                                     alert_thresholds={"cpu": "x"})
        with CoordinatorHardwareMonitoringIntegration(MinimalCoordinator(SyncScheduler), db_path=db_path,
                                                      clock=FakeClock()) as integration:
            integration.update_worker_utilization("w1", sample("w1", 60.0, 30.0))
            integration.alert_thresholds = {"cpu_percent": 50}
            assert integration.alert_thresholds["cpu"] == {"warning": 50.0, "critical": 95.0}
            integration.update_worker_utilization("w1", sample("w1", 60.0, 30.0))
            alerts = integration.worker_monitors["w1"].get_alerts()
            assert [(a.resource, a.severity, a.threshold) for a in alerts] == [("cpu", "warning", 50.0)]
            assert integration.worker_monitors["w2"].alert_thresholds["cpu"]["warning"] == 50.0

    def test_scheduler_method_set_on_instance_is_restored(self, db_path):
        coordinator = MinimalCoordinator(SyncScheduler)

        def chooser(task, available_workers, worker_task_count):
            return _fewest_tasks(coordinator.workers, task, available_workers, worker_task_count)

        coordinator.task_scheduler.find_best_worker_for_task = chooser
        with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, clock=FakeClock()) as integration:
            _overloaded_first_choice(integration)
            assert coordinator.task_scheduler.find_best_worker_for_task(cpu_task("t1"), ["w1", "w2"], COUNTS)[0] == "w2"
        assert coordinator.task_scheduler.find_best_worker_for_task is chooser

    def test_coordinator_contract_error(self, db_path):
        class NoScheduler:
            workers: dict = {}

        class Nothing:
            pass

        with pytest.raises(CoordinatorContractError, match="NoScheduler cannot be monitored: it needs a "
                                                           "'task_scheduler' with find_best_worker_for_task"):
            CoordinatorHardwareMonitoringIntegration(NoScheduler(), db_path=db_path).initialize()
        with pytest.raises(TypeError, match="'workers' mapping .* and a 'task_scheduler'"):
            CoordinatorHardwareMonitoringIntegration(Nothing(), db_path=db_path).initialize()
        coordinator = MinimalCoordinator(SyncScheduler)
        coordinator.task_scheduler = object()  # a scheduler without either method
        with pytest.raises(CoordinatorContractError, match="find_best_worker"):
            CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path).initialize()
        assert not Path(db_path).exists()  # nothing opened for a coordinator it cannot serve

    def test_original_choice_is_what_the_scheduler_itself_picks(self, db_path):
        """Asked one worker at a time every idle worker scores 1.0; the recorded original choice
        is still the one the scheduler picks among all of them (w1, the first), not a tie-break."""
        coordinator = MinimalCoordinator(SyncScheduler)
        coordinator.workers["w0"] = {"capabilities": cpu_caps(), "status": "active"}
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, seed=3)
        integration.initialize()
        try:
            for worker_id in ("w1", "w2", "w0"):
                integration.update_worker_utilization(worker_id, sample(worker_id, 10.0, 30.0))
            decision = integration.decide_task({"task_id": "t", "type": "unit"}, ["w1", "w2", "w0"], {})
            assert (decision.original_worker_id, decision.original_score) == ("w1", 1.0)
        finally:
            integration.shutdown()

    def test_scheduler_returning_a_bare_worker_id_gets_a_clear_error(self, db_path):
        class BareIdScheduler:
            def __init__(self, workers: dict) -> None:
                self.workers = workers

            def find_best_worker_for_task(self, task, available_workers, worker_task_count):
                return available_workers[0]

        integration = CoordinatorHardwareMonitoringIntegration(MinimalCoordinator(BareIdScheduler), db_path=db_path)
        integration.initialize()
        try:
            with pytest.raises(CoordinatorContractError, match=r"must return \(worker_id or None, score\), got 'w1'"):
                integration.coordinator.task_scheduler.find_best_worker_for_task(
                    {"task_id": "t", "type": "unit"}, ["w1", "w2"], {})
        finally:
            integration.shutdown()

    # -- reports --------------------------------------------------------------------------------
    def test_report_generation(self, tmp_path, db_path):
        coordinator = Coordinator(max_tasks_per_worker=1, poll_interval_s=0.05)
        coordinator.register_worker(XSS_WORKER, cpu_caps())
        coordinator.register_worker("worker-plain", gpu_caps())
        integration = CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db_path, detect_capabilities=False)
        integration.initialize()
        try:
            for worker_id in coordinator.workers:
                integration.update_worker_utilization(worker_id, sample(worker_id, 5.0, 20.0))
            task_ids = ["task-cpu-1", "task-cpu-2", "task-gpu-1"]
            for task_id in task_ids:
                requirements = {"hardware": ["gpu"]} if "gpu" in task_id else {"hardware": ["cpu"]}
                coordinator.submit_task({"task_id": task_id, "type": task_id.rsplit("-", 1)[0], "priority": 1,
                                         "requirements": requirements, "spec": workloads.cpu_burn(0.1)})
            coordinator.start()
            assert coordinator.wait_until_done(timeout_s=60)
            coordinator.stop()
            for worker_id in coordinator.workers:
                integration.update_worker_utilization(worker_id, sample(worker_id, 7.0, 21.0))
            assert coordinator.counts() == {"queued": 0, "running": 0, "completed": 3, "failed": 0, "cancelled": 0}

            html_path = integration.generate_html_report(str(tmp_path / "report.html"))
            json_path = integration.export_json(str(tmp_path / "report.json"))
        finally:
            integration.shutdown()

        text = Path(html_path).read_text(encoding="utf-8")
        for name in ["worker-plain", *task_ids]:
            assert name in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert XSS_WORKER not in text

        class Scripts(html.parser.HTMLParser):
            def __init__(self) -> None:
                super().__init__()
                self.scripts: list[str] = []
                self.texts: list[str] = []
                self._in_script = False

            def handle_starttag(self, tag, attrs):
                self._in_script = tag == "script"
                if self._in_script:
                    self.scripts.append("")

            def handle_endtag(self, tag):
                self._in_script = False

            def handle_data(self, data):
                if self._in_script:
                    self.scripts[-1] += data
                self.texts.append(data)

        parser = Scripts()
        parser.feed(text)
        assert not any("alert(1)" in s for s in parser.scripts)  # no script element carries it
        assert any(XSS_WORKER in t for t in parser.texts)  # shown as text

        def no_constants(name: str) -> Any:
            raise ValueError(f"non-standard JSON constant {name}")

        data = json.loads(Path(json_path).read_text(encoding="utf-8"), parse_constant=no_constants)
        dumped = json.dumps(data)
        for name in [XSS_WORKER, "worker-plain", *task_ids]:
            assert json.dumps(name)[1:-1] in dumped
