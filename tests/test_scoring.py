"""Pure scoring: task requirements, hardware match, worker views, history and the decision.

Every expected number is worked out from the default factors in the comment next to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now
from fleet_hwmon.scoring.decide import ALL_FIT, DecisionContext, Exclusion, Reservation, decide, decide_among
from fleet_hwmon.scoring.decision import predicted_demand
from fleet_hwmon.scoring.ranking import task_key, tie_break, tie_breaks, worker_key
from fleet_hwmon.scoring.terms import FLOOR, DemandCap, fits_when_idle, gpu_after_placement, task_demand_for
from fleet_hwmon.scoring.factors import ScoringFactors
from fleet_hwmon.scoring.history import PerformanceHistory, TaskDemand
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch
from fleet_hwmon.scoring.views import InFlight, WorkerView, capacity_from_capabilities

GIB = 1024**3
FACTORS = ScoringFactors()
# The penalty arithmetic below is checked for a task predicted to add nothing (no history and
# zero default size), so each figure is the worker's own load; TestTaskSize checks what a
# task's own predicted demand adds.
ZERO_TASK = FACTORS.replace(default_task_cores=0.0, default_task_memory_bytes=0.0, default_task_gpu_percent=0.0)

T4 = {"name": "Tesla T4", "cuda_compute": 7.5, "memory_gb": 16}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "cuda_compute": 8.0, "memory_gb": 80}


def req(**requirements) -> TaskRequirements:
    return TaskRequirements.from_task({"task_id": "t", "requirements": requirements})


def caps(hardware=("cpu",), memory_gb=16, gpus=(), **extra) -> dict:
    out = {"hardware": list(hardware), "memory": {"total_gb": memory_gb}, **extra}
    if gpus:
        out["gpus"] = list(gpus)
        out["gpu"] = gpus[0]
    return out


def view(worker_id: str, cpu=None, memory=None, gpu=None, *, cores=8, memory_gb=16, now_s=100.0,
         available_gb=None) -> WorkerView:
    """A view that has seen one sample at ``now_s``."""
    gpus = (GpuUtilization(0, f"GPU-{worker_id}", "A100", gpu),) if gpu is not None else ()
    v = WorkerView(worker_id, registered_s=0.0)
    v.observe(ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=memory,
                                  cpu_count_effective=cores, memory_total_bytes=memory_gb * GIB,
                                  memory_available_bytes=None if available_gb is None else int(available_gb * GIB),
                                  gpus=gpus), now_s, FACTORS)
    return v


def run(base: dict[str, float], views: dict[str, WorkerView], *, task_type=None, requirements=None,
        history=None, seed=0, now_s=100.0, mismatches=None, factors=ZERO_TASK, task_id="t", max_recorded=20):
    task = {"task_id": task_id, "type": task_type, "requirements": requirements or {"hardware": ["cpu"]}}
    return decide(task, TaskRequirements.from_task(task), base, views, mismatches or {}, DecisionContext(
        factors=factors, history=history, now_s=now_s, stale_after_s=15.0, timestamp=utc_now(), seed=seed,
        max_recorded=max_recorded))


def by_worker(decision) -> dict:
    return {c.worker_id: c for c in decision.candidates}


class TestTaskRequirements:
    def test_parsing(self):
        r = TaskRequirements.from_task({"task_id": "t", "requirements": {
            "hardware": ["CPU", "GPU"], "min_memory_gb": "16", "min_cuda_compute": 8, "device": "A100",
            "min_gpu_memory_gb": 40}})
        assert r == TaskRequirements(frozenset({"cpu", "gpu"}), 16.0, 8.0, "A100", 40.0)
        assert r.needs_gpu
        assert TaskRequirements.from_task({"task_id": "t"}) == TaskRequirements()
        assert req(hardware="gpu").hardware == frozenset({"gpu"})  # one name as a string
        assert req(min_cuda_compute=7.0).needs_gpu  # a CUDA minimum implies a GPU
        assert not req(hardware=["cpu"], min_memory_gb=2).needs_gpu
        assert req(device="").device is None
        # Hashable and equal by value: the integration caches matches by it.
        assert hash(req(hardware=["gpu", "cpu"])) == hash(req(hardware=["cpu", "gpu"]))

    @pytest.mark.parametrize("task, message", [
        ("gpu please", "a task must be a dict, not str"),
        ({"task_id": "t1", "requirements": ["gpu"]}, "task 't1': 'requirements' must be a dict, not list"),
        ({"task_id": "t1", "requirements": {"hardware": 3}}, "requirements.hardware must be a list"),
        ({"task_id": "t1", "requirements": {"min_memory_gb": "plenty"}},
         "task 't1': requirements.min_memory_gb must be a number, got 'plenty'"),
        ({"task_id": "t1", "requirements": {"min_cuda_compute": -1}}, "min_cuda_compute must not be negative"),
    ])
    def test_errors(self, task, message):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TaskRequirements.from_task(task)


class TestHardwareMismatch:
    def test_fits(self):
        a100 = caps(("cpu", "gpu"), 64, [A100])
        assert hardware_mismatch(req(hardware=["gpu"], min_cuda_compute=8.0, min_gpu_memory_gb=40,
                                     min_memory_gb=32, device="a100"), a100) is None
        assert hardware_mismatch(req(), caps()) is None
        assert hardware_mismatch(req(hardware=["cpu"], min_memory_gb=16), caps()) is None

    @pytest.mark.parametrize("requirements, capabilities, reason", [
        ({"hardware": ["gpu"]}, caps(), "lacks gpu"),
        ({"min_cuda_compute": 7.0}, caps(), "lacks gpu"),
        ({"hardware": ["cpu", "tpu", "gpu"]}, caps(), "lacks gpu, tpu"),
        ({"hardware": ["cpu"]}, {"hardware": ["gpu"]}, "lacks cpu"),
        ({"min_memory_gb": 32}, caps(memory_gb=16), "memory 16 GB < required 32 GB"),
        ({"min_memory_gb": 1}, {"hardware": ["cpu"]}, "memory unknown < required 1 GB"),
        ({"hardware": ["gpu"], "min_cuda_compute": 8.0}, caps(("cpu", "gpu"), gpus=[T4]),
         "no GPU with CUDA compute >= 8"),
        ({"hardware": ["gpu"], "min_cuda_compute": 7.0}, caps(("cpu", "gpu"), gpus=[{"name": "?"}]),
         "no GPU with CUDA compute >= 7"),  # unknown compute does not satisfy a minimum
        ({"hardware": ["gpu"], "min_gpu_memory_gb": 40}, caps(("cpu", "gpu"), gpus=[T4]),
         "no GPU with >= 40 GB of memory"),
        ({"hardware": ["gpu"], "device": "H100"}, caps(("cpu", "gpu"), gpus=[T4, A100]), "no GPU matching 'H100'"),
        # The device must be one of the GPUs that also meet the CUDA minimum.
        ({"hardware": ["gpu"], "min_cuda_compute": 8.0, "device": "T4"}, caps(("cpu", "gpu"), gpus=[T4, A100]),
         "no GPU matching 'T4'"),
        ({"device": "EPYC"}, caps(cpu={"model": "Intel Xeon"}), "no device matching 'EPYC'"),
        # An unhealthy GPU is left out of 'hardware' by the detector; the reason says why.
        ({"hardware": ["gpu"]}, caps(("cpu",), gpu_health="unhealthy"), "lacks gpu (GPU unhealthy)"),
    ])
    def test_mismatch(self, requirements, capabilities, reason):
        assert hardware_mismatch(req(**requirements), capabilities) == reason

    def test_device_names_match_case_insensitively(self):
        assert hardware_mismatch(req(hardware=["gpu"], device="tesla t4"), caps(("cpu", "gpu"), gpus=[T4])) is None
        assert hardware_mismatch(req(device="xeon"), caps(cpu={"model": "Intel Xeon Gold"})) is None
        # The single 'gpu' entry of the contract is enough when there is no 'gpus' list.
        assert hardware_mismatch(req(hardware=["gpu"], device="A100"),
                                 {"hardware": ["cpu", "gpu"], "gpu": A100}) is None


class TestFactorsAndViews:
    def test_factors_validation(self):
        assert ScoringFactors.from_mapping({"cpu_penalty_weight": 0.8}).cpu_penalty_weight == 0.8
        assert ScoringFactors.from_mapping(None) == ScoringFactors()
        with pytest.raises(ValueError, match="unknown hardware scoring factor"):
            ScoringFactors.from_mapping({"cpu_weight": 1})
        with pytest.raises(ValueError, match="must be a non-negative number"):
            ScoringFactors(cpu_threshold_percent=-1)
        with pytest.raises(ValueError, match="recovery_percent <= critical_percent"):
            ScoringFactors(recovery_percent=96)
        with pytest.raises(ValueError, match="EWMA"):
            ScoringFactors(ewma_alpha=0)
        with pytest.raises(ValueError, match="reservation_depth must be at least 1"):
            ScoringFactors(reservation_depth=0)

    def test_view_smooths_and_counts_inflight(self):
        v = view("w", 40.0, 50.0)
        v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), cpu_percent=80.0), 101.0, FACTORS)
        assert (v.cpu_percent, v.memory_percent) == (60.0, 50.0)  # EWMA 0.5; unknown memory keeps the last
        v.add_inflight(InFlight("t1", 102.0, cores=2.0, memory_bytes=4 * GIB, uses_gpu=False))
        assert v.inflight_percent() == (25.0, 25.0, 0.0)
        assert v.effective_load() == (85.0, 75.0, None)
        v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), cpu_percent=60.0), 102.0, FACTORS)
        assert "t1" in v.inflight  # assigned at the sample's instant: not in it yet
        v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), cpu_percent=60.0), 103.0, FACTORS)
        assert v.inflight == {}  # the samples show it now

    def test_stale_reasons(self):
        fresh = WorkerView("new", registered_s=90.0)
        assert fresh.stale_reason(100.0, 15.0) is None
        assert fresh.stale_reason(1000.0, 15.0) is None  # never heard from: unknown, not stale
        stopped = view("w", 1.0, 1.0, now_s=100.0)
        assert stopped.stale_reason(116.0, 15.0) == "stale: last sample 16 s ago (limit 15 s)"
        stopped.alive(99.0)  # a task of it started or ended: the coordinator sees it alive
        assert stopped.stale_reason(113.0, 15.0) is None and stopped.samples_stale(116.0, 15.0)
        assert stopped.stale_exclusion(116.0, 15.0).value == 16.0  # alive before its last sample only
        stopped.alive(110.0)  # alive after its last sample: the worker outlived its monitor
        assert stopped.stale_reason(116.0, 15.0) is None
        assert stopped.stale_reason(1000.0, 15.0) is None  # drained since: still not stale
        stopped.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), cpu_percent=5.0), 1000.0, FACTORS)
        assert stopped.stale_exclusion(1016.0, 15.0).value == 16.0  # samples back, then stopped again

    def test_capacity_from_capabilities(self):
        assert capacity_from_capabilities({"cpu": {"cores_effective": 4}, "memory": {"total_gb": 2}}) == \
            (4.0, 2.0 * GIB)
        assert capacity_from_capabilities({"cpu": {"cores_logical": 16}}) == (16.0, None)
        assert capacity_from_capabilities({"hardware": ["cpu"]}) == (None, None)
        assert capacity_from_capabilities({"memory": {"total_gb": "n/a"}}) == (None, None)


class TestDecide:
    def test_cpu_penalty_exact(self):
        d = run({"busy": 1.0}, {"busy": view("busy", 85.0, 40.0)})
        busy = by_worker(d)["busy"]
        assert busy.cpu_penalty == pytest.approx(0.3)  # 0.6 * (85 - 70) / (100 - 70)
        assert busy.memory_penalty == 0.0
        assert busy.balance_penalty == pytest.approx(0.2125)  # 0.25 * 85 / 100
        assert busy.adjusted_score == pytest.approx(1.0 - 0.3 - 0.2125)
        factors = ZERO_TASK.replace(cpu_threshold_percent=80.0, cpu_penalty_weight=1.0)
        busy = by_worker(run({"busy": 1.0}, {"busy": view("busy", 85.0, 40.0)}, factors=factors))["busy"]
        assert busy.cpu_penalty == pytest.approx(0.25)  # 1.0 * 5 / 20

    def test_memory_and_gpu_penalties(self):
        views = {"w": view("w", 10.0, 75.0, gpu=80.0)}
        cpu_task = by_worker(run({"w": 1.0}, views))["w"]
        assert cpu_task.memory_penalty == pytest.approx(0.1)  # 0.6 * (75 - 70) / 30
        assert cpu_task.gpu_penalty == 0.0  # GPU load costs only GPU tasks
        assert cpu_task.balance_penalty == pytest.approx(0.25 * 0.75)  # GPU not counted either
        gpu_task = by_worker(run({"w": 1.0}, views, requirements={"hardware": ["gpu"]}))["w"]
        assert gpu_task.gpu_penalty == pytest.approx(0.45)  # 0.9 * (80 - 60) / 40
        assert gpu_task.balance_penalty == pytest.approx(0.25 * 0.80)
        assert gpu_task.adjusted_score == pytest.approx(1.0 - 0.1 - 0.45 - 0.2)

    def test_gpu_task_scored_on_the_least_busy_gpu_after_placement(self):
        gpu = {"hardware": ["gpu"]}
        # The default guess: 50 % of one GPU for the task itself, on top of what the GPU shows.
        w = by_worker(run({"w": 1.0}, {"w": view("w", 10.0, 10.0, gpu=30.0)}, requirements=gpu, factors=FACTORS))["w"]
        assert w.gpu_percent == pytest.approx(80.0)
        assert w.gpu_penalty == pytest.approx(0.9 * 20 / 40)
        # Two GPUs, one busy (below critical): a new task goes to the idle one, so the busy one
        # does not count.
        two = WorkerView("two", registered_s=0.0)
        two.observe(ResourceUtilization(worker_id="two", timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                                        cpu_count_effective=8, memory_total_bytes=16 * GIB,
                                        gpus=(GpuUtilization(0, "GPU-a", "A100", 90.0),
                                              GpuUtilization(1, "GPU-b", "A100", 5.0))), 100.0, FACTORS)
        assert by_worker(run({"two": 1.0}, {"two": two}, requirements=gpu, factors=FACTORS))["two"].gpu_percent == \
            pytest.approx(55.0)

    def test_gpu_share_learnt_from_history_adds_and_is_penalised_never_excluded(self):
        gpu = {"hardware": ["gpu"]}
        history = PerformanceHistory()
        history.record("elsewhere", "infer", success=True, duration_s=10.0, cpu_seconds=10.0, gpu_percent=35.0)
        views = {"w": view("w", 10.0, 10.0, gpu=40.0)}
        w = by_worker(run({"w": 1.0}, views, requirements=gpu, task_type="infer", history=history,
                          factors=FACTORS))["w"]
        assert w.gpu_percent == pytest.approx(75.0)  # 40 + the fleet's 35, not the 50 % guess
        # Two more such tasks in flight (35 % each, predicted): 40 + 70 + 35 = 145 %. GPU time is
        # compressible (time-slicing slows, fails nothing): steeply penalised, never excluded.
        for task_id in ("a", "b"):
            views["w"].add_inflight(InFlight(task_id, 100.0, 1.0, 0.0, True, 0.0, None, 35.0))
        d = run({"w": 1.0}, views, requirements=gpu, task_type="infer", history=history, factors=FACTORS)
        assert d.chosen_worker_id == "w" and d.exclusions == ()
        # 0.9 * (145 - 60) / 40 above the threshold; no overcommit term for GPU (it is per GPU)
        assert by_worker(d)["w"].gpu_penalty == pytest.approx(0.9 * 85 / 40)
        # A quiet task refuses it (predicted GPU over the 80 % quiet threshold).
        quiet = run({"w": 1.0}, views, requirements={**gpu, "isolation": "quiet"}, task_type="infer",
                    history=history, factors=FACTORS)
        assert quiet.chosen_worker_id is None and quiet.isolation == "quiet"
        (refused,) = quiet.exclusions
        assert (refused.kind.value, refused.resource, refused.limit) == ("isolation", "gpu", 80.0)

    def test_quiet_task_that_fills_the_hardware_by_itself_still_goes_where_nothing_else_runs(self):
        gpu = {"hardware": ["gpu"], "isolation": "quiet"}
        history = PerformanceHistory()
        for share in (70.0, 90.0):  # 80 % of a GPU on average, 10 points of spread
            history.record("elsewhere", "bench", success=True, duration_s=10.0, gpu_percent=share)
        # Nothing of ours runs there and the GPU shows 5 %: the task's own 80 + spread counts at
        # most 80 - 25 (the exclusive background allowance), so 5 + 55 = 60 % passes.
        idle = run({"w": 1.0}, {"w": view("w", 10.0, 10.0, gpu=5.0)}, requirements=gpu, task_type="bench",
                   history=history, factors=FACTORS)
        assert idle.chosen_worker_id == "w" and idle.exclusions == ()
        # 30 % of background on the GPU: 30 + 55 = 85 % > 80: still refused, the promise holds.
        busy = run({"w": 1.0}, {"w": view("w", 10.0, 10.0, gpu=30.0)}, requirements=gpu, task_type="bench",
                   history=history, factors=FACTORS)
        (refused,) = busy.exclusions
        assert (refused.kind.value, refused.resource, refused.value) == ("isolation", "gpu", pytest.approx(85.0))
        # A shared task beside a running quiet one is not capped: it counts in full.
        shared = run({"w": 1.0}, {"w": view("w", 10.0, 10.0, gpu=5.0)}, requirements={"hardware": ["gpu"]},
                     task_type="bench", history=history, factors=FACTORS)
        assert by_worker(shared)["w"].gpu_percent > 80.0

    def test_gpu_after_placement_fills_the_least_busy_gpus_first(self):
        assert gpu_after_placement([40.0], [35.0, 35.0], 35.0) == pytest.approx(145.0)  # one GPU: all on it
        assert gpu_after_placement([90.0, 5.0], [], 50.0) == pytest.approx(55.0)  # the idle one
        # 8 idle GPUs, one 60 % task in flight: the next 60 % task goes to another idle GPU.
        assert gpu_after_placement([0.0] * 8, [60.0], 60.0) == pytest.approx(60.0)
        # In flight 70 % and 40 % over GPUs at 10 / 20 / 90: 70 % to the 10 % GPU (80), then 40 %
        # to the 20 % one (60); the new task joins that one.
        assert gpu_after_placement([90.0, 10.0, 20.0], [40.0, 70.0], 5.0) == pytest.approx(65.0)
        # A task larger than one GPU spreads over the least busy ones: 180 % over 8 idle GPUs
        # lands 22.5 % on each; over GPUs at 0 / 0 / 95 it fills the two idle ones to 90 %.
        assert gpu_after_placement([0.0] * 8, [], 180.0) == pytest.approx(22.5)
        assert gpu_after_placement([0.0, 95.0, 0.0], [], 180.0) == pytest.approx(95.0)

    def test_multi_gpu_workers_take_tasks_their_gpus_hold(self):
        eight = WorkerView("eight", registered_s=0.0)
        eight.observe(ResourceUtilization(worker_id="eight", timestamp=utc_now(), cpu_percent=10.0,
                                          memory_percent=10.0, cpu_count_effective=64, memory_total_bytes=512 * GIB,
                                          gpus=tuple(GpuUtilization(i, f"GPU-{i}", "H100", 0.0) for i in range(8))),
                      100.0, FACTORS)
        history = PerformanceHistory()
        history.record("x", "ddp", success=True, duration_s=100.0, gpu_percent=180.0)  # two GPUs' worth
        history.record("x", "infer", success=True, duration_s=100.0, gpu_percent=60.0)
        gpu = {"hardware": ["gpu"]}
        assert run({"eight": 1.0}, {"eight": eight}, requirements=gpu, task_type="ddp", history=history,
                   factors=FACTORS).chosen_worker_id == "eight"
        eight.add_inflight(InFlight("a", 100.0, 1.0, 0.0, True, 0.0, None, 60.0))
        d = run({"eight": 1.0}, {"eight": eight}, requirements=gpu, task_type="infer", history=history,
                factors=FACTORS)
        assert d.chosen_worker_id == "eight" and d.candidates[0].gpu_percent == pytest.approx(60.0)

    def test_a_gpu_that_cannot_report_utilization_is_not_idle(self):
        mig = WorkerView("mig", registered_s=0.0)
        mig.observe(ResourceUtilization(worker_id="mig", timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                                        cpu_count_effective=8, memory_total_bytes=16 * GIB,
                                        gpus=(GpuUtilization(0, "MIG-1", "A100 MIG", None, mig_enabled=True),)),
                    100.0, FACTORS)
        views = {"mig": mig, "plain": view("plain", 10.0, 10.0, gpu=55.0)}
        scores = by_worker(run({"mig": 1.0, "plain": 1.0}, views, requirements={"hardware": ["gpu"]},
                               factors=FACTORS))
        # The MIG GPU counts as the candidates' median (55 %) plus the task's 50 %, like the other.
        assert scores["mig"].gpu_percent is None  # what the samples show: unknown
        assert scores["mig"].gpu_penalty == pytest.approx(scores["plain"].gpu_penalty) == pytest.approx(0.9 * 45 / 40)

    def test_fits_when_idle_rules_out_only_workers_too_small_for_the_task(self):
        small, big = view("small", 90.0, 90.0, cores=8), view("big", 90.0, 90.0, cores=32)
        cpu = TaskRequirements.from_task({"task_id": "t", "requirements": {"hardware": ["cpu"]}})
        build = TaskDemand(16.0, 4 * GIB, None, None, "fleet")  # more cores than "small" has: slower, fits
        assert fits_when_idle(small, build, cpu, FACTORS) and fits_when_idle(big, build, cpu, FACTORS)
        assert not fits_when_idle(big, TaskDemand(None, 14 * GIB, None, None, "fleet"), cpu, FACTORS)  # +25 % > 16
        assert fits_when_idle(small, TaskDemand(None, None, None, None, None), cpu, FACTORS)  # nothing known
        two = WorkerView("two", registered_s=0.0)
        two.observe(ResourceUtilization(worker_id="two", timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                                        cpu_count_effective=32, memory_total_bytes=256 * GIB,
                                        gpus=tuple(GpuUtilization(i, f"GPU-{i}", "A100", 99.0, 39 * GIB, 40 * GIB)
                                                   for i in range(2))), 100.0, FACTORS)
        gpu = TaskRequirements.from_task({"task_id": "t", "requirements": {"hardware": ["gpu"]}})
        assert fits_when_idle(two, TaskDemand(None, None, 30 * GIB, 200.0, "fleet"), gpu, FACTORS)
        assert fits_when_idle(two, TaskDemand(None, None, None, 250.0, "fleet"), gpu, FACTORS)  # GPU time: slower
        assert not fits_when_idle(two, TaskDemand(None, None, 35 * GIB, None, "fleet"), gpu, FACTORS)  # +25 % > 40

    def test_fits_when_idle_rules_out_a_worker_where_a_quiet_task_alone_breaks_its_promise(self):
        # A perf test measured at 4 cores, straying by 1 (twice counted): 6 cores. Alone on 8
        # cores that is 75 % (quiet: <= 80 %); straying by 1.25 it is 81 %, never quiet there,
        # while on 16 cores it is 40 %. The largest compatible worker (its own cores capped at
        # the threshold less the exclusive allowance, 55 % of 16) always remains.
        small, medium = view("small", 5.0, 10.0, cores=8), view("medium", 5.0, 10.0, cores=16)
        cap = DemandCap(64 * GIB, None, 16.0)
        for isolation in ("quiet", "exclusive"):
            perf = req(hardware=["cpu"], isolation=isolation)
            assert fits_when_idle(small, TaskDemand(4.0, GIB, None, None, "fleet", 1.0), perf, FACTORS, cap=cap)
            assert not fits_when_idle(small, TaskDemand(4.0, GIB, None, None, "fleet", 1.25), perf, FACTORS, cap=cap)
            assert fits_when_idle(medium, TaskDemand(4.0, GIB, None, None, "fleet", 1.25), perf, FACTORS, cap=cap)
            assert fits_when_idle(medium, TaskDemand(14.0, GIB, None, None, "fleet", 3.0), perf, FACTORS, cap=cap)
            assert fits_when_idle(small, TaskDemand(None, GIB, None, None, None), perf, FACTORS, cap=cap)  # unmeasured
        shared = req(hardware=["cpu"])
        assert fits_when_idle(small, TaskDemand(14.0, GIB, None, None, "fleet", 3.0), shared, FACTORS, cap=cap)

    def test_fits_when_idle_shapes_the_demand_as_a_decision_does(self):
        # Runs on the only 80 GiB GPU measured 70 GiB: +25 % is 87.5 GiB, more than the GPU. A
        # decision caps the prediction at the recovery mark of the largest compatible GPU over the
        # headroom (80 x 0.85 / 1.25 = 54.4 GiB) and places it there once drained, so a waiting
        # task may reserve that worker: 54.4 x 1.25 = 68 GiB <= 80.
        h100 = gpu_view("h100", 80.0, 70.0, memory_gb=256)
        llm = req(hardware=["gpu"], min_gpu_memory_gb=80)
        measured = TaskDemand(8.0, 64 * GIB, 70 * GIB, 85.0, "history")
        assert not fits_when_idle(h100, measured, llm, FACTORS)
        assert fits_when_idle(h100, measured, llm, FACTORS, cap=DemandCap(256 * GIB, 80 * GIB))
        # A retried task's own raised figure (floor) counts, capped the same way.
        retried = TaskDemand(None, None, 90 * GIB, None, "retry")
        assert not fits_when_idle(gpu_view("a100", 40.0, 0.0), TaskDemand(None, None, 20 * GIB, None, "history"),
                                  llm, FACTORS, floor=retried, cap=DemandCap(None, 40 * GIB * 2))
        assert fits_when_idle(h100, TaskDemand(None, None, 20 * GIB, None, "history"), llm, FACTORS, floor=retried,
                              cap=DemandCap(None, 80 * GIB))

    def test_a_retry_floor_is_asked_for_as_it_is_not_plus_headroom(self):
        # The type peaked at 4 GiB; a retry's floor is 15 GiB (1.5 x the 10 GiB its attempt
        # reached). The fit check adds 25 % headroom to the figure, so the figure is
        # 15 / 1.25 = 12 GiB: the check asks for 15 GiB, not 18.75.
        history = PerformanceHistory()
        history.record("w", "etl", success=True, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=4 * GIB)
        cpu = req(hardware=["cpu"])
        retried = TaskDemand(None, 15 * GIB, None, None, "retry")
        assert task_demand_for(None, history, "w", "etl", cpu, FACTORS, floor=retried)[1] == 12 * GIB
        # A floor below the history's figure changes nothing.
        low = TaskDemand(None, 4 * GIB, None, None, "retry")
        assert task_demand_for(None, history, "w", "etl", cpu, FACTORS, floor=low)[1] == 4 * GIB
        measured = history.task_demand("w", "etl")
        assert fits_when_idle(view("a", 10.0, 0.0, memory_gb=15), measured, cpu, FACTORS, floor=retried)
        assert not fits_when_idle(view("b", 10.0, 0.0, memory_gb=14.9), measured, cpu, FACTORS, floor=retried)
        # GPU memory the same way: a 24 GiB floor asks for 24 GiB of a 24 GiB GPU.
        gpu = req(hardware=["gpu"])
        gpu_retry = TaskDemand(None, None, 24 * GIB, None, "retry")
        assert fits_when_idle(gpu_view("l4", 24.0, 0.0), TaskDemand(None, None, 5 * GIB, None, "history"), gpu, FACTORS,
                              floor=gpu_retry)

    def test_floor_and_negative_original_scores(self):
        saturated = {"w": view("w", 95.0, 95.0)}  # at critical, not above: penalised, not excluded
        # 0.5 + 0.5 + 0.2375 > 1: the worker keeps FLOOR of its original score
        assert by_worker(run({"w": 2.0}, saturated))["w"].adjusted_score == pytest.approx(2.0 * FLOOR)
        # An original scale with negative scores: penalties are subtracted.
        assert by_worker(run({"w": -3.0}, saturated))["w"].adjusted_score == pytest.approx(-3.0 - 1.2375)


    def test_tie_break_deterministic(self):
        views = {w: view(w, 10.0, 10.0) for w in ("a", "b", "c", "d")}
        base = {w: 1.0 for w in views}
        for seed in (0, 1, 2, 3):
            expected = min(views, key=lambda w: tie_break(seed, "t", w))
            first = run(base, views, seed=seed)
            assert first.chosen_worker_id == expected
            assert run(dict(reversed(list(base.items()))), views, seed=seed).chosen_worker_id == expected
            assert first.original_worker_id == expected  # the original choice breaks ties the same way
        assert len({run(base, views, seed=s).chosen_worker_id for s in range(12)}) > 1  # the seed matters
        assert tie_break(0, "t", "a") == tie_break(0, "t", "a") != tie_break(1, "t", "a")

    def test_tie_break_over_a_column_equals_the_one_by_one(self):
        workers = [f"w-{n}" for n in range(300)]
        keys = np.array([worker_key(w) for w in workers], dtype=np.uint64)
        for seed, task_id in ((0, "t"), (7, "task-000123")):
            column = tie_breaks(task_key(seed, task_id), keys).tolist()
            assert column == [tie_break(seed, task_id, w) for w in workers]
            assert len(set(column)) == len(workers) and max(column) < 2**64

    def test_the_best_alone_equals_the_first_of_the_ordered(self):
        """``ranking.top`` of the ``contenders`` (those that can make the cut; the best found with
        tie-breaks only among those at the best score) is always the first that ``ranking.best``
        orders, and ordering the contenders orders them all: ties, groups of ties, a NaN score,
        infinities of both signs."""
        import math
        import random
        from fleet_hwmon.scoring.ranking import best, contenders, top
        score, worker = (lambda item: item[1]), (lambda item: item[0])
        rng = random.Random(3)
        nan = float("nan")
        for round_ in range(400):
            pool = [0.05, 0.05, 0.1, 0.5, 1.0, -0.2, 0.0, -0.0] + [nan, math.inf, -math.inf] * (round_ % 5 == 0)
            items = [(f"w{n}", rng.choice(pool)) for n in range(rng.randint(0, 30))]
            task_id = f"t{round_}"
            ordered, kept = best(items, 20, 0, task_id, score, worker), contenders(items, 20, score)
            assert best(kept, 20, 0, task_id, score, worker) == ordered
            if len(kept) <= 20:  # (more: ties at the cut, which the decision orders at once)
                assert top(kept, 0, task_id, score, worker) == (ordered[0] if ordered else None)
        tied = [(f"w{n}", 0.05) for n in range(8)]
        assert top(tied, 0, "t", score, worker)[0] == min((w for w, _ in tied), key=lambda w: tie_break(0, "t", w))

    def test_the_heaviest_type_moves_with_every_record(self):
        """``heaviest`` is kept between records: each record that moves a type's figures moves it."""
        history = PerformanceHistory()
        assert history.heaviest() == (None, None)
        history.record("w", "unit", success=True, duration_s=10.0, cpu_seconds=20.0)
        assert history.heaviest() == (2.0, None)
        history.record("w", "train", success=True, duration_s=10.0, cpu_seconds=40.0, gpu_percent=70.0)
        assert history.heaviest() == (4.0, 70.0)
        history.record("w", "train", success=True, duration_s=10.0, cpu_seconds=10.0, gpu_percent=10.0)
        assert history.heaviest() == (pytest.approx(4.0 + 0.3 * (1.0 - 4.0)), pytest.approx(70.0 - 0.3 * 60.0))

    def test_history_failure_penalty_and_speed_bonus(self):
        history = PerformanceHistory()
        history.record("fast", "unit", success=True, duration_s=10.0)
        history.record("slow", "unit", success=True, duration_s=20.0)
        history.record("flaky", "unit", success=False, duration_s=1.0)
        # Fleet duration EWMA (0.3) of the successful runs: 10, then 10 + 0.3 * 10 = 13.
        assert history.fleet_stats("unit").duration_s == pytest.approx(13.0)
        views = {w: view(w, 0.0, 0.0) for w in ("fast", "slow", "flaky")}
        d = run({w: 1.0 for w in views}, views, task_type="unit", history=history)
        c = by_worker(d)
        assert c["fast"].history_penalty == pytest.approx(-0.3 * (13 / 10 - 1))  # bonus 0.09
        assert c["slow"].history_penalty == pytest.approx(-0.3 * (13 / 20 - 1))  # +0.105
        assert c["flaky"].history_penalty == pytest.approx(0.5 * 1 / 3)  # one failure in one run, shrunk
        assert [x.worker_id for x in d.candidates] == ["fast", "slow", "flaky"]
        assert d.chosen_score == pytest.approx(1.09)
        # Other task types are not affected.
        other = run({w: 1.0 for w in views}, views, task_type="integration", history=history)
        assert all(x.history_penalty == 0.0 for x in other.candidates)

    def test_exclusions_and_explanation(self):
        history = PerformanceHistory()
        history.record("small", "big-memory", success=True, duration_s=5.0, cpu_seconds=5.0,
                       peak_rss_bytes=8 * GIB)
        views = {
            "hot": view("hot", 99.0, 10.0),
            "old": view("old", 1.0, 1.0, now_s=50.0),
            "small": view("small", 5.0, 50.0, available_gb=4.0),
            "ok": view("ok", 30.0, 30.0),
        }
        base = {"hot": 1.0, "old": 1.0, "small": 1.0, "ok": 0.5, "no-gpu": 1.0}
        d = run(base, views, task_type="big-memory", history=history, mismatches={"no-gpu": "lacks gpu"})
        assert d.chosen_worker_id == "ok"
        assert [(e.worker_id, e.reason) for e in d.exclusions] == [
            ("old", "stale: last sample 50 s ago (limit 15 s)"),
            ("small", "predicted memory 8.0 GiB > free 4.0 GiB"),  # nothing runs there: no headroom
            ("no-gpu", "lacks gpu"),
        ]
        # CPU at 99 % is compressible: "hot" is a candidate, steeply penalised, not excluded.
        assert by_worker(d)["hot"].adjusted_score == pytest.approx(FLOOR)
        assert d.original_worker_id in {"hot", "old", "small", "no-gpu"}
        assert d.explanation.startswith(f"chose ok (score {d.chosen_score:.3f} of original 0.500); "
                                        f"original choice {d.original_worker_id} excluded: ")
        assert d.explanation.endswith("3 worker(s) excluded; task predicted from fleet history: 1.0 cores, "
                                      "memory 8.0 GiB")

    def test_nothing_fits(self):
        d = decide({"task_id": "t"}, TaskRequirements(), {}, {}, {}, DecisionContext(
            factors=FACTORS, history=None, now_s=0.0, stale_after_s=15.0, timestamp=utc_now(),
            extra_exclusions=[Exclusion.hardware("w", "lacks gpu")]))
        assert (d.chosen_worker_id, d.chosen_score, d.candidates) == (None, None, ())
        assert d.explanation == "no worker can take the task (1 excluded: hardware 1)"
        empty = run({}, {})
        assert empty.explanation == "no worker available"

    def test_unknown_load_is_neutral_and_inflight_counts(self):
        known = {"light": view("light", 20.0, 20.0), "heavy": view("heavy", 60.0, 40.0)}
        fresh = WorkerView("fresh", registered_s=99.0, cpu_count=8.0, memory_total_bytes=16 * GIB)
        views = {**known, "fresh": fresh}
        base = {w: 1.0 for w in views}
        c = by_worker(run(base, views))
        # No sample yet: the median of the known loads (20 and 60), not 0.
        assert c["fresh"].balance_penalty == pytest.approx(0.25 * 0.40)
        # Four tasks in flight on it: 4 cores of 8 on top of the sampled CPU median (40 %).
        for n in range(4):
            fresh.add_inflight(InFlight(f"t{n}", 99.5, cores=1.0, memory_bytes=0.0, uses_gpu=False))
        c = by_worker(run(base, views))
        assert c["fresh"].cpu_percent is None  # the record keeps what is measured
        assert c["fresh"].balance_penalty == pytest.approx(0.25 * 0.90)  # 40 + 50
        assert c["fresh"].cpu_penalty == pytest.approx(0.6 * 20 / 30)
        assert c["fresh"].inflight_tasks == 4

    def test_max_recorded(self):
        views = {f"w{n:02d}": view(f"w{n:02d}", float(n), 0.0) for n in range(30)}
        d = run({w: 1.0 for w in views}, views, max_recorded=5)
        assert d.candidate_count == 30
        assert [c.worker_id for c in d.candidates] == ["w00", "w01", "w02", "w03", "w04"]  # the best five


