"""The scheduler of the package on its own: the patch, typed exclusions, statistics, layering."""

from __future__ import annotations

import ast
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now
from fleet_hwmon.scheduling import HardwareAwareScheduler
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.views import WorkerView

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


def sample(worker_id: str, cpu: float, memory: float, memory_gb: float = 16, cores: int = 8) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=memory,
                               cpu_count_effective=cores, memory_total_bytes=int(memory_gb * GIB),
                               memory_available_bytes=int(memory_gb * GIB * (100 - memory) / 100))


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


def installed_on_two_calm_workers(coordinator: Coordinator, clock: Clock) -> HardwareAwareScheduler:
    """A scheduler installed on ``coordinator`` with workers "a" and "b" registered, each seen at
    10 % CPU and 10 % memory."""
    for worker_id in ("a", "b"):
        coordinator.register_worker(worker_id, caps())
    scheduler = HardwareAwareScheduler(coordinator, clock=clock)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
        scheduler.observe(sample(worker_id, 10.0, 10.0))
    scheduler.install()
    return scheduler


def test_statistics_count_decisions_by_outcome_and_exclusions_by_kind():
    coordinator, clock = Coordinator(max_tasks_per_worker=1), Clock()
    scheduler = installed_on_two_calm_workers(coordinator, clock)
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


def test_statistics_count_every_decision_however_many_wait_and_whenever_read():
    """Decisions are counted in batches: read before, between and after a batch, the figures
    count every decision made so far, once."""
    coordinator, clock = Coordinator(max_tasks_per_worker=2), Clock()
    scheduler = installed_on_two_calm_workers(coordinator, clock)
    find = coordinator.task_scheduler.find_best_worker_for_task
    placed: dict[str, int] = {}
    try:
        for n in range(600):  # more than one batch; every third decision finds both workers at the limit
            counts = {"a": 2, "b": 2} if n % 3 == 2 else {}
            chosen = find({"task_id": f"t{n}", "requirements": {}}, ["a", "b"], counts)[0]
            if chosen is not None:
                placed[chosen] = placed.get(chosen, 0) + 1
            if n in (0, 99, 299):
                stats = scheduler.statistics()
                assert stats["decisions"] == n + 1 == stats["decision_latency_s"]["count"]
                assert stats["no_worker"] == (n + 1) // 3
                assert stats["exclusions_by_kind"]["task_limit"] == 2 * ((n + 1) // 3)
    finally:
        scheduler.uninstall()
    stats = scheduler.statistics()
    latency = stats["decision_latency_s"]
    assert stats["decisions"] == 600 == latency["count"] == latency["buckets"][-1][1]
    assert stats["decisions_by_outcome"]["no_worker"] == 200
    assert stats["decisions_by_outcome"]["original"] + stats["decisions_by_outcome"]["alternative"] == 400
    assert stats["exclusions_by_kind"]["task_limit"] == 400
    assert stats["tasks_per_worker"] == placed and sum(placed.values()) == 400


def test_a_decision_explains_itself_to_every_reader():
    """The explanation is written when first read: the attribute, the record's fields, a copy
    and a pickled decision all give the same text."""
    import pickle
    coordinator, clock = Coordinator(), Clock()
    for worker_id in ("a", "b"):
        coordinator.register_worker(worker_id, caps())
    scheduler = HardwareAwareScheduler(coordinator, clock=clock)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    scheduler.observe(sample("a", 10.0, 10.0))
    scheduler.observe(sample("b", 99.0, 99.0))
    decision = scheduler.decide_task({"task_id": "t1", "type": "unit", "requirements": {}}, ["a", "b"], {})
    copied = pickle.loads(pickle.dumps(decision))  # read before the attribute is
    fields = dataclasses.asdict(decision)
    assert decision.explanation == fields["explanation"] == copied.explanation == \
        f"chose a (score {decision.chosen_score:.3f} of original 1.000); 1 worker(s) excluded"
    assert copied == decision and dataclasses.replace(decision).explanation == decision.explanation
    assert type(decision.explanation) is str and 0 < decision.chosen_score < 1.0


def test_a_decision_orders_its_candidates_for_every_reader():
    """Only the best candidate is found while the caller waits; the others are ordered when the
    decision's candidates are first read: by score, then by the seeded tie-break, the same
    through the attribute, the record's fields, a copy and a pickled decision."""
    import pickle
    from fleet_hwmon.scoring.ranking import tie_break
    coordinator, clock = Coordinator(), Clock()
    workers = [f"w{n}" for n in range(7)]
    for worker_id in workers:
        coordinator.register_worker(worker_id, caps())
    scheduler = HardwareAwareScheduler(coordinator, clock=clock)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    for n, worker_id in enumerate(workers):  # two groups of equal load, so ties at two scores
        scheduler.observe(sample(worker_id, 10.0 if n % 2 else 30.0, 10.0))
    decision = scheduler.decide_task({"task_id": "t1", "type": "unit", "requirements": {}}, workers, {})
    copied = pickle.loads(pickle.dumps(decision))  # read before the attribute is
    fields = dataclasses.asdict(decision)
    ordered = decision.candidates
    expected = sorted((-c.adjusted_score, tie_break(0, "t1", c.worker_id), c.worker_id) for c in ordered)
    assert type(ordered) is tuple and [c.worker_id for c in ordered] == [w for *_, w in expected]
    assert sorted(c.worker_id for c in ordered) == workers and len({c.adjusted_score for c in ordered}) == 2
    assert ordered[0].worker_id == decision.chosen_worker_id and ordered[0].adjusted_score == decision.chosen_score
    assert copied.candidates == ordered and tuple(fields["candidates"]) == tuple(map(dataclasses.asdict, ordered))
    assert copied == decision and dataclasses.replace(decision).candidates == ordered


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


# -- the scheduling rules ------------------------------------------------------------------------

def fleet(*workers: tuple[str, dict], limit: int = 4) -> tuple[HardwareAwareScheduler, Clock]:
    coordinator, clock = Coordinator(max_tasks_per_worker=limit), Clock()
    for worker_id, capabilities in workers:
        coordinator.register_worker(worker_id, capabilities)
    scheduler = HardwareAwareScheduler(coordinator, clock=clock)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    return scheduler, clock


def task(task_id: str, task_type: str = "unit", **requirements) -> dict:
    return {"task_id": task_id, "type": task_type, "priority": 1, "requirements": requirements}


def gpu_caps(memory_gb: float = 80) -> dict:
    return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64}, "cpu": {"cores": 8},
            "gpu": {"name": "A100", "cuda_compute": 8.0, "memory_gb": memory_gb}}


@dataclasses.dataclass(frozen=True, slots=True)
class GpuRow(GpuUtilization):
    """A GPU row with its health ("ok", "degraded", "lost"), as GPU health monitoring reports it."""

    health: str | None = None


def gpu_sample(worker_id: str, health: str | None = None) -> ResourceUtilization:
    gpu = GpuRow(0, f"GPU-{worker_id}", "A100", 10.0, GIB, 80 * GIB, health=health)
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                               cpu_count_effective=8, memory_total_bytes=64 * GIB,
                               memory_available_bytes=int(57 * GIB), gpus=(gpu,))


def test_with_nothing_known_the_original_choice_stands_and_each_unknown_worker_is_named_once(caplog):
    scheduler, clock = fleet(("a", caps()), ("b", caps()), ("c", caps()))
    counts = {"a": 2, "b": 0, "c": 1}  # the reference scheduler prefers the least busy: b
    scheduler.decide_task(task("t-early"), ["a", "b", "c"], counts)
    assert not [r for r in caplog.records if "has sent no hardware sample" in r.getMessage()]  # just joined
    clock.now_s += 20.0  # no sample in the staleness window (15 s) since they joined
    for n in range(3):
        decision = scheduler.decide_task(task(f"t{n}"), ["a", "b", "c"], counts)
        assert decision.chosen_worker_id == decision.original_worker_id == "b"
        assert decision.chosen_score == decision.original_score and decision.exclusions == ()
    warnings = [r.getMessage() for r in caplog.records if "has sent no hardware sample" in r.getMessage()]
    assert sorted(w.split()[1] for w in warnings) == ["a", "b", "c"]
    assert all("update_worker_utilization" in w for w in warnings)


def test_a_worker_whose_monitor_stopped_but_whose_tasks_still_end_is_not_stale():
    scheduler, clock = fleet(("lagging", caps()), ("gone", caps()))
    scheduler.observe(sample("lagging", 10.0, 10.0))
    scheduler.observe(sample("gone", 10.0, 10.0))
    clock.now_s += 30.0  # no sample from either for 30 s (stale after 15 s)
    scheduler.task_finished("earlier", "lagging", success=True)  # the coordinator sees it alive
    decision = scheduler.decide_task(task("t1"), ["lagging", "gone"], {})
    assert decision.chosen_worker_id == "lagging"
    assert [(e.worker_id, e.kind) for e in decision.exclusions] == [("gone", ExclusionKind.STALE)]


