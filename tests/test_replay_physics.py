"""One simulated worker's physics, on hand-built states with figures worked out by hand."""

from __future__ import annotations

import pytest

from fleet_hwmon.replay.worker import Attempt, SimWorker
from fleet_hwmon.replay.workload import GIB, GpuSpec, TaskSpec, WorkerSpec

RAMP = (0.2, 0.5)  # 20 % of the peak at start, the peak after half the work


def worker(cores=8, memory_gib=16, gpu=None) -> SimWorker:
    return SimWorker(WorkerSpec("w", "test", cores, memory_gib * GIB, gpu, speed=1.0, slots=4,
                                background_level=0.0, background_memory_fraction=0.0))


def attempt(task_id, cores=2.0, memory_gib=4.0, work_s=100.0, gpu_percent=0.0, gpu=False) -> Attempt:
    spec = TaskSpec(task_id, "t", 0.0, {"hardware": ["gpu" if gpu else "cpu"]}, cores, int(memory_gib * GIB),
                    work_s, gpu_percent, 0, timeout_s=3 * work_s)
    return Attempt(spec, 1, 0.0, work_s, None, 0, RAMP)


def test_memory_ramps_up_to_the_peak_over_half_the_work():
    w = worker()
    a = w.tasks["a"] = attempt("a", memory_gib=10)
    w.set_rates()
    assert a.memory_bytes() == pytest.approx(2 * GIB)
    w.advance(25.0)  # a quarter of the work: 2 + 8 x 0.5 GiB
    assert a.memory_bytes() == pytest.approx(6 * GIB)
    w.advance(80.0)
    assert a.memory_bytes() == pytest.approx(10 * GIB) and a.peak_memory_bytes == pytest.approx(10 * GIB, rel=1e-9)


def test_oom_time_when_two_ramping_tasks_outgrow_the_worker():
    # 16 GiB worker, background 2 GiB; two tasks of 10 GiB peak start together at 2 GiB each and
    # grow 8 GiB over 50 s each (0.16 GiB/s): 6 + 0.32 t = 16 at t = 31.25 s.
    w = worker()
    w.bg_memory = 2 * GIB
    w.tasks["a"], w.tasks["b"] = attempt("a", memory_gib=10), attempt("b", memory_gib=10)
    w.set_rates()
    assert w.oom_time(0.0) == pytest.approx(31.25)
    # With b at 6 GiB peak instead (total 2 + 10 + 6 = 18 > 16): 2 + 2 + 1.2 GiB at start, growing
    # 0.16 + 0.096 GiB/s: 16 GiB at t = 10.8 / 0.256 = 42.2 s, before either stops growing.
    w.tasks["b"] = attempt("b", memory_gib=6)
    w.set_rates()
    assert w.oom_time(0.0) == pytest.approx(10.8 / 0.256)
    # Peaks that fit together never run out.
    w.tasks["b"] = attempt("b", memory_gib=3)
    w.set_rates()
    assert w.oom_time(0.0) is None


def test_oom_time_past_a_plateau_uses_the_slope_left():
    # a (peak 6 GiB) grows 0.096 GiB/s until 50 s; b (peak 20 GiB, 200 s of work) grows 16 GiB
    # over 100 s, 0.16 GiB/s. used(t) = 2 + 1.2 + 4 + 0.256 t: 16 GiB at t = 8.8 / 0.256 = 34.4 s.
    w = worker()
    w.bg_memory = 2 * GIB
    w.tasks["a"], w.tasks["b"] = attempt("a", memory_gib=6), attempt("b", memory_gib=20, work_s=200)
    w.set_rates()
    assert w.oom_time(0.0) == pytest.approx((16 - 7.2) / 0.256)
    # Larger worker: at 50 s used = 7.2 + 12.8 = 20 GiB; then only b grows at 0.16 GiB/s: 24 GiB at 75 s.
    big = worker(memory_gib=24)
    big.bg_memory = 2 * GIB
    big.tasks["a"], big.tasks["b"] = attempt("a", memory_gib=6), attempt("b", memory_gib=20, work_s=200)
    big.set_rates()
    assert big.oom_time(0.0) == pytest.approx(75.0)
    assert big.largest_task() == "b"