class TestHistory:
    def test_failure_rate_and_predicted_demand(self):
        history = PerformanceHistory()
        assert history.predicted_demand("w", "unit") == (None, None)
        history.record("w", "unit", success=True, duration_s=2.0, cpu_seconds=3.0, peak_rss_bytes=100)
        assert history.predicted_demand("w", "unit") == (1.5, 100.0)
        assert history.predicted_demand("other", "unit") == (1.5, 100.0)  # the fleet's when the worker has none
        history.record("w", "unit", success=False, duration_s=60.0)
        stats = history.stats("w", "unit")
        assert (stats.runs, stats.failures, stats.duration_s) == (2, 1, 2.0)  # failed runs say nothing of speed
        assert stats.failure_rate == pytest.approx(1 / 4)
        assert history.speed_ratio("w", "unit") == 1.0
        assert history.speed_ratio("w", "io") is None
        assert history.snapshot() == [{"worker_id": "w", "task_type": "unit", "runs": 2, "failures": 1,
                                       "duration_s": 2.0, "cores": 1.5, "memory_bytes": 100.0,
                                       "gpu_memory_bytes": None, "gpu_percent": None}]
        history.record("fast", "unit", success=True, duration_s=1.0)
        assert [history.predicted_duration_s(w, t) for w, t in (("w", "unit"), ("fast", "unit"), ("new", "unit"),
                                                               ("w", "io"), ("w", None))] == [
            2.0, 1.0, pytest.approx(1.7), None, None]  # the worker's own, else the fleet's EWMA

    def test_a_non_finite_measurement_is_not_learnt(self):
        history = PerformanceHistory()
        history.record("w", "infer", success=True, duration_s=2.0, gpu_percent=40.0)
        history.record("w", "infer", success=True, duration_s=float("nan"), gpu_percent=float("nan"))
        history.record("w", "infer", success=True, duration_s=2.0, gpu_percent=float("inf"))
        stats = history.stats("w", "infer")
        assert (stats.runs, stats.duration_s, stats.gpu_percent) == (3, 2.0, 40.0)


    def test_how_far_tasks_of_a_type_stray_is_learnt_over_the_fleet(self):
        # Cores 2, 4, 2 (alpha 0.3): the spread is the EWMA of each run's distance from the mean
        # so far: |4 - 2| = 2, then |2 - 2.6| = 0.6 -> 2 + 0.3 * (0.6 - 2) = 1.58; GPU share
        # 40 then 50: 10. A worker's own figures come with the fleet's spread.
        history = PerformanceHistory()
        for worker_id, cpu_seconds, gpu_percent in (("a", 20.0, 40.0), ("b", 40.0, 50.0), ("a", 20.0, None)):
            history.record(worker_id, "bench", success=True, duration_s=10.0, cpu_seconds=cpu_seconds,
                           gpu_percent=gpu_percent)
        fleet = history.fleet_stats("bench")
        assert (fleet.cores, fleet.cores_spread) == (pytest.approx(2.42), pytest.approx(1.58))
        assert fleet.gpu_percent_spread == pytest.approx(10.0)
        mine = history.task_demand("a", "bench")
        assert (mine.cores, mine.source) == (2.0, "worker")
        assert (mine.cores_spread, mine.gpu_percent_spread) == (pytest.approx(1.58), pytest.approx(10.0))
        assert history.task_demand("new", "bench").cores_spread == pytest.approx(1.58)