def test_no_gpu_task_on_a_lost_gpu_but_cpu_tasks_still_run_there():
    scheduler, _ = fleet(("lost", gpu_caps()), ("ok", gpu_caps()))
    scheduler.observe(gpu_sample("lost", health="lost"))
    scheduler.observe(gpu_sample("ok", health="degraded"))  # degraded: still usable
    decision = scheduler.decide_task(task("g1", "train", hardware=["gpu"]), ["lost", "ok"], {})
    assert decision.chosen_worker_id == "ok"
    assert [(e.worker_id, e.kind, e.reason) for e in decision.exclusions] == [
        ("lost", ExclusionKind.GPU_UNHEALTHY, "no healthy GPU (1 of 1 lost)")]
    assert scheduler.decide_task(task("c1"), ["lost"], {}).chosen_worker_id == "lost"


def test_an_exclusive_task_gets_a_worker_to_itself():
    scheduler, _ = fleet(("a", caps()), ("b", caps()))
    scheduler.observe(sample("a", 10.0, 10.0))
    scheduler.observe(sample("b", 10.0, 10.0))
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="exclusive"), ["a", "b"], {"a": 1, "b": 0})
    assert bench.chosen_worker_id == "b" and bench.isolation == "exclusive"
    (busy,) = bench.exclusions
    assert (busy.worker_id, busy.kind, busy.reason) == ("a", ExclusionKind.ISOLATION,
                                                        "exclusive: 1 task(s) of ours there")
    other = scheduler.decide_task(task("unit"), ["b"], {"b": 1})
    assert other.chosen_worker_id is None and other.exclusions[0].reason == "running exclusive task bench"
    scheduler.task_finished("bench", "b", success=True)
    assert scheduler.decide_task(task("unit"), ["b"], {"b": 0}).chosen_worker_id == "b"


def test_predictions_are_capped_at_the_largest_worker_and_a_failure_raises_that_task_only():
    scheduler, _ = fleet(("small", caps(memory_gb=16)), ("big", caps(memory_gb=64)))
    # The type once peaked at 100 GiB: more than any worker has; capped, it still fits "big" drained.
    scheduler.history.record("big", "huge", success=True, duration_s=10.0, cpu_seconds=10.0,
                             peak_rss_bytes=100 * GIB)
    scheduler.observe(sample("small", 10.0, 5.0))
    scheduler.observe(sample("big", 10.0, 5.0, memory_gb=64))
    decision = scheduler.decide_task(task("h1", "huge"), ["small", "big"], {})
    assert decision.chosen_worker_id == "big"
    assert [(e.worker_id, e.kind) for e in decision.exclusions] == [("small", ExclusionKind.MEMORY_FIT)]
    # A failed attempt that peaked at 10 GiB: beside a task of ours its retry needs 15 GiB
    # (1.5x), more than "small" has free (14.4 GiB); another task of the type is not raised.
    scheduler2, _ = fleet(("small", caps(memory_gb=16)), ("big", caps(memory_gb=64)))
    scheduler2.history.record("big", "build", success=True, duration_s=10.0, cpu_seconds=10.0,
                              peak_rss_bytes=2 * GIB)
    scheduler2.observe(sample("small", 10.0, 10.0))
    scheduler2.observe(sample("big", 80.0, 5.0, memory_gb=64))  # busy CPU: "small" preferred while it fits
    scheduler2.task_finished("b1", "small", success=False, task_type="build", duration_s=5.0,
                             peak_rss_bytes=10 * GIB)
    assert scheduler2.history.fleet_stats("build").memory_bytes == 2 * GIB
    running = {"small": 1}
    assert scheduler2.decide_task(task("b1", "build"), ["small", "big"], running).chosen_worker_id == "big"
    assert scheduler2.decide_task(task("b2", "build"), ["small", "big"], running).chosen_worker_id == "small"


def test_a_retry_asks_for_its_raised_estimate_once_without_headroom_on_top():
    # The type's runs peaked at 4 GiB; one attempt was OOM-killed at 10 GiB. Its retry asks for
    # 1.5 x 10 = 15 GiB beside a task of ours (not 15 x 1.25 = 18.75 GiB): its figure is
    # 15 / 1.25 = 12 GiB, and the fit check adds the headroom to it.
    scheduler, clock = fleet(("w", caps(memory_gb=32)))
    running = {"w": 1}
    scheduler.history.record("w", "etl", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=4 * GIB)
    scheduler.task_finished("e1", "w", success=False, task_type="etl", duration_s=5.0, peak_rss_bytes=10 * GIB,
                            error="out of memory (killed by the OOM killer)")
    scheduler.observe(sample("w", 10.0, 55.0, memory_gb=32))  # 14.4 GiB free < 15 GiB
    held = scheduler.decide_task(task("e1", "etl"), ["w"], running)
    assert held.chosen_worker_id is None
    (exclusion,) = held.exclusions
    assert exclusion.kind == ExclusionKind.MEMORY_FIT
    assert (exclusion.value, exclusion.limit) == (12 * GIB, int(32 * GIB * 0.45))
    assert exclusion.reason == "predicted memory 12.0 GiB (+25% headroom) > free 14.4 GiB"
    clock.now_s += 1.0
    scheduler.observe(sample("w", 10.0, 52.5, memory_gb=32))  # 15.2 GiB free >= 15 GiB
    placed = scheduler.decide_task(task("e1", "etl"), ["w"], running)
    assert placed.chosen_worker_id == "w" and "memory 12.0 GiB" in placed.explanation
    # In flight at its figure; the type's estimate is still its successful runs' 4 GiB.
    assert scheduler._views["w"].inflight["e1"].memory_bytes == 12 * GIB
    assert scheduler.history.fleet_stats("etl").memory_bytes == 4 * GIB


def test_a_held_task_is_decided_again_only_when_something_could_make_room():
    scheduler, clock = fleet(("w", caps(memory_gb=16)))
    scheduler.history.record("w", "big", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=8 * GIB)
    scheduler.observe(sample("w", 10.0, 75.0))  # 4 GiB free < 10 GiB
    for _ in range(5):
        assert scheduler.decide_task(task("t", "big"), ["w"], {}).chosen_worker_id is None
        clock.now_s += 1.0
        scheduler.observe(sample("w", 12.0, 75.0))  # no more room
    stats = scheduler.statistics()
    assert (stats["decisions"], stats["asked_again_unchanged"]) == (1, 4)
    scheduler.observe(sample("w", 10.0, 20.0))  # memory freed
    assert scheduler.decide_task(task("t", "big"), ["w"], {}).chosen_worker_id == "w"
    assert scheduler.statistics()["decisions"] == 2


def test_a_held_task_is_decided_again_only_when_memory_frees_up_to_its_need():
    scheduler, clock = fleet(("w", caps(memory_gb=16)))
    scheduler.history.record("w", "big", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=8 * GIB)
    scheduler.observe(sample("w", 10.0, 75.0))  # 4 GiB free; the task needs 8 GiB, 10 GiB with headroom
    running = {"w": 1}  # a task of ours runs there: the headroom applies
    assert scheduler.decide_task(task("t", "big"), ["w"], running).chosen_worker_id is None
    clock.now_s += 1.0
    scheduler.observe(sample("w", 10.0, 62.5))  # 6 GiB free: more room, not enough for this task
    assert scheduler.decide_task(task("t", "big"), ["w"], running).chosen_worker_id is None
    assert (scheduler.statistics()["decisions"], scheduler.statistics()["asked_again_unchanged"]) == (1, 1)
    clock.now_s += 1.0
    scheduler.observe(sample("w", 10.0, 50.0))  # 8 GiB free: its need without headroom, worth a look
    assert scheduler.decide_task(task("t", "big"), ["w"], running).chosen_worker_id is None  # 8 * 1.25 > 8
    assert scheduler.statistics()["decisions"] == 2
    clock.now_s += 1.0
    scheduler.observe(sample("w", 40.0, 50.0))  # the CPU changed, not the room
    assert scheduler.decide_task(task("t", "big"), ["w"], running).chosen_worker_id is None
    assert scheduler.statistics()["decisions"] == 2
    clock.now_s += 1.0
    scheduler.observe(sample("w", 10.0, 30.0))  # 11.2 GiB free
    assert scheduler.decide_task(task("t", "big"), ["w"], running).chosen_worker_id == "w"
    assert scheduler.statistics()["decisions"] == 3


