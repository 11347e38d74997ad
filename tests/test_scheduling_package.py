"""The scheduler of the package on its own: the patch, typed exclusions, statistics, layering."""

from __future__ import annotations

import ast
from pathlib import Path

from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import ResourceUtilization, utc_now
from fleet_hwmon.scheduling import HardwareAwareScheduler
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind

GIB = 1024**3
ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL_MODULES = {p.stem for p in ROOT.glob("*.py")}


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def caps(cores: int = 8, memory_gb: float = 16) -> dict:
    return {"hardware": ["cpu"], "memory": {"total_gb": memory_gb}, "cpu": {"cores": cores}}


def sample(worker_id: str, cpu: float, memory: float) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=memory,
                               cpu_count_effective=8, memory_total_bytes=16 * GIB,
                               memory_available_bytes=int(16 * GIB * (100 - memory) / 100))


def test_the_scheduler_patches_a_coordinator_without_the_integration():
    coordinator, clock = Coordinator(max_tasks_per_worker=4), Clock()
    for worker_id in ("busy", "calm", "full"):
        coordinator.register_worker(worker_id, caps())
    recorded = []
    scheduler = HardwareAwareScheduler(coordinator, clock=clock, record=recorded.append)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    scheduler.observe(sample("busy", 90.0, 40.0))
    scheduler.observe(sample("calm", 10.0, 40.0))
    scheduler.observe(sample("full", 10.0, 97.0))  # memory above critical
    scheduler.install()
    try:
        task = {"task_id": "t1", "type": "unit", "priority": 1, "requirements": {"hardware": ["cpu"]}}
        chosen, score = coordinator.task_scheduler.find_best_worker_for_task(task, ["busy", "calm", "full"], {})
        assert chosen == "calm" and score > 0
        (decision,) = recorded
        assert [(e.worker_id, e.kind, e.resource, e.value, e.limit) for e in decision.exclusions] == [
            ("full", ExclusionKind.CRITICAL, "memory", 97.0, 95.0)]
        assert decision.exclusions[0].reason == "memory at 97% > critical 95%"
        # The task is in flight on "calm" until it ends; its figures are then learnt.
        assert set(scheduler._views["calm"].inflight) == {"t1"}
        scheduler.task_finished("t1", "calm", success=True, duration_s=4.0, cpu_seconds=8.0, peak_rss_bytes=GIB)
        assert scheduler._views["calm"].inflight == {}
        assert scheduler.history.stats("calm", "unit").cores == 2.0
    finally:
        scheduler.uninstall()
    assert "find_best_worker_for_task" not in vars(coordinator.task_scheduler)


def test_statistics_count_decisions_by_outcome_and_exclusions_by_kind():
    coordinator, clock = Coordinator(max_tasks_per_worker=1), Clock()
    for worker_id in ("a", "b"):
        coordinator.register_worker(worker_id, caps())
    scheduler = HardwareAwareScheduler(coordinator, clock=clock)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
        scheduler.observe(sample(worker_id, 10.0, 10.0))
    scheduler.install()
    find = coordinator.task_scheduler.find_best_worker_for_task
    try:
        assert find({"task_id": "t1", "requirements": {}}, ["a", "b"], {})[0] is not None
        assert find({"task_id": "t2", "requirements": {}}, ["a", "b"], {"a": 1, "b": 1}) == (None, 0.0)
        assert find({"task_id": "t3", "requirements": {"hardware": ["gpu"]}}, ["a", "b"], {})[0] is None
    finally:
        scheduler.uninstall()
    stats = scheduler.statistics()
    assert stats["decisions"] == 3 and stats["decisions_by_outcome"] == {"original": 1, "alternative": 0,
                                                                         "no_worker": 2}
    assert stats["exclusions_by_kind"] == {**{kind.value: 0 for kind in ExclusionKind}, "task_limit": 2,
                                           "hardware": 2}
    latency = stats["decision_latency_s"]
    assert latency["count"] == 3 and 0 < latency["p50"] <= latency["p99"] and latency["sum"] > 0


def test_exclusion_messages_are_made_from_their_figures():
    assert Exclusion.memory_fit("w", 5 * GIB, 4 * GIB, 25.0).reason == \
        "predicted memory 5.0 GiB (+25% headroom) > free 4.0 GiB"
    gpu = Exclusion.gpu_memory_fit("w", 40 * GIB, 8 * GIB, required=True)
    assert (gpu.reason, gpu.is_room, gpu.is_gpu_room) == ("required GPU memory 40.0 GiB > free 8.0 GiB on any GPU",
                                                          True, True)
    stale = Exclusion.stale("w", 40.0, 15.0, never_sampled=False)
    assert (stale.kind.value, stale.value, stale.limit, stale.is_room) == ("stale", 40.0, 15.0, False)
    assert str(ExclusionKind.GPU_UNHEALTHY) == "gpu_unhealthy"


def test_scheduling_and_scoring_import_no_top_level_module():
    offenders = []
    for package in ("scheduling", "scoring"):
        for path in (ROOT / "fleet_hwmon" / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in TOP_LEVEL_MODULES]
    assert offenders == []