def gpu_view(worker_id: str, total_gb: float, used_gb: float, *, cpu=10.0, memory=10.0, cores=16,
             memory_gb=64, now_s=100.0, timestamp=None) -> WorkerView:
    """A view that has seen one sample with one GPU of ``total_gb`` of which ``used_gb`` is used."""
    gpu = GpuUtilization(0, f"GPU-{worker_id}", "T4", 20.0, memory_used_bytes=int(used_gb * GIB),
                         memory_total_bytes=int(total_gb * GIB))
    v = WorkerView(worker_id, registered_s=0.0)
    v.observe(ResourceUtilization(worker_id=worker_id, timestamp=timestamp or utc_now(), cpu_percent=cpu,
                                  memory_percent=memory, cpu_count_effective=cores,
                                  memory_total_bytes=memory_gb * GIB, gpus=(gpu,)), now_s, FACTORS)
    return v


def build_history(cores: float = 6.0, memory_gb: float = 8.0, gpu_memory_gb: float | None = None,
                  task_type: str = "build") -> PerformanceHistory:
    """A history where one run of ``task_type`` (on a worker not scored) used these figures."""
    history = PerformanceHistory()
    history.record("elsewhere", task_type, success=True, duration_s=100.0, cpu_seconds=100.0 * cores,
                   peak_rss_bytes=memory_gb * GIB,
                   gpu_memory_bytes=None if gpu_memory_gb is None else gpu_memory_gb * GIB)
    return history