def test_room_a_held_task_cannot_use_does_not_have_it_decided_again():
    # A GPU task held for host memory on "g" (50 GiB with headroom > 20 GiB free) is not
    # decided again when the GPU frees memory, nor when "c", a CPU worker it cannot run on,
    # frees 100 GiB; it is when "g" frees host memory.
    scheduler, clock = fleet(("g", gpu_caps()), ("c", caps(memory_gb=128)))
    scheduler.history.record("g", "infer", success=True, duration_s=10.0, cpu_seconds=10.0,
                             peak_rss_bytes=40 * GIB, gpu_memory_bytes=5 * GIB, gpu_percent=30.0)

    def on_g(free_gb: float, gpu_used_gb: float) -> ResourceUtilization:
        gpu = GpuRow(0, "GPU-g", "A100", 10.0, int(gpu_used_gb * GIB), 80 * GIB)
        return ResourceUtilization(worker_id="g", timestamp=utc_now(), cpu_percent=10.0,
                                   memory_percent=100.0 * (64 - free_gb) / 64, cpu_count_effective=8,
                                   memory_total_bytes=64 * GIB, memory_available_bytes=int(free_gb * GIB),
                                   gpus=(gpu,))

    scheduler.observe(on_g(20.0, 30.0))
    scheduler.observe(sample("c", 10.0, 90.0, memory_gb=128))
    infer = task("t", "infer", hardware=["gpu"])
    held = scheduler.decide_task(infer, ["g", "c"], {})
    assert held.chosen_worker_id is None
    assert [(e.worker_id, e.kind) for e in held.exclusions] == [("c", ExclusionKind.HARDWARE),
                                                                ("g", ExclusionKind.MEMORY_FIT)]
    clock.now_s += 1.0
    scheduler.observe(on_g(20.0, 1.0))  # 29 GiB more GPU memory free: not what it lacks
    assert scheduler.decide_task(infer, ["g", "c"], {}).chosen_worker_id is None
    clock.now_s += 1.0
    scheduler.observe(sample("c", 10.0, 10.0, memory_gb=128))  # 115 GiB free where it cannot run
    assert scheduler.decide_task(infer, ["g", "c"], {}).chosen_worker_id is None
    assert (scheduler.statistics()["decisions"], scheduler.statistics()["asked_again_unchanged"]) == (1, 2)
    clock.now_s += 1.0
    scheduler.observe(on_g(60.0, 1.0))  # host memory freed on "g"
    assert scheduler.decide_task(infer, ["g", "c"], {}).chosen_worker_id == "g"
    assert scheduler.statistics()["decisions"] == 2


def test_a_held_task_is_decided_again_when_a_worker_it_did_not_see_frees_a_slot():
    # Its only GPU worker was full (not offered), the CPU worker cannot run it: held, lacking
    # no memory. A task's end on "g" makes "g" a candidate it has not been judged on.
    scheduler, clock = fleet(("g", gpu_caps()), ("c", caps()))
    scheduler.observe(gpu_sample("g"))
    scheduler.observe(sample("c", 10.0, 10.0))
    infer = task("t", "infer", hardware=["gpu"])
    held = scheduler.decide_task(infer, ["c"], {"g": 4})
    assert held.chosen_worker_id is None and [e.kind for e in held.exclusions] == [ExclusionKind.HARDWARE]
    clock.now_s += 1.0
    scheduler.task_started("other", "unit", "g")
    scheduler.task_finished("other", "g", success=True)
    assert scheduler.decide_task(infer, ["g", "c"], {"g": 3}).chosen_worker_id == "g"
    assert scheduler.statistics()["decisions"] == 2


def gpu_in_use(worker_id: str, total_gb: float, used_gb: float) -> ResourceUtilization:
    gpu = GpuRow(0, f"GPU-{worker_id}", "A100", 50.0, int(used_gb * GIB), int(total_gb * GIB))
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                               cpu_count_effective=8, memory_total_bytes=64 * GIB,
                               memory_available_bytes=int(57 * GIB), gpus=(gpu,))


def test_a_starving_gpu_task_reserves_the_smallest_gpu_it_fits_not_the_only_large_one():
    # A task that needs 24 GB (30 GiB with headroom) fits an idle 40 GB GPU and an idle 80 GB
    # one; both have 20 GiB free now. The 80 GB worker runs fewer tasks, but it is the one a
    # task needing more than 40 GB can only run on: the 40 GB worker is reserved.
    scheduler, clock = fleet(("h100", gpu_caps(80)), ("a100", gpu_caps(40)))
    counts = {"h100": 1, "a100": 2}
    train = task("train", "train", hardware=["gpu"], min_gpu_memory_gb=24)
    for _ in range(4):  # waits past reserve_after_s (30 s)
        scheduler.observe(gpu_in_use("h100", 80, 60))
        scheduler.observe(gpu_in_use("a100", 40, 20))
        decision = scheduler.decide_task(train, ["h100", "a100"], counts)
        assert decision.chosen_worker_id is None
        assert {e.kind for e in decision.exclusions} == {ExclusionKind.GPU_MEMORY_FIT}
        clock.now_s += 12.0  # past recheck_s: decided again
    assert scheduler._reservations.reserved() == {"a100": "train"}


def test_memory_kept_for_a_reserved_task_makes_no_room_for_the_others():
    scheduler, clock = fleet(("a", caps(memory_gb=16)), ("b", caps(memory_gb=16)))
    for task_type, peak_gb in (("big", 8), ("mid", 6)):
        scheduler.history.record("a", task_type, success=True, duration_s=10.0, cpu_seconds=10.0,
                                 peak_rss_bytes=peak_gb * GIB)
    scheduler.observe(sample("a", 10.0, 75.0))  # 4 GiB free on each
    scheduler.observe(sample("b", 10.0, 75.0))
    for _ in range(4):  # "big" waits past reserve_after_s (30 s) and reserves a worker
        assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id is None
        clock.now_s += 12.0  # past recheck_s: decided again
        scheduler.observe(sample("a", 10.0, 75.0))
        scheduler.observe(sample("b", 10.0, 75.0))
    assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id is None
    (kept,) = scheduler._reservations.reserved()
    assert scheduler.decide_task(task("mid", "mid"), ["a", "b"], {}).chosen_worker_id is None
    decisions = scheduler.statistics()["decisions"]
    scheduler.observe(sample(kept, 10.0, 50.0))  # 8 GiB free there, all of it kept for "big"
    assert scheduler.decide_task(task("mid", "mid"), ["a", "b"], {}).chosen_worker_id is None
    assert scheduler.statistics()["decisions"] == decisions  # no room for "mid": not decided again
    # Its own worker, drained (no headroom needed): decided again and placed there.
    assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id == kept
    assert scheduler.statistics()["decisions"] == decisions + 1


def test_a_waiting_task_s_held_decision_says_why_until_it_is_placed():
    scheduler, clock = fleet(("a", caps(memory_gb=16)))
    scheduler.history.record("a", "mid", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=6 * GIB)
    scheduler.observe(sample("a", 10.0, 75.0))  # 4 GiB free: no room for 6 GiB
    assert scheduler.held_decision("m1") is None  # never decided
    held = scheduler.decide_task(task("m1", "mid"), ["a"], {})
    assert scheduler.held_decision("m1") is held
    assert [(e.worker_id, e.kind) for e in held.exclusions] == [("a", ExclusionKind.MEMORY_FIT)]
    clock.now_s += 1.0
    scheduler.observe(sample("a", 10.0, 25.0))  # 12 GiB free
    assert scheduler.decide_task(task("m1", "mid"), ["a"], {}).chosen_worker_id == "a"
    assert scheduler.held_decision("m1") is None  # placed


def test_a_reserved_worker_takes_a_task_predicted_to_end_before_the_reserved_need_fits():
    # "a" (16 GiB, 4 GiB of background) runs a "filler" of ours (6 GiB peaks, 100 s): 8.5 GiB
    # are free beside its peak with headroom. "big" (8 GiB, 10 with headroom) waits and reserves
    # "a"; it fits there once "filler" ends, predicted at 100 s after its start. A "unit" (20 s)
    # placed before then ends first and delays nothing: it goes there. A "slow" task (600 s) is
    # kept off, and so is a "unit" asked too late to end in time.
    scheduler, clock = fleet(("a", caps(memory_gb=16)))
    for task_type, peak_gb, duration_s in (("filler", 6, 100.0), ("big", 8, 10.0), ("unit", 2, 20.0),
                                           ("slow", 2, 600.0)):
        scheduler.history.record("a", task_type, success=True, duration_s=duration_s, cpu_seconds=duration_s,
                                 peak_rss_bytes=peak_gb * GIB)
    scheduler.observe(sample("a", 10.0, 25.0))
    started_s = clock.now_s
    assert scheduler.decide_task(task("f", "filler"), ["a"], {}).chosen_worker_id == "a"
    for _ in range(4):  # "big" waits past reserve_after_s (30 s) and reserves "a"
        clock.now_s += 12.0
        scheduler.observe(sample("a", 10.0, 25.0))
        assert scheduler.decide_task(task("big", "big"), ["a"], {}).chosen_worker_id is None
    assert scheduler._reservations.reserved() == {"a": "big"} and clock.now_s - started_s == 48.0
    held = scheduler.decide_task(task("s", "slow"), ["a"], {})
    assert [e.kind for e in held.exclusions] == [ExclusionKind.RESERVED]
    assert scheduler.decide_task(task("u1", "unit"), ["a"], {}).chosen_worker_id == "a"  # ends at 68 s < 100 s
    clock.now_s = started_s + 85.0
    scheduler.observe(sample("a", 10.0, 25.0))
    held = scheduler.decide_task(task("u2", "unit"), ["a"], {})  # would end at 105 s
    assert [e.kind for e in held.exclusions] == [ExclusionKind.RESERVED]