def test_over_subscribed_cores_slow_every_task_and_take_cpu_from_the_tenants():
    w = worker(cores=8)
    w.bg_cores = 4.0
    w.tasks["a"], w.tasks["b"] = attempt("a", cores=4.0), attempt("b", cores=4.0)
    w.set_rates()  # demand 12 on 8 cores: everything runs at 2/3
    assert w.tasks["a"].rate == pytest.approx(2 / 3)
    w.advance(30.0)
    assert w.tasks["a"].done == pytest.approx(20.0)
    assert w.tenant_core_s == pytest.approx(120.0)
    assert w.tenant_taken_core_s == pytest.approx(4 * (1 / 3) * 30)
    assert w.cpu_busy_core_s == pytest.approx(8 * 30)
    assert w.overload_by_resource["cpu"] == pytest.approx(30.0)


def test_a_shared_gpu_over_100_percent_slows_its_tasks_not_the_cpu_ones():
    w = worker(cores=16, gpu=GpuSpec("g", 8.0, 40 * GIB))
    w.tasks["g1"] = attempt("g1", gpu_percent=80.0, gpu=True)
    w.tasks["g2"] = attempt("g2", gpu_percent=80.0, gpu=True)
    w.tasks["c"] = attempt("c")
    w.set_rates()
    assert w.tasks["g1"].rate == pytest.approx(100 / 160)
    assert w.tasks["c"].rate == pytest.approx(1.0)
    w.advance(10.0)
    assert w.overload_by_resource["gpu"] == pytest.approx(10.0) and w.overload_by_resource["cpu"] == 0.0


def test_idle_while_waiting_counts_idle_cores_only_while_flagged():
    w = worker(cores=8)
    w.bg_cores = 2.0
    w.tasks["a"] = attempt("a", cores=1.0)
    w.set_rates()
    w.advance(10.0)
    assert w.idle_while_waiting_core_s == 0.0
    w.room_for_waiting = True
    w.advance(20.0)  # 8 - 3 idle cores for 10 s
    assert w.idle_while_waiting_core_s == pytest.approx(50.0) and w.idle_by_reason == {}
    w.room_reason = "reserved"  # and why the policy held the waiting task off it
    w.advance(24.0)
    w.room_reason = "memory_fit"
    w.advance(25.0)
    assert w.idle_while_waiting_core_s == pytest.approx(75.0)
    assert w.idle_by_reason == pytest.approx({"reserved": 20.0, "memory_fit": 5.0})


def test_room_for_a_waiting_task_is_memory_gpu_memory_and_the_quiet_it_asked_for():
    w = worker(cores=8, memory_gib=16, gpu=GpuSpec("g", 8.0, 16 * GIB))
    w.bg_cores, w.bg_memory = 2.0, 2 * GIB
    w.tasks["a"] = attempt("a", cores=2.0, memory_gib=8)  # holds 1.6 GiB now, 8 at its peak
    w.set_rates()
    assert w.has_room_for(attempt("s", memory_gib=6).spec)  # 16 - 2 - 8 = 6 GiB left at the peaks
    assert not w.has_room_for(attempt("s", memory_gib=6.5).spec)
    assert w.has_room_for(TaskSpec("q", "t", 0.0, {"isolation": "quiet"}, 1.0, 2 * GIB, 10, 0, 0, 30))  # 5/8 < 80 %
    assert not w.has_room_for(TaskSpec("q", "t", 0.0, {"isolation": "quiet"}, 2.5, 2 * GIB, 10, 0, 0, 30))
    assert not w.has_room_for(TaskSpec("x", "t", 0.0, {"isolation": "exclusive"}, 1.0, 2 * GIB, 10, 0, 0, 30))
    gpu_task = TaskSpec("g", "t", 0.0, {"hardware": ["gpu"]}, 1.0, GIB, 10, 30.0, 17 * GIB, 30)
    assert not w.has_room_for(gpu_task)  # 17 GiB of GPU memory on a 16 GiB GPU