class TestTaskSize:
    """The task's own predicted demand is scored on each worker's capacity (default factors)."""

    def test_six_core_task_prefers_the_idle_64_core_worker(self):
        views = {"small": view("small", 0.0, 10.0, cores=8, memory_gb=32),
                 "large": view("large", 0.0, 10.0, cores=64, memory_gb=256)}
        d = run({"small": 1.0, "large": 1.0}, views, task_type="build", history=build_history(), factors=FACTORS)
        c = by_worker(d)
        # small: CPU 0 + 6 / 8 = 75 % -> 0.6 * 5 / 30 = 0.1; memory 10 + 8 / 32 = 35 %; balance 0.25 * 0.75
        assert (c["small"].cpu_percent, c["small"].memory_percent) == (pytest.approx(75.0), pytest.approx(35.0))
        assert c["small"].cpu_penalty == pytest.approx(0.1)
        assert c["small"].adjusted_score == pytest.approx(1.0 - 0.1 - 0.1875)
        # large: CPU 6 / 64 = 9.375 %, memory 10 + 8 / 256 = 13.125 % (its busiest): balance only
        assert c["large"].cpu_percent == pytest.approx(9.375)
        assert c["large"].adjusted_score == pytest.approx(1.0 - 0.25 * 0.13125)
        assert d.chosen_worker_id == "large"
        assert d.explanation.endswith("task predicted from fleet history: 6.0 cores, memory 8.0 GiB")
        # Without history the task counts as the default (1 core, 256 MiB) on both.
        plain = by_worker(run({"small": 1.0, "large": 1.0}, views, factors=FACTORS))
        assert plain["small"].cpu_percent == pytest.approx(12.5)
        assert plain["large"].cpu_percent == pytest.approx(100.0 / 64)

    def test_over_capacity_is_penalised_never_excluded(self):
        views = {"busy": view("busy", 50.0, 10.0, cores=8, memory_gb=32),
                 "ok": view("ok", 20.0, 10.0, cores=64, memory_gb=256)}
        d = run({"busy": 1.0, "ok": 0.5}, views, task_type="build", history=build_history(), factors=FACTORS)
        assert d.chosen_worker_id == "ok" and d.exclusions == ()
        # 50 % + 6 cores of 8 = 125 %: 0.6 * 55 / 30 above the threshold + 10 * 25 / 100 above capacity
        assert by_worker(d)["busy"].cpu_penalty == pytest.approx(0.6 * 55 / 30 + 2.5)
        # The default guess never excludes: 95 % + 1 core of 8 = 107.5 % is penalised to the floor
        # (0.6 * 37.5 / 30 = 0.75 above the threshold, 10 * 7.5 / 100 = 0.75 above capacity).
        hot = {"hot": view("hot", 95.0, 10.0, cores=8, memory_gb=32)}
        c = by_worker(run({"hot": 1.0}, hot, factors=FACTORS))["hot"]
        assert c.cpu_percent == pytest.approx(107.5)
        assert c.cpu_penalty == pytest.approx(1.5)
        assert c.adjusted_score == pytest.approx(FLOOR)
        # Alone, the over-subscribed worker still takes the task (work-conserving).
        assert run({"busy": 1.0}, {"busy": views["busy"]}, task_type="build", history=build_history(),
                   factors=FACTORS).chosen_worker_id == "busy"

    def test_a_drained_worker_waives_the_memory_headroom(self):
        # Predicted 8 GiB, 9 GiB free: with 25 % headroom (10 GiB) it would not fit. Nothing of
        # ours runs there, so no neighbour can grow: the task is placed (else it could wait forever
        # beside an idle worker that holds it). With a task running there, the headroom holds.
        views = {"w": view("w", 10.0, 40.0, memory_gb=32, available_gb=9.0)}
        task = {"task_id": "t", "type": "build", "requirements": {"hardware": ["cpu"]}}

        def among(counts):
            return decide_among(task, TaskRequirements.from_task(task), ["w"], {"w": 1.0}, views, ALL_FIT,
                                DecisionContext(factors=FACTORS, history=build_history(), now_s=100.0,
                                                stale_after_s=15.0, timestamp=utc_now(), task_counts=counts))
        assert among({"w": 0}).chosen_worker_id == "w"
        busy = among({"w": 1})
        assert busy.chosen_worker_id is None
        assert [e.reason for e in busy.exclusions] == ["predicted memory 8.0 GiB (+25% headroom) > free 9.0 GiB"]

    def test_a_worker_whose_monitor_stopped_keeps_its_last_room(self):
        # Samples stopped 30 s ago; a task ended there since (the worker is alive), another of
        # ours still runs. Its load is unknown, but its last free memory (9 GiB) still binds:
        # 8 GiB with 25 % headroom does not fit. Drained, nothing of ours can hold that memory.
        views = {"w": view("w", 10.0, 40.0, memory_gb=32, available_gb=9.0, now_s=70.0)}
        views["w"].alive(95.0)
        task = {"task_id": "t", "type": "build", "requirements": {"hardware": ["cpu"]}}

        def among(counts):
            return decide_among(task, TaskRequirements.from_task(task), ["w"], {"w": 1.0}, views, ALL_FIT,
                                DecisionContext(factors=FACTORS, history=build_history(), now_s=100.0,
                                                stale_after_s=15.0, timestamp=utc_now(), task_counts=counts))
        busy = among({"w": 1})
        assert busy.chosen_worker_id is None
        assert [e.reason for e in busy.exclusions] == ["predicted memory 8.0 GiB (+25% headroom) > free 9.0 GiB"]
        assert among({"w": 0}).chosen_worker_id == "w"
        # ... but never a task its whole memory (32 GiB) cannot hold
        huge = decide_among(task, TaskRequirements.from_task(task), ["w"], {"w": 1.0}, views, ALL_FIT,
                            DecisionContext(factors=FACTORS, history=build_history(memory_gb=40.0), now_s=100.0,
                                            stale_after_s=15.0, timestamp=utc_now(), task_counts={"w": 0}))
        assert huge.chosen_worker_id is None
        assert [e.reason for e in huge.exclusions] == ["predicted memory 40.0 GiB > free 32.0 GiB"]

    def test_a_reserved_worker_whose_monitor_stopped_takes_only_what_fits_beside_the_reserved_need(self):
        # Samples stopped 30 s ago (the coordinator saw the worker alive since); its last one
        # showed 30 GiB free, and 20 GiB are kept for a waiting task. A 7 GiB build (+25 %: 8.75
        # GiB) fits in the 10 GiB beside it; a 12 GiB one (15 GiB) does not, drained or not (a
        # drained worker's whole memory would hold it, but not beside the reserved need).
        views = {"w": view("w", 10.0, 40.0, cores=16, memory_gb=64, available_gb=30.0, now_s=70.0)}
        views["w"].alive(95.0)
        kept = Exclusion.reserved("w", "t-data", "data", 60.0)
        task = {"task_id": "t", "type": "build", "requirements": {"hardware": ["cpu"]}}

        def among(memory_gb, running):
            return decide_among(task, TaskRequirements.from_task(task), ["w"], {"w": 1.0}, views, ALL_FIT,
                                DecisionContext(factors=FACTORS, history=build_history(memory_gb=memory_gb),
                                                now_s=100.0, stale_after_s=15.0, timestamp=utc_now(),
                                                task_counts={"w": running},
                                                reserved={"w": Reservation(20 * GIB, 0.0, kept)}))
        for running in (0, 1):
            assert among(7.0, running).chosen_worker_id == "w"
            held = among(12.0, running)
            assert held.chosen_worker_id is None and list(held.exclusions) == [kept]

    def test_gpu_memory_misfit_excluded_with_its_reason(self):
        history = build_history(2.0, 4.0, gpu_memory_gb=5.0, task_type="inference")
        views = {"full": gpu_view("full", 16.0, 12.0), "roomy": gpu_view("roomy", 16.0, 2.0)}
        d = run({"full": 1.0, "roomy": 0.5}, views, task_type="inference", history=history,
                requirements={"hardware": ["gpu"]}, factors=FACTORS)
        assert d.chosen_worker_id == "roomy"
        assert [(e.worker_id, e.reason) for e in d.exclusions] == [
            ("full", "predicted GPU memory 5.0 GiB > free 4.0 GiB on any GPU")]  # drained: no headroom
        # A stated minimum filters GPUs by size; it is not what the task consumes once history
        # knows better (5 GiB here) ...
        roomy = {"roomy": gpu_view("roomy", 40.0, 20.0)}
        gpu24 = {"hardware": ["gpu"], "min_gpu_memory_gb": 24}
        assert run({"roomy": 1.0}, roomy, task_type="inference", history=history, requirements=gpu24,
                   factors=FACTORS).chosen_worker_id == "roomy"
        # ... but it stands in for the estimate while nothing is known.
        d = run({"roomy": 1.0}, roomy, task_type="inference", requirements=gpu24, factors=FACTORS)
        assert [(e.worker_id, e.reason) for e in d.exclusions] == [
            ("roomy", "predicted GPU memory 24.0 GiB > free 20.0 GiB on any GPU")]
        # GPU tasks in flight take their share: 14 GiB free, two 5 GiB tasks in flight -> 4 GiB.
        busy = gpu_view("busy", 16.0, 2.0)
        for n in range(2):
            busy.add_inflight(InFlight(f"g{n}", 100.0, 2.0, 4 * GIB, True, gpu_memory_bytes=5 * GIB))
        assert busy.gpu_memory_room() == 4 * GIB
        d = run({"busy": 1.0}, {"busy": busy}, task_type="inference", history=history,
                requirements={"hardware": ["gpu"]}, factors=FACTORS)
        assert d.exclusions[0].reason == "predicted GPU memory 5.0 GiB (+25% headroom) > free 4.0 GiB on any GPU"
        # Unknown GPU memory excludes nothing (and a CPU task is never checked).
        unknown = view("unknown", 10.0, 10.0, gpu=20.0)
        assert run({"unknown": 1.0}, {"unknown": unknown}, task_type="inference", history=history,
                   requirements={"hardware": ["gpu"]}, factors=FACTORS).chosen_worker_id == "unknown"

    def test_failed_runs_leave_the_type_memory_estimates_alone(self):
        history = build_history(1.0, 8.0, gpu_memory_gb=5.0)
        history.record("w", "build", success=False, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=2 * GIB,
                       gpu_memory_bytes=1 * GIB)  # killed early: a lower bound of its own need
        history.record("w", "build", success=False, duration_s=10.0, cpu_seconds=10.0, peak_rss_bytes=18 * GIB)
        fleet = history.fleet_stats("build")
        assert (fleet.memory_bytes, fleet.gpu_memory_bytes, fleet.failures) == (8 * GIB, 5 * GIB, 2)
        # The worker has no successful run: its memory figures come from the fleet's.
        assert history.task_demand("w", "build") == (1.0, 8 * GIB, 5 * GIB, None, "worker", 0.0, None)
        assert history.task_demand("new", "build").source == "fleet"
        assert history.task_demand("w", "other") == (None, None, None, None, None, None, None)


    def test_the_decision_keeps_its_predicted_demand_until_its_explanation_is_written(self):
        # The scheduler counts a placed task in flight at what the decision predicted there,
        # read from the decision (without working it out again) while its explanation is unwritten.
        views = {"w": view("w", 0.0, 10.0, cores=64, memory_gb=256)}
        d = run({"w": 1.0}, views, task_type="build", history=build_history(), factors=FACTORS)
        demand = predicted_demand(d)
        assert (demand.cores, demand.memory_bytes, demand.source) == (pytest.approx(6.0), 8 * GIB, "fleet")
        assert d.explanation.endswith("task predicted from fleet history: 6.0 cores, memory 8.0 GiB")
        assert predicted_demand(d) is None
        assert predicted_demand(run({"w": None}, views, task_type="build", history=build_history())) is None

    def test_a_run_recorded_on_the_worker_changes_the_next_decision_with_its_view_unchanged(self):
        # The assessment of a worker with history of its own is remembered until its view
        # changes or a run of the type is recorded there. Failed runs without figures move
        # nothing the fleet's prediction shows, only the worker's failure rate: its score must
        # fall at once, though no sample or task of ours changed its view.
        views = {"w": view("w", 10.0, 10.0, cores=8, memory_gb=32, available_gb=28.0)}
        history = PerformanceHistory()
        history.record("w", "build", success=True, duration_s=100.0, cpu_seconds=100.0, peak_rss_bytes=4 * GIB)
        first = by_worker(run({"w": 1.0}, views, task_type="build", history=history, factors=FACTORS, task_id="a"))
        again = by_worker(run({"w": 1.0}, views, task_type="build", history=history, factors=FACTORS, task_id="b"))
        assert first["w"].history_penalty == again["w"].history_penalty == 0.0
        for _ in range(3):
            history.record("w", "build", success=False)
        after = by_worker(run({"w": 1.0}, views, task_type="build", history=history, factors=FACTORS, task_id="c"))
        assert after["w"].history_penalty == pytest.approx(FACTORS.failure_penalty_weight * 3 / (4 + 2))
        assert after["w"].adjusted_score < first["w"].adjusted_score