def test_room_a_task_placed_since_has_taken_has_no_held_task_decided_again():
    # "a" (16 GiB) runs a task of ours and shows 4 GiB free: two "mid" tasks (6 GiB, 7.5 GiB
    # with headroom) are held. A sample shows 10 GiB free: room for either, not both. The first
    # takes it (6 GiB in flight, 4 GiB left); the second is not decided again for room that is gone.
    scheduler, clock = fleet(("a", caps()))
    scheduler.history.record("a", "mid", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=6 * GIB)
    scheduler.task_started("running", "other", "a")
    scheduler.observe(sample("a", 10.0, 75.0))
    for task_id in ("m1", "m2"):
        held = scheduler.decide_task(task(task_id, "mid"), ["a"], {})
        assert [(e.kind, e.value) for e in held.exclusions] == [(ExclusionKind.MEMORY_FIT, 6 * GIB)]
    clock.now_s += 1.0
    scheduler.observe(sample("a", 10.0, 37.5))  # 10 GiB free
    assert scheduler.decide_task(task("m1", "mid"), ["a"], {}).chosen_worker_id == "a"
    assert scheduler._views["a"].inflight_memory_bytes == 6 * GIB
    assert scheduler.decide_task(task("m2", "mid"), ["a"], {}).chosen_worker_id is None
    assert (scheduler.statistics()["decisions"], scheduler.statistics()["asked_again_unchanged"]) == (3, 1)
    clock.now_s += 1.0
    scheduler.observe(sample("a", 10.0, 0.0))  # 16 GiB free, 10 GiB of it left beside "m1"
    assert scheduler.decide_task(task("m2", "mid"), ["a"], {}).chosen_worker_id == "a"
    assert scheduler.statistics()["decisions"] == 4


def test_a_reservation_ending_serves_only_tasks_with_room_on_the_worker_it_kept_from_them():
    # "big" (8 GiB) reserves one of two 16 GiB workers; "mid" (6 GiB) is held, kept off that one
    # and lacking memory on the other. "big" is placed on its worker, ending the reservation: 6
    # GiB are left there beside it, no room for "mid" (7.5 GiB with headroom), which is not
    # decided again; a "unit" (2 GiB) kept off it the same way is, and placed there.
    scheduler, clock = fleet(("a", caps(memory_gb=16)), ("b", caps(memory_gb=16)))
    for task_type, peak_gb in (("big", 8), ("mid", 6), ("unit", 2)):
        scheduler.history.record("a", task_type, success=True, duration_s=10.0, cpu_seconds=10.0,
                                 peak_rss_bytes=peak_gb * GIB)
    for worker_id in ("a", "b"):
        scheduler.task_started(f"running-{worker_id}", "other", worker_id)
        scheduler.observe(sample(worker_id, 10.0, 90.0))  # 1.6 GiB free on each
    for _ in range(4):  # "big" waits past reserve_after_s (30 s) and reserves a worker
        assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id is None
        clock.now_s += 12.0
        for worker_id in ("a", "b"):
            scheduler.observe(sample(worker_id, 10.0, 90.0))
    assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id is None
    (kept,) = scheduler._reservations.reserved()
    other = "b" if kept == "a" else "a"
    for held_task in (task("mid", "mid"), task("unit", "unit")):
        held = scheduler.decide_task(held_task, ["a", "b"], {})
        assert {(e.worker_id, e.kind) for e in held.exclusions} == {(kept, ExclusionKind.RESERVED),
                                                                   (other, ExclusionKind.MEMORY_FIT)}
    scheduler.task_finished(f"running-{kept}", kept, success=True)
    scheduler.observe(sample(kept, 10.0, 12.5))  # 14 GiB free, drained: "big" (8 GiB) is placed there
    assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id == kept
    assert scheduler._reservations.reserved() == {}
    decisions = scheduler.statistics()["decisions"]
    assert scheduler.decide_task(task("mid", "mid"), ["a", "b"], {}).chosen_worker_id is None  # 6 x 1.25 > 6
    assert scheduler.statistics()["decisions"] == decisions
    assert scheduler.decide_task(task("unit", "unit"), ["a", "b"], {}).chosen_worker_id == kept
    assert scheduler.statistics()["decisions"] == decisions + 1


def test_a_running_task_is_spoken_for_at_its_predicted_peak_while_its_memory_grows():
    # "a" (32 GiB) shows 30 GiB free; a "data" task (20 GiB peaks) goes there. A sample taken
    # 10 s later shows it (no longer in flight) holding 4 GiB so far: 26 GiB free. Another
    # "data" task (25 GiB with headroom) does not go there: 32 GiB less the 25 GiB the first
    # may reach (its peak with the headroom its own check asked for) leaves 7 GiB. A "unit"
    # (2.5 GiB with headroom) still does; once the first ends, the second does.
    scheduler, clock = fleet(("a", caps(memory_gb=32)))
    for task_type, peak_gb in (("data", 20), ("unit", 2)):
        scheduler.history.record("a", task_type, success=True, duration_s=10.0, cpu_seconds=10.0,
                                 peak_rss_bytes=peak_gb * GIB)
    scheduler.observe(sample("a", 10.0, 6.25, memory_gb=32))
    first = scheduler.decide_task(task("d1", "data"), ["a"], {})
    assert first.chosen_worker_id == "a"
    scheduler.task_started("d1", "data", "a")
    clock.now_s += 10.0
    later = dataclasses.replace(sample("a", 10.0, 18.75, memory_gb=32),
                                timestamp=first.timestamp + timedelta(seconds=10))
    scheduler.observe(later)
    view = scheduler._views["a"]
    assert (view.inflight, view.memory_free_bytes) == ({}, 7 * GIB)
    second = scheduler.decide_task(task("d2", "data"), ["a"], {"a": 1})
    assert second.chosen_worker_id is None
    assert [(e.kind, e.reason) for e in second.exclusions] == [
        (ExclusionKind.MEMORY_FIT, "predicted memory 20.0 GiB (+25% headroom) > free 7.0 GiB")]
    assert scheduler.decide_task(task("u1", "unit"), ["a"], {"a": 1}).chosen_worker_id == "a"
    scheduler.task_started("u1", "unit", "a")
    scheduler.task_finished("d1", "a", success=True)
    assert scheduler.decide_task(task("d2", "data"), ["a"], {"a": 1}).chosen_worker_id == "a"


def test_nothing_pushes_a_running_quiet_task_over_the_quiet_threshold():
    scheduler, _ = fleet(("a", caps()), ("b", caps()))
    scheduler.history.record("elsewhere", "benchmark", success=True, duration_s=10.0, cpu_seconds=10.0)
    scheduler.observe(sample("a", 40.0, 10.0))
    scheduler.observe(sample("b", 60.0, 10.0))
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a", "b"], {})
    assert bench.chosen_worker_id == "a"  # 40 % + 1 core of 8 = 52.5 %, under 80 %
    # On "a": 52.5 % + 3 more cores of 8 in flight... a build of 4 cores would reach 102.5 %.
    scheduler.history.record("b", "build", success=True, duration_s=10.0, cpu_seconds=40.0)
    build = scheduler.decide_task(task("build", "build"), ["a"], {})
    assert build.chosen_worker_id is None
    (refused,) = build.exclusions
    assert (refused.kind, refused.resource, refused.value, refused.limit) == (ExclusionKind.ISOLATION, "cpu",
                                                                           102.5, 80.0)
    # A unit, no run of its type measured yet, may take as much as the heaviest type measured
    # (the build's 4 cores): 52.5 % + 50 % = 102.5 %. Once one ran at 1 core: 65 %, quiet still.
    unit = scheduler.decide_task(task("unit", "unit"), ["a"], {})
    assert unit.chosen_worker_id is None
    assert [(e.kind, e.value) for e in unit.exclusions] == [(ExclusionKind.ISOLATION, 102.5)]
    scheduler.history.record("b", "unit", success=True, duration_s=10.0, cpu_seconds=10.0)
    assert scheduler.decide_task(task("unit2", "unit"), ["a"], {}).chosen_worker_id == "a"
    scheduler.task_finished("bench", "a", success=True)
    assert scheduler.decide_task(task("build", "build"), ["a"], {}).chosen_worker_id == "a"