class TestInFlightBySampleTime:
    def test_dropped_by_the_sample_timestamp_not_its_arrival(self):
        from datetime import timedelta

        assigned_at = utc_now()
        v = WorkerView("w", registered_s=0.0)
        v.add_inflight(InFlight("t1", 100.0, 2.0, GIB, False, assigned_at=assigned_at))
        factors = FACTORS.replace(inflight_hold_s=0.0)

        def observe(taken_after_s: float, arrived_s: float) -> None:
            v.observe(ResourceUtilization(worker_id="w", timestamp=assigned_at + timedelta(seconds=taken_after_s),
                                          cpu_percent=10.0, cpu_count_effective=8), arrived_s, factors)

        observe(-1.0, 130.0)  # taken before the assignment, arriving 30 s after it: not in it
        assert set(v.inflight) == {"t1"} and v.inflight_cores == 2.0
        observe(0.5, 131.0)
        assert v.inflight == {} and v.inflight_cores == 0.0

    def test_held_for_a_sampling_interval_by_default(self):
        from datetime import timedelta

        assigned_at = utc_now()
        v = WorkerView("w", registered_s=0.0)
        v.add_inflight(InFlight("t1", 100.0, 2.0, GIB, False, assigned_at=assigned_at))
        for taken_after_s, kept in ((3.0, True), (5.0, True), (5.5, False)):
            v.observe(ResourceUtilization(worker_id="w", timestamp=assigned_at + timedelta(seconds=taken_after_s),
                                          cpu_percent=10.0), 101.0 + taken_after_s, FACTORS)
            assert ("t1" in v.inflight) is kept, taken_after_s


    def test_a_monitor_that_lists_its_tasks_shows_a_task_once_it_ran_a_whole_interval(self):
        # Samples always ~40 s late look like a clock 20 s behind: taken out, a sample taken 1 s
        # after the assignment looks taken 21 s after it. Its CPU figure (averaged over the 5 s
        # since the sample before) holds a fifth of the task, though it lists it: a sample shows
        # the task only when it lists it and so did the sample before it.
        from datetime import timedelta

        assigned_at = utc_now()
        v = WorkerView("w", registered_s=0.0)
        v.observe(ResourceUtilization(worker_id="w", timestamp=assigned_at - timedelta(seconds=60),
                                      cpu_percent=10.0, task_ids=("old",)), 90.0, FACTORS)
        v.add_inflight(InFlight("t1", 100.0, 2.0, GIB, False, assigned_at=assigned_at))
        for taken_s, listed, kept in ((16.0, ("old",), True), (21.0, ("old", "t1"), True),
                                      (26.0, ("old", "t1"), False)):
            v.observe(ResourceUtilization(worker_id="w", timestamp=assigned_at + timedelta(seconds=taken_s),
                                          cpu_percent=10.0, task_ids=listed), 100.0 + taken_s + 20.0, FACTORS)
            assert ("t1" in v.inflight) is kept, (taken_s, listed)

    def test_an_ended_task_frees_its_memory_until_a_sample_without_it(self):
        from datetime import timedelta

        now = utc_now()
        v = WorkerView("w", registered_s=0.0)

        def observe(at_s: float, available_gb: float, task_ids: tuple) -> None:
            v.observe(ResourceUtilization(worker_id="w", timestamp=now + timedelta(seconds=at_s), cpu_percent=10.0,
                                          memory_total_bytes=32 * GIB, memory_available_bytes=int(available_gb * GIB),
                                          task_ids=task_ids), 100.0 + at_s, FACTORS)
        observe(0.0, 20.0, ("other",))
        v.add_inflight(InFlight("t1", 100.0, 1.0, 6 * GIB, False, assigned_at=now))
        observe(5.0, 14.0, ("other", "t1"))
        observe(10.0, 14.0, ("other", "t1"))  # shows t1 (listed by the sample before too): no longer in flight
        assert v.inflight == {} and v.memory_free_bytes == 14 * GIB
        v.task_finished("t1", now + timedelta(seconds=12))
        assert v.memory_free_bytes == 20 * GIB  # its predicted 6 GiB are free again
        observe(11.0, 14.0, ("other", "t1"))  # taken before it ended: still shows it
        assert v.memory_free_bytes == 20 * GIB
        observe(15.0, 19.0, ("other",))  # a sample without it: the sample's figure alone
        assert v.memory_free_bytes == 19 * GIB
        v.task_finished("other", now + timedelta(seconds=16))  # never placed by us: nothing to free
        assert v.memory_free_bytes == 19 * GIB
        v.add_inflight(InFlight("t2", 120.0, 1.0, 6 * GIB, False, assigned_at=now + timedelta(seconds=20)))
        observe(25.0, 15.0, ("t2",))
        observe(30.0, 15.0, ("t2",))
        v.task_finished("t2", now + timedelta(seconds=31), (4 * GIB, None))  # it peaked at 4 GiB, not 6
        assert v.memory_free_bytes == 19 * GIB