def test_a_quiet_promise_holds_on_a_worker_whose_samples_stopped():
    # "late" last showed 70 % CPU, then its samples stopped (20 s > 3 intervals of 5 s) while a
    # task ended there (the coordinator sees it alive): its load is unknown for scoring, but
    # 70 % + 1 core of 8 = 82.5 % is the best estimate and breaks the quiet threshold (80 %).
    # "cool" stopped the same way at 40 %: 52.5 % keeps the promise, so the bench goes there.
    scheduler, clock = fleet(("late", caps()), ("cool", caps()), ("calm", caps()))
    scheduler.history.record("elsewhere", "benchmark", success=True, duration_s=10.0, cpu_seconds=10.0)
    scheduler.observe(sample("late", 70.0, 10.0))
    scheduler.observe(sample("cool", 40.0, 10.0))
    clock.now_s += 20.0
    scheduler.observe(sample("calm", 30.0, 10.0))
    for worker_id in ("late", "cool"):
        scheduler.task_started(f"gone-{worker_id}", "unit", worker_id)
        scheduler.task_finished(f"gone-{worker_id}", worker_id, success=True)
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["late"], {})
    assert bench.chosen_worker_id is None
    (refused,) = bench.exclusions
    assert (refused.kind, refused.resource, refused.value, refused.limit) == (ExclusionKind.ISOLATION, "cpu",
                                                                           82.5, 80.0)
    assert scheduler.decide_task(task("unit", "unit"), ["late"], {}).chosen_worker_id == "late"  # shared: unknown
    assert scheduler.decide_task(task("bench2", "benchmark", isolation="quiet"), ["late", "cool"],
                                 {"late": 1}).chosen_worker_id == "cool"


def test_a_quiet_task_of_a_type_never_measured_counts_as_filling_its_share():
    # No benchmark has run yet: its cores could be any number, so it counts at the most a quiet
    # task's own share may (80 - 25 = 55 % of the worker), not at the 1-core default that
    # scores shared work. "a" at 30 %: 85 % > 80 %; "b" at 20 %: 75 %.
    scheduler, _ = fleet(("a", caps()), ("b", caps()))
    scheduler.observe(sample("a", 30.0, 10.0))
    scheduler.observe(sample("b", 20.0, 10.0))
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a", "b"], {})
    assert bench.chosen_worker_id == "b"
    assert [(e.worker_id, e.kind, e.resource, e.value) for e in bench.exclusions] == [
        ("a", ExclusionKind.ISOLATION, "cpu", 85.0)]


def test_one_quiet_task_of_a_type_never_measured_goes_as_its_probe_to_the_quietest_worker():
    # A build ran at 6 cores; no benchmark has run. The first benchmark is its type's probe on
    # the quietest worker, "b" (40 %), where it counts as the heaviest type measured (the
    # 1-core default + 5 cores of spread): 40 + 6 / 32 = 58.75 % <= 80 %. At its share (55 %)
    # it would be 95 % there and wait for a worker under 25 %, and the type would stay
    # unmeasured. On "a" (50 %) it counts at its share: 105 %.
    scheduler, _ = fleet(("a", caps(cores=32, memory_gb=128)), ("b", caps(cores=32, memory_gb=128)))
    scheduler.history.record("elsewhere", "build", success=True, duration_s=10.0, cpu_seconds=60.0)
    scheduler.observe(sample("a", 50.0, 10.0, memory_gb=128, cores=32))
    scheduler.observe(sample("b", 40.0, 10.0, memory_gb=128, cores=32))
    probe = scheduler.decide_task(task("bench1", "benchmark", isolation="quiet"), ["a", "b"], {})
    assert probe.chosen_worker_id == "b"
    assert [(e.worker_id, e.kind, e.resource, e.value) for e in probe.exclusions] == [
        ("a", ExclusionKind.ISOLATION, "cpu", 105.0)]
    scheduler.task_started("bench1", "benchmark", "b")
    # While the probe runs, the next benchmark counts at its share on every worker.
    second = scheduler.decide_task(task("bench2", "benchmark", isolation="quiet"), ["a"], {})
    assert second.chosen_worker_id is None
    assert [(e.worker_id, e.value) for e in second.exclusions] == [("a", 105.0)]
    # The probe ended and measured its type (2 cores): the next one counts at that on "a".
    scheduler.task_finished("bench1", "b", success=True, task_type="benchmark", duration_s=10.0, cpu_seconds=20.0)
    assert scheduler.decide_task(task("bench3", "benchmark", isolation="quiet"), ["a"], {}).chosen_worker_id == "a"


def test_a_task_of_a_type_never_measured_counts_as_the_heaviest_type_beside_a_quiet_task():
    # Beside the bench (1 core) on "a" at 20 %: with nothing else measured, a unit counts at
    # the 1-core default (45 %). Once a build ran at 6 cores, a type never measured may take
    # as much: 20 + 12.5 + 75 = 107.5 % > 80 %.
    scheduler, _ = fleet(("a", caps()))
    scheduler.history.record("elsewhere", "benchmark", success=True, duration_s=10.0, cpu_seconds=10.0)
    scheduler.observe(sample("a", 20.0, 10.0))
    assert scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a"], {}).chosen_worker_id == "a"
    scheduler.task_started("bench", "benchmark", "a")
    unit = scheduler.decide_task(task("unit", "unit"), ["a"], {"a": 1})
    assert unit.chosen_worker_id == "a" and unit.candidates[0].cpu_percent == 45.0
    scheduler.task_finished("unit", "a", success=True)  # decided again below
    scheduler.history.record("elsewhere", "build", success=True, duration_s=10.0, cpu_seconds=60.0)
    unit = scheduler.decide_task(task("unit2", "unit"), ["a"], {"a": 1})
    assert unit.chosen_worker_id is None
    assert [(e.kind, e.value) for e in unit.exclusions] == [(ExclusionKind.ISOLATION, 107.5)]