class TestRecovery:
    def test_readmitted_after_one_sample_under_the_mark_without_flapping_at_95(self):
        v = WorkerView("w", registered_s=0.0)
        for n, (memory, excluded) in enumerate([(97.0, True), (94.0, True), (96.0, True), (90.0, True),
                                                (84.0, False), (96.0, True)]):
            v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), memory_percent=memory), 100.0 + n,
                      FACTORS)
            assert (v.excluded_reason is not None) is excluded, (n, memory)
        # With recovery_samples 0 only the time under the mark counts (recovery_s = 10 s).
        v = WorkerView("w", registered_s=0.0)
        timed = FACTORS.replace(recovery_samples=0)
        for t, memory, excluded in [(0, 97.0, True), (1, 50.0, True), (10, 50.0, True), (11, 50.0, False)]:
            v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), memory_percent=memory), 100.0 + t,
                      timed)
            assert (v.excluded_reason is not None) is excluded, (t, memory)

    def test_only_incompressible_resources_exclude_and_gpu_memory_only_gpu_tasks(self):
        v = WorkerView("w", registered_s=0.0)
        v.observe(ResourceUtilization(worker_id="w", timestamp=utc_now(), cpu_percent=100.0), 100.0, FACTORS)
        assert v.excluded is None  # CPU is compressible: penalised, never excluded
        full = gpu_view("full", 16.0, 15.8)  # 98.75 % of the GPU's memory
        assert (full.excluded.kind.value, full.excluded.resource) == ("critical", "gpu_memory")
        assert run({"full": 1.0}, {"full": full}, factors=FACTORS).chosen_worker_id == "full"  # a CPU task
        d = run({"full": 1.0}, {"full": full}, requirements={"hardware": ["gpu"]}, factors=FACTORS)
        assert d.chosen_worker_id is None and d.exclusions[0].kind.value == "critical"