def test_nothing_pushes_a_quiet_task_over_the_threshold_on_a_worker_whose_samples_stopped():
    # The bench (1 core) runs on "a", last seen at 40 %; then its samples stop (20 s > 3
    # intervals) while a task ends there (alive). A build of 4 cores would take it to
    # 40 + 12.5 + 50 = 102.5 % by its last figures: refused, as on a sampled worker; a unit
    # (1 core) keeps it at 65 %.
    scheduler, clock = fleet(("a", caps()), ("b", caps()))
    for task_type, cpu_seconds in (("benchmark", 10.0), ("build", 40.0), ("unit", 10.0)):
        scheduler.history.record("elsewhere", task_type, success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    scheduler.observe(sample("a", 40.0, 10.0))
    assert scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a"], {}).chosen_worker_id == "a"
    scheduler.task_started("bench", "benchmark", "a")
    clock.now_s += 20.0
    scheduler.task_started("gone", "unit", "a")
    scheduler.task_finished("gone", "a", success=True)
    build = scheduler.decide_task(task("build", "build"), ["a"], {"a": 1})
    assert build.chosen_worker_id is None
    assert [(e.kind, e.resource, e.value) for e in build.exclusions] == [(ExclusionKind.ISOLATION, "cpu", 102.5)]
    assert scheduler.decide_task(task("unit", "unit"), ["a"], {"a": 1}).chosen_worker_id == "a"


def test_a_quiet_promise_allows_for_how_far_tasks_of_a_type_stray():
    # Benchmarks ran at 2 and 4 cores: predicted 2.6, spread 2 cores (alpha 0.3), counted
    # twice: 82.5 % of 8 cores, counted at most 80 - 25 = 55 % (a quiet task's own share is
    # capped at the threshold less the exclusive background allowance). On "a" at 40 %: 40 % +
    # 55 % = 95 % > 80 %; on "b" at 10 %: 65 %.
    scheduler, _ = fleet(("a", caps()), ("b", caps()))
    for cpu_seconds in (20.0, 40.0):
        scheduler.history.record("elsewhere", "benchmark", success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    scheduler.observe(sample("a", 40.0, 10.0))
    scheduler.observe(sample("b", 10.0, 10.0))
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a", "b"], {})
    assert bench.chosen_worker_id == "b"
    assert [(e.worker_id, e.kind, e.value) for e in bench.exclusions] == [("a", ExclusionKind.ISOLATION, 95.0)]
    # Beside the running benchmark, a unit (1 core each run, no spread) fits while 10 % + the
    # bench in flight (2.6 cores) + 1 core stay under 80 %; then a build that strays (4 and 8
    # cores: 5.2, spread 4, counted with twice its spread: quiet_spread_factor) does not:
    # 10 % + (2.6 + 1 + 5.2 + 8) of 8 cores = 220 %.
    for cpu_seconds in (10.0, 10.0):
        scheduler.history.record("elsewhere", "unit", success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    for cpu_seconds in (40.0, 80.0):
        scheduler.history.record("elsewhere", "build", success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    assert scheduler.decide_task(task("unit", "unit"), ["b"], {}).chosen_worker_id == "b"
    build = scheduler.decide_task(task("build", "build"), ["b"], {})
    assert build.chosen_worker_id is None
    assert [(e.kind, e.value) for e in build.exclusions] == [(ExclusionKind.ISOLATION, 220.0)]


def test_an_exclusive_task_is_quiet_too():
    # "perf" runs at 5 cores of 8 (62.5 %): more than a quiet promise can hold beside the 25 %
    # background an exclusive worker may have, so its own share counts at most 80 - 25 = 55 %.
    # "a" (24 %: 79 %) and "b" (10 %: 65 %) are empty with background under 25 %: both may take
    # it and the quieter one does; "c" (30 %) is not exclusive hardware by its background.
    scheduler, _ = fleet(("a", caps()), ("b", caps()), ("c", caps()))
    for _ in range(2):
        scheduler.history.record("elsewhere", "perf", success=True, duration_s=10.0, cpu_seconds=50.0)
    scheduler.observe(sample("a", 24.0, 10.0))
    scheduler.observe(sample("b", 10.0, 10.0))
    scheduler.observe(sample("c", 30.0, 10.0))
    perf = scheduler.decide_task(task("perf", "perf", isolation="exclusive"), ["a", "b", "c"], {})
    assert perf.chosen_worker_id == "b"
    assert [(e.worker_id, e.kind, e.resource, e.value) for e in perf.exclusions] == [
        ("c", ExclusionKind.ISOLATION, "cpu", 30.0)]
    assert [c.worker_id for c in perf.candidates] == ["b", "a"]


def test_a_quiet_task_counts_in_full_on_a_worker_smaller_than_the_largest_that_could_hold_it():
    # "perf" ran at 4 and 6 cores: predicted 4.6, spread 2 (alpha 0.3), counted twice: 8.6
    # cores. Its own share is capped at 80 - 25 = 55 % of the LARGEST compatible worker (16
    # cores: 8.8), so it counts in full on the 8-core "small": 10 % + 107.5 % = 117.5 % > 80 %.
    # The 16-core "big" holds it: 10 % + 53.75 %. Capped at 55 % of "small" itself (4.4 cores)
    # it would have looked quiet there (65 %).
    scheduler, _ = fleet(("small", caps(cores=8)), ("big", caps(cores=16)))
    for cpu_seconds in (40.0, 60.0):
        scheduler.history.record("elsewhere", "perf", success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    scheduler.observe(sample("small", 10.0, 10.0))
    scheduler.observe(sample("big", 10.0, 10.0, cores=16))
    perf = scheduler.decide_task(task("perf", "perf", isolation="exclusive"), ["small", "big"], {})
    assert perf.chosen_worker_id == "big"
    assert [(e.worker_id, e.kind, e.resource, e.value) for e in perf.exclusions] == [
        ("small", ExclusionKind.ISOLATION, "cpu", 117.5)]
    # A fleet of 8-core workers only: capped at 55 % of 8 cores, it still goes where the
    # background is that low (10 % + 55 %), instead of waiting for a worker no fleet has.
    scheduler, _ = fleet(("small", caps(cores=8)))
    for cpu_seconds in (40.0, 60.0):
        scheduler.history.record("elsewhere", "perf", success=True, duration_s=10.0, cpu_seconds=cpu_seconds)
    scheduler.observe(sample("small", 10.0, 10.0))
    assert scheduler.decide_task(task("perf", "perf", isolation="exclusive"), ["small"], {}).chosen_worker_id == "small"


def test_no_quiet_task_beside_a_task_in_flight_whose_type_was_never_measured():
    # A build, no run of its type measured, goes to "a" (20 %) and counts at the 1-core default
    # until a sample shows it. It may take the whole worker: a quiet bench (1 core, measured)
    # does not go beside it (20 + 100 x (1 + 8 + 1) / 8 = 145 %) but to "b" (40 + 12.5 %).
    scheduler, _ = fleet(("a", caps()), ("b", caps()))
    scheduler.history.record("elsewhere", "benchmark", success=True, duration_s=10.0, cpu_seconds=10.0)
    scheduler.observe(sample("a", 20.0, 10.0))
    scheduler.observe(sample("b", 40.0, 10.0))
    assert scheduler.decide_task(task("build", "build"), ["a"], {}).chosen_worker_id == "a"
    bench = scheduler.decide_task(task("bench", "benchmark", isolation="quiet"), ["a", "b"], {"a": 1})
    assert bench.chosen_worker_id == "b"
    assert [(e.worker_id, e.kind, e.resource, e.value) for e in bench.exclusions] == [
        ("a", ExclusionKind.ISOLATION, "cpu", 145.0)]
    # Two samples that list the build (the second one's interval all after its start) show
    # what it takes (60 % in all): a bench then goes beside it (60 + 12.5 %).
    for after_s in (3.0, 8.0):
        scheduler.observe(dataclasses.replace(sample("a", 60.0, 10.0), task_ids=("build",),
                                              timestamp=utc_now() + timedelta(seconds=after_s)))
    assert scheduler.decide_task(task("bench2", "benchmark", isolation="quiet"), ["a"],
                                 {"a": 1}).chosen_worker_id == "a"


def test_a_prediction_is_capped_by_one_worker_that_could_hold_all_of_it():
    # No worker has both the 64 GiB of memory and the 30 GiB of GPU memory the type has shown:
    # one has the memory and a 16 GB GPU, the other an 80 GB GPU and 32 GB. Capped per figure
    # over the two (memory of one, GPU memory of the other), the task fitted neither and waited
    # for ever; capped by the worker that holds the most of it, it runs there (and a run that
    # ends out of memory uses up its attempts, as on any policy).
    def gpu_worker(memory_gb: float, gpu_gb: float) -> dict:
        return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": memory_gb}, "cpu": {"cores": 32},
                "gpu": {"name": "GPU", "cuda_compute": 8.0, "memory_gb": gpu_gb}}

    scheduler, _ = fleet(("big-memory", gpu_worker(256, 16)), ("big-gpu", gpu_worker(32, 80)))
    scheduler.history.record("big-gpu", "train", success=True, duration_s=60.0, cpu_seconds=240.0,
                             peak_rss_bytes=64 * GIB, gpu_memory_bytes=30 * GIB)
    for worker_id, memory_gb, gpu_gb in (("big-memory", 256, 16), ("big-gpu", 32, 80)):
        gpu = GpuRow(0, f"GPU-{worker_id}", "GPU", 0.0, 0, int(gpu_gb * GIB))
        scheduler.observe(ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=5.0,
                                              memory_percent=1.0, cpu_count_effective=32,
                                              memory_total_bytes=int(memory_gb * GIB),
                                              memory_available_bytes=int(memory_gb * GIB * 0.99), gpus=(gpu,)))
    decision = scheduler.decide_task(task("t1", "train", hardware=["gpu"]), ["big-memory", "big-gpu"], {})
    assert decision.chosen_worker_id == "big-memory"


def test_a_quiet_task_too_big_for_the_widest_worker_counts_against_the_widest_that_holds_its_memory():
    # The 8-core worker has 8 GB, less than the 12 GiB the benchmark takes: the 4-core workers
    # are the widest that could run it, so its own cores count at most up to 55 % of 4 cores
    # there (quiet threshold less the background allowance), and it runs on a quiet one.
    scheduler, _ = fleet(("narrow", caps(cores=4, memory_gb=32)), ("wide", caps(cores=8, memory_gb=8)))
    for cores in (2.0, 3.0, 2.0, 3.0, 2.0, 3.0):
        scheduler.history.record("narrow", "bench", success=True, duration_s=10.0, cpu_seconds=10.0 * cores,
                                 peak_rss_bytes=12 * GIB)
    scheduler.observe(sample("narrow", 5.0, 5.0, memory_gb=32, cores=4))
    scheduler.observe(sample("wide", 5.0, 5.0, memory_gb=8, cores=8))
    decision = scheduler.decide_task(task("b1", "bench", isolation="quiet"), ["narrow", "wide"], {})
    assert decision.chosen_worker_id == "narrow"
    assert [(e.worker_id, e.kind) for e in decision.exclusions] == [("wide", ExclusionKind.MEMORY_FIT)]


def test_a_task_held_for_a_long_time_is_decided_again_less_and_less_often_and_keeps_its_reservation():
    scheduler, clock = fleet(("a", caps(memory_gb=16)), ("b", caps(memory_gb=16)))
    scheduler.history.record("a", "big", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=8 * GIB)
    decided_at = []
    for _ in range(120):  # asked every 5 s for 10 minutes, 4 GiB free on each worker throughout
        scheduler.observe(sample("a", 10.0, 75.0))
        scheduler.observe(sample("b", 10.0, 75.0))
        before = scheduler.statistics()["decisions"]
        assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id is None
        if scheduler.statistics()["decisions"] > before:
            decided_at.append(clock.now_s - 1000.0)
        clock.now_s += 5.0
    # Rechecked every 10 s for its first 2 minutes, then after 20, 40, then every 80 s (not every
    # 10 s: 60 decisions).
    assert decided_at == [10.0 * k for k in range(13)] + [140.0, 180.0, 260.0, 340.0, 420.0, 500.0, 580.0]
    (kept,) = scheduler._reservations.reserved()  # reserved at 30 s, and kept while it is asked
    # A change that could place it has it decided at once: its worker drained.
    scheduler.observe(sample(kept, 10.0, 10.0))
    assert scheduler.decide_task(task("big", "big"), ["a", "b"], {}).chosen_worker_id == kept


def test_an_ended_task_leaves_the_cpu_figure_at_once_not_samples_later():
    # The build's 4 cores (measured: 400 CPU seconds over 100 s) are 50 % of the worker's 8,
    # whether samples come a minute apart or every 5 s (where the smoothed figure would carry
    # half of them one sample on, a quarter two samples on).
    for interval_s in (60.0, 5.0):
        coordinator, clock = Coordinator(max_tasks_per_worker=4), Clock()
        coordinator.register_worker("w", caps())
        scheduler = HardwareAwareScheduler(coordinator, clock=clock, update_interval_s=interval_s)
        scheduler.worker_registered("w", caps())
        scheduler.observe(sample("w", 10.0, 10.0))
        assert scheduler.decide_task(task("t1", "build"), ["w"], {}).chosen_worker_id == "w"
        clock.now_s += interval_s
        for _ in range(2):  # taken after the start: the build is shown, no longer in flight
            later = utc_now() + timedelta(seconds=interval_s)
            scheduler.observe(dataclasses.replace(sample("w", 90.0, 10.0), timestamp=later))
        view = scheduler._views["w"]
        before = view.cpu_percent
        assert before > 60.0
        scheduler.task_finished("t1", "w", success=True, task_type="build", duration_s=100.0, cpu_seconds=400.0)
        assert view.cpu_percent == pytest.approx(before - 50.0)
        assert view.quiet_cpu_percent == pytest.approx(90.0)  # quiet promises wait for a sample


def test_a_sample_taken_long_after_the_one_before_weighs_as_the_intervals_it_covers():
    factors = ScoringFactors()  # ewma_alpha 0.5 per 5 s
    for gap_s, expected in ((1.0, 50.0), (5.0, 50.0), (10.0, 10.0 + 80.0 * 0.25), (60.0, 10.0 + 80.0 * 0.5**12)):
        view = WorkerView("w", registered_s=0.0)
        first = sample("w", 90.0, 10.0)
        view.observe(first, 0.0, factors)
        view.observe(dataclasses.replace(sample("w", 10.0, 10.0), timestamp=first.timestamp
                                         + timedelta(seconds=gap_s)), gap_s, factors)
        assert view.cpu_percent == pytest.approx(expected)
    view = WorkerView("w", registered_s=0.0)  # ewma_interval_s 0: per sample, whatever the gap
    view.observe(first, 0.0, factors.replace(ewma_interval_s=0.0))
    view.observe(dataclasses.replace(sample("w", 10.0, 10.0), timestamp=first.timestamp + timedelta(seconds=60)),
                 60.0, factors.replace(ewma_interval_s=0.0))
    assert view.cpu_percent == pytest.approx(50.0)


def test_an_exclusive_task_is_placed_alone_once_no_worker_has_been_quiet_for_the_patience():
    # "noisy" has a neighbour at 70 % all along; "calm" (10 %) runs a task of ours. While calm's
    # background shows it could be quiet, the exclusive task waits; on a fleet where no worker
    # has been under the 25 % allowance for isolation_patience_s (600 s), it goes alone to the
    # noisy worker at its next recheck (they are 80 s apart by then), and the decision says so.
    for calm_cpu, relaxed in ((10.0, False), (70.0, True)):
        scheduler, clock = fleet(("noisy", caps()), ("calm", caps()))
        bench = task("perf", "perf", isolation="exclusive")
        placed = None
        for _ in range(150):
            scheduler.observe(sample("noisy", 70.0, 10.0))
            scheduler.observe(sample("calm", calm_cpu, 10.0))
            decision = scheduler.decide_task(bench, ["noisy", "calm"], {"calm": 1})
            if decision.chosen_worker_id is not None:
                placed = clock.now_s - 1000.0
                break
            assert {e.kind for e in decision.exclusions} == {ExclusionKind.ISOLATION}
            clock.now_s += 5.0
        assert (placed is not None) == relaxed
        if relaxed:
            assert 600.0 <= placed <= 680.0
            assert decision.chosen_worker_id == "noisy"
            assert decision.explanation.startswith(
                "isolation exclusive relaxed: no worker's background under 25% for 600 s")
            assert scheduler._views["noisy"].exclusive_task == "perf"  # still alone there


def test_a_quiet_worker_too_small_for_the_task_does_not_hold_its_isolation_back():
    # "small" (2 cores) is quiet, but the 6-core benchmark breaks 80 % there by itself: it can
    # never offer the task isolation. Counted as a worker that might, it kept the task waiting
    # for ever beside "noisy" (8 cores, a neighbour at 70 %); now the patience runs out there.
    scheduler, clock = fleet(("noisy", caps()), ("small", caps(cores=2)))
    for worker_id in ("noisy", "small"):
        scheduler.history.record(worker_id, "perf", success=True, duration_s=100.0, cpu_seconds=600.0,
                                 peak_rss_bytes=GIB)
    bench = task("perf-1", "perf", isolation="exclusive")
    for _ in range(150):
        scheduler.observe(sample("noisy", 70.0, 10.0))
        scheduler.observe(sample("small", 10.0, 10.0, cores=2))
        decision = scheduler.decide_task(bench, ["noisy", "small"], {})
        if decision.chosen_worker_id is not None:
            break
        clock.now_s += 5.0
    assert decision.chosen_worker_id == "noisy" and 600.0 <= clock.now_s - 1000.0 <= 680.0
    assert decision.explanation.startswith("isolation exclusive relaxed")


def test_once_isolation_is_lifted_the_task_reserves_only_a_worker_that_holds_it_and_lists_each_worker_once():
    # The fleet has been noisy longer than the patience when the benchmark comes. While it waits
    # for "noisy" (8 cores, a task of ours there), it reserves "noisy", not "small", where its
    # 6 cores alone break 80 % (judged with the lifted limits, small "fitted" and was kept from
    # every other task); "small" offered twice is listed once among its exclusions.
    scheduler, clock = fleet(("noisy", caps()), ("small", caps(cores=2)))
    for worker_id in ("noisy", "small"):
        scheduler.history.record(worker_id, "perf", success=True, duration_s=100.0, cpu_seconds=600.0,
                                 peak_rss_bytes=8 * GIB)
        scheduler.history.record(worker_id, "unit", success=True, duration_s=10.0, cpu_seconds=10.0,
                                 peak_rss_bytes=4 * GIB)
    for _ in range(130):
        scheduler.observe(sample("noisy", 70.0, 10.0))
        scheduler.observe(sample("small", 10.0, 10.0, cores=2))
        clock.now_s += 5.0
    bench = task("perf-1", "perf", isolation="exclusive")
    for _ in range(10):
        scheduler.observe(sample("noisy", 70.0, 10.0))
        scheduler.observe(sample("small", 10.0, 10.0, cores=2))
        decision = scheduler.decide_task(bench, ["noisy", "small", "small"], {"noisy": 1})
        assert decision.chosen_worker_id is None
        clock.now_s += 5.0
    assert decision.explanation.startswith("isolation exclusive relaxed")
    assert sorted((e.worker_id, e.kind) for e in decision.exclusions) == [
        ("noisy", ExclusionKind.ISOLATION), ("small", ExclusionKind.ISOLATION)]
    assert scheduler._reservations.reserved() == {"noisy": "perf-1"}
    assert scheduler.decide_task(task("u1", "unit"), ["small"], {"noisy": 1}).chosen_worker_id == "small"


def test_a_larger_worker_joining_changes_what_a_quiet_task_may_take_on_a_worker_that_did_not_change():
    # A 3-core quiet benchmark on 4-core workers counts at most 55 % of the largest worker's
    # cores (2.2 of 4): it fits "w" at 10 % + 55 %. Once a 16-core worker joins it counts in
    # full (75 %), and "w" at 85 % can no longer take it, though nothing changed on "w".
    scheduler, _ = fleet(("w", caps(cores=4, memory_gb=32)), ("x", caps(cores=4, memory_gb=32)))
    scheduler.history.record("elsewhere", "bench", success=True, duration_s=100.0, cpu_seconds=300.0,
                             peak_rss_bytes=GIB)
    scheduler.observe(sample("w", 10.0, 10.0, memory_gb=32, cores=4))
    scheduler.observe(sample("x", 5.0, 10.0, memory_gb=32, cores=4))
    assert scheduler.decide_task(task("b1", "bench", isolation="quiet"), ["w", "x"], {}).chosen_worker_id == "x"
    scheduler.coordinator.register_worker("big", caps(cores=16, memory_gb=32))
    scheduler.worker_registered("big", caps(cores=16, memory_gb=32))
    scheduler.observe(sample("big", 90.0, 10.0, memory_gb=32, cores=16))
    decision = scheduler.decide_task(task("b2", "bench", isolation="quiet"), ["w", "big"], {"x": 1})
    assert decision.chosen_worker_id is None
    assert [(e.worker_id, e.reason) for e in decision.exclusions] == [
        ("w", "quiet: predicted cpu 85% > 80%"), ("big", "quiet: predicted cpu 109% > 80%")]


def test_a_task_typed_with_an_empty_string_counts_in_flight_alike_whichever_way_it_was_decided():
    # Placed at once, or after its first choice reported busy (its decision then made again),
    # the task counts in flight at its type's measured 4 cores and 4 GiB, as its decision predicted.
    for busy_first in (False, True):
        scheduler, _ = fleet(("a", caps()), ("b", caps()))
        for worker_id in ("a", "b"):
            scheduler.observe(sample(worker_id, 10.0, 10.0))
        scheduler.history.record("b", "", success=True, duration_s=10.0, cpu_seconds=40.0, peak_rss_bytes=4 * GIB)
        if busy_first:
            scheduler.coordinator.workers["a"]["status"] = "busy"
        assert scheduler.decide_task(task("t", ""), ["a", "b"] if busy_first else ["b"], {}).chosen_worker_id == "b"
        placed = scheduler._views["b"].inflight["t"]
        assert (placed.cores, placed.memory_bytes, placed.cores_measured) == (4.0, 4 * GIB, True)


def test_an_exclusive_task_waiting_twice_the_patience_is_placed_alone_when_no_worker_is_quiet_now():
    # "calm" runs a long task of ours, and its background dips under 25 % one sample in twenty:
    # each dip restarts the patience, so the fleet never went 600 s without a quiet worker and
    # the benchmark waited for ever beside "noisy" (a neighbour at 40 %). After twice the
    # patience of its own wait, at a sample where no worker that could hold it is quiet, it goes
    # alone to "noisy".
    scheduler, clock = fleet(("noisy", caps()), ("calm", caps()))
    bench = task("perf-1", "perf", isolation="exclusive")
    for step in range(400):
        scheduler.observe(sample("noisy", 40.0, 10.0))
        scheduler.observe(sample("calm", 20.0 if step % 20 == 0 else 30.0, 10.0))
        decision = scheduler.decide_task(bench, ["noisy", "calm"], {"calm": 1})
        if decision.chosen_worker_id is not None:
            break
        clock.now_s += 5.0
    assert decision.chosen_worker_id == "noisy" and 1200.0 <= clock.now_s - 1000.0 <= 1300.0
    assert decision.explanation.startswith(
        f"isolation exclusive relaxed: no worker's background under 25% now, after a wait of "
        f"{clock.now_s - 1000.0:.0f} s")


def test_a_figure_a_worker_does_not_state_caps_no_prediction():
    # "big" states no GPU memory (a MIG GPU): it could hold any GPU need, as the fit check reads
    # it. Capped as if it had none, the task's 64 GiB were cut to what "small" holds (10.9 GiB)
    # and it went to "small", which runs out of memory there.
    def worker(memory_gb: float, gpu_gb: float | None) -> dict:
        gpu = {"name": "GPU", "cuda_compute": 8.0, **({"memory_gb": gpu_gb} if gpu_gb else {})}
        return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": memory_gb}, "cpu": {"cores": 32}, "gpu": gpu}

    scheduler, _ = fleet(("big", worker(256, None)), ("small", worker(16, 16)))
    scheduler.history.record("big", "train", success=True, duration_s=60.0, cpu_seconds=60.0,
                             peak_rss_bytes=64 * GIB, gpu_memory_bytes=8 * GIB)
    scheduler.observe(sample("big", 5.0, 1.0, memory_gb=256, cores=32))
    scheduler.observe(sample("small", 5.0, 1.0, memory_gb=16, cores=32))
    decision = scheduler.decide_task(task("t1", "train", hardware=["gpu"]), ["big", "small"], {})
    assert decision.chosen_worker_id == "big"
    assert [(e.worker_id, e.kind) for e in decision.exclusions] == [("small", ExclusionKind.MEMORY_FIT)]


def test_isolation_is_lifted_only_after_every_fitting_worker_has_been_sampled_noisy_for_the_patience():
    # A quiet 8-core worker, then a GPU worker joining with a noisy neighbour: the exclusive GPU
    # task waits 600 s of the GPU worker's own samples, not of the fleet's. Whose cores are not
    # known, or that run a task of a type never measured, cannot be told noisy: no lifting.
    gpu_caps_16 = {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64}, "cpu": {"cores": 16},
                   "gpu": {"name": "A100", "cuda_compute": 8.0, "memory_gb": 80}}
    scheduler, clock = fleet(("cpu", caps()))
    for _ in range(140):
        scheduler.observe(sample("cpu", 10.0, 10.0))
        clock.now_s += 5.0
    scheduler.coordinator.register_worker("gpu", gpu_caps_16)
    scheduler.worker_registered("gpu", gpu_caps_16)
    joined = clock.now_s
    bench = task("x", "gbench", hardware=["gpu"], isolation="exclusive")
    while True:
        scheduler.observe(sample("cpu", 10.0, 10.0))
        scheduler.observe(sample("gpu", 70.0, 10.0, memory_gb=64, cores=16))
        decision = scheduler.decide_task(bench, ["cpu", "gpu"], {})
        if decision.chosen_worker_id is not None:
            break
        clock.now_s += 5.0
    assert decision.chosen_worker_id == "gpu" and 600.0 <= clock.now_s - joined <= 680.0
    assert "relaxed" in decision.explanation

    for unknown in ("cores", "unmeasured task"):
        # A task of ours runs there, and the 95 % may be its: the worker's cores unknown, or its
        # type never measured.
        scheduler, clock = fleet(("w", caps()))
        if unknown == "cores":
            scheduler.history.record("w", "render", success=True, duration_s=10.0, cpu_seconds=40.0)
        scheduler.observe(sample("w", 10.0, 10.0))
        assert scheduler.decide_task(task("r1", "render"), ["w"], {}).chosen_worker_id == "w"
        for _ in range(200):
            raw = sample("w", 95.0, 10.0)
            scheduler.observe(dataclasses.replace(raw, cpu_count_effective=None) if unknown == "cores" else raw)
            decision = scheduler.decide_task(task("q", "bench", isolation="quiet"), ["w"], {"w": 1})
            assert decision.chosen_worker_id is None, (unknown, clock.now_s)
            clock.now_s += 5.0


def test_a_worker_offered_to_a_task_held_for_long_has_it_decided_at_once():
    # Held for 5 minutes (its rechecks then 80 s apart) while "b" was not offered, or was at
    # its task limit: offered with room, or below its limit, it takes the task on that ask.
    for offered in ("new", "below limit"):
        scheduler, clock = fleet(("a", caps(memory_gb=16)), ("b", caps(memory_gb=16)), limit=2)
        scheduler.history.record("a", "big", success=True, duration_s=10.0, cpu_seconds=10.0,
                                 peak_rss_bytes=8 * GIB)
        ids, counts = (["a"], {}) if offered == "new" else (["a", "b"], {"b": 2})
        for _ in range(60):
            scheduler.observe(sample("a", 10.0, 75.0))  # 4 GiB free: too little
            scheduler.observe(sample("b", 10.0, 10.0))
            assert scheduler.decide_task(task("t", "big"), ids, counts).chosen_worker_id is None
            clock.now_s += 5.0
        decision = scheduler.decide_task(task("t", "big"), ["a", "b"], {"b": 1} if counts else {})
        assert decision.chosen_worker_id == "b", offered


def test_a_late_sample_does_not_lengthen_the_gap_the_next_one_is_weighed_by():
    factors = ScoringFactors()
    view = WorkerView("w", registered_s=0.0)
    start = utc_now()
    for seconds, cpu in ((0, 90.0), (5, 90.0), (-115, 90.0), (10, 10.0)):  # the third came 2 minutes late
        view.observe(dataclasses.replace(sample("w", cpu, 10.0), timestamp=start + timedelta(seconds=seconds)),
                     0.0, factors)
    assert view.cpu_percent == pytest.approx(50.0)  # 5 s after the newest: weighed 0.5, not as 125 s
