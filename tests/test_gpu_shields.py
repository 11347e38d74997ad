"""A GPU task waiting for GPU room keeps the GPUs only it can use from tasks that can go elsewhere."""

from __future__ import annotations

from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now
from fleet_hwmon.scheduling import HardwareAwareScheduler
from fleet_hwmon.scoring.exclusions import Exclusion, ExclusionKind
from fleet_hwmon.scoring.reservations import Reservations, Shield

GIB = 1024**3
BIG, ALL = frozenset({"h100"}), frozenset({"h100", "t4a", "t4b"})


def gpu_room(worker_id: str) -> Exclusion:
    return Exclusion.gpu_memory_fit(worker_id, 75 * GIB, 40 * GIB, required=False)


def wait(res: Reservations, task_id: str, now_s: float, shield: Shield | None, task_type: str = "llm") -> None:
    res.observe(task_id, task_type, None, (gpu_room("h100"),), now_s, after_s=600.0, expire_s=15.0, shield=shield)


def test_a_shield_keeps_its_workers_from_tasks_with_other_workers_only():
    res = Reservations()
    wait(res, "llm1", 100.0, Shield(BIG, 75 * GIB))
    assert res.shield_of("llm1") == BIG and res.reserved() == {}  # not a reservation: nothing waited long
    [(worker_id, (need, exclusion))] = res.shielded("infer1", ALL, 110.0, 110.0).items()
    assert (worker_id, need, exclusion.kind) == ("h100", 75 * GIB, ExclusionKind.RESERVED)
    assert exclusion.reason == "kept for llm1 (llm), which only such GPUs can run, waiting 10 s"
    assert res.shielded("llm2", BIG, 110.0, 110.0) == {}  # the same workers: they compete as equals
    assert res.shielded("llm1", ALL, 110.0, 110.0) == {}  # never its own
    assert res.shielded("cpu", frozenset({"t4a"}), 110.0, 110.0) == {}  # not a superset
    # A task that has waited longer than the shielding one is not kept off; as long (the
    # coordinator asked about the shielding one first): kept off.
    assert res.shielded("old", ALL, 99.0, 110.0) == {}
    assert set(res.shielded("same", ALL, 100.0, 110.0)) == {"h100"}
    # Two shields on one worker: the larger need is kept.
    wait(res, "train1", 105.0, Shield(frozenset({"h100", "t4a"}), 30 * GIB), task_type="train")
    found = res.shielded("infer1", ALL, 110.0, 110.0)
    assert {w: need for w, (need, _) in found.items()} == {"h100": 75 * GIB, "t4a": 30 * GIB}
    # Two tasks waiting for the same workers: the larger need of those that waited at least as
    # long as the asking task, named by the one waiting longest.
    wait(res, "llm0", 95.0, Shield(BIG, 70 * GIB))
    need, exclusion = res.shielded("infer1", BIG | {"t4b"}, 110.0, 110.0)["h100"]
    assert need == 75 * GIB and exclusion.reason.startswith("kept for llm0 (llm)")
    assert res.shielded("infer1", BIG | {"t4b"}, 97.0, 110.0)["h100"][0] == 70 * GIB


def test_a_shield_ends_with_its_tasks_wait():
    res = Reservations()
    wait(res, "llm1", 100.0, Shield(BIG, 75 * GIB))
    wait(res, "llm1", 110.0, None)  # held for another reason now (its GPU room came, say)
    assert res.shield_of("llm1") == frozenset() and res.shielded("infer1", ALL, 120.0, 120.0) == {}
    wait(res, "llm1", 120.0, Shield(BIG, 75 * GIB))
    res.observe("llm1", "llm", "h100", (), 130.0, after_s=600.0, expire_s=15.0)  # placed
    assert res.shield_of("llm1") == frozenset() and res.shielded("infer1", ALL, 130.0, 130.0) == {}
    wait(res, "llm2", 140.0, Shield(BIG, 75 * GIB))
    res.drop_shields()  # the fleet changed: taken before, it could keep tasks of its own kind off
    assert res.shield_of("llm2") == frozenset() and res.shielded("infer1", ALL, 150.0, 150.0) == {}
    wait(res, "llm2", 150.0, Shield(BIG, 75 * GIB))  # its next decision shields again
    assert res.shield_of("llm2") == BIG
    res.observe("other", "infer", "t4a", (), 200.0, after_s=600.0, expire_s=15.0)  # not asked for 50 s
    assert res.shield_of("llm2") == frozenset()  # cancelled, or placed without us: it no longer waits


def caps(name: str, cuda: float, memory_gb: float) -> dict:
    return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 128}, "cpu": {"cores": 16},
            "gpu": {"name": name, "cuda_compute": cuda, "memory_gb": memory_gb}}


def sample(worker_id: str, cpu: float, gpu_used_gb: float, gpu_total_gb: float) -> ResourceUtilization:
    gpu = GpuUtilization(0, f"GPU-{worker_id}", "GPU", 10.0, int(gpu_used_gb * GIB), int(gpu_total_gb * GIB))
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=10.0,
                               cpu_count_effective=16, memory_total_bytes=128 * GIB,
                               memory_available_bytes=int(115 * GIB), gpus=(gpu,))


def task(task_id: str, task_type: str) -> dict:
    requirements = {"hardware": ["gpu"]}
    if task_type == "llm":
        requirements.update(min_cuda_compute=9.0, min_gpu_memory_gb=80)
    return {"task_id": task_id, "type": task_type, "priority": 1, "requirements": requirements}


def fleet(now: list[float]) -> HardwareAwareScheduler:
    """An 80 GB H100 with 40 GiB of its GPU in use and a quiet CPU, two busy 16 GB T4s: an
    ``llm`` task (60 GiB of GPU memory) fits only the H100, an ``infer`` task (5 GiB) any."""
    coordinator = Coordinator(max_tasks_per_worker=4)
    coordinator.register_worker("h100", caps("NVIDIA H100 80GB HBM3", 9.0, 80))
    for worker_id in ("t4a", "t4b"):
        coordinator.register_worker(worker_id, caps("Tesla T4", 7.5, 16))
    scheduler = HardwareAwareScheduler(coordinator, clock=lambda: now[0])
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    for task_type, gpu_gb in (("llm", 60), ("infer", 5)):
        scheduler.history.record("h100", task_type, success=True, duration_s=100.0, cpu_seconds=100.0,
                                 peak_rss_bytes=4 * GIB, gpu_memory_bytes=gpu_gb * GIB)
    scheduler.observe(sample("h100", 5.0, 40.0, 80.0))
    scheduler.observe(sample("t4a", 90.0, 2.0, 16.0))
    scheduler.observe(sample("t4b", 90.0, 2.0, 16.0))
    return scheduler


def test_an_infer_task_goes_to_a_busy_t4_while_an_llm_task_waits_for_the_h100():
    now = [1000.0]
    scheduler = fleet(now)
    workers = ["h100", "t4a", "t4b"]
    assert scheduler.decide_task(task("i0", "infer"), workers, {}).chosen_worker_id == "h100"  # quiet CPU
    scheduler.task_finished("i0", "h100", success=True, task_type="infer", duration_s=100.0, cpu_seconds=100.0,
                            peak_rss_bytes=4 * GIB, gpu_memory_bytes=5 * GIB)
    now[0] = 1010.0
    held = scheduler.decide_task(task("llm1", "llm"), workers, {})
    assert held.chosen_worker_id is None  # 60 GiB with headroom does not fit the 40 GiB free
    now[0] = 1015.0
    decision = scheduler.decide_task(task("i1", "infer"), workers, {})
    assert decision.chosen_worker_id in ("t4a", "t4b")
    [kept] = [e for e in decision.exclusions if e.worker_id == "h100"]
    assert kept.kind is ExclusionKind.RESERVED
    assert kept.reason == "kept for llm1 (llm), which only such GPUs can run, waiting 5 s"
    # The T4s' GPUs fill up: the infer task waits too, rather than take the H100's room.
    scheduler.observe(sample("t4a", 90.0, 15.0, 16.0))
    scheduler.observe(sample("t4b", 90.0, 15.0, 16.0))
    assert scheduler.decide_task(task("i2", "infer"), workers, {}).chosen_worker_id is None
    # The H100's GPU frees: the llm task is placed there, and its shield ends.
    now[0] = 1020.0
    scheduler.observe(sample("h100", 5.0, 0.0, 80.0))
    assert scheduler.decide_task(task("llm1", "llm"), workers, {}).chosen_worker_id == "h100"
    decision = scheduler.decide_task(task("i2", "infer"), workers, {})
    assert decision.chosen_worker_id == "h100"  # what the llm task leaves (80 - 60 GiB) holds it
    assert not [e for e in decision.exclusions if e.kind is ExclusionKind.RESERVED]


def test_a_task_waiting_longer_than_the_shielding_one_is_not_kept_off():
    now = [1000.0]
    scheduler = fleet(now)
    workers = ["h100", "t4a", "t4b"]
    scheduler.observe(sample("h100", 5.0, 79.0, 80.0))  # every GPU full
    scheduler.observe(sample("t4a", 90.0, 15.0, 16.0))
    scheduler.observe(sample("t4b", 90.0, 15.0, 16.0))
    assert scheduler.decide_task(task("old", "infer"), workers, {}).chosen_worker_id is None
    now[0] = 1010.0
    scheduler.observe(sample("h100", 5.0, 40.0, 80.0))
    assert scheduler.decide_task(task("llm1", "llm"), workers, {}).chosen_worker_id is None
    assert scheduler.decide_task(task("new", "infer"), workers, {}).chosen_worker_id is None  # kept off
    assert scheduler.decide_task(task("old", "infer"), workers, {}).chosen_worker_id == "h100"  # waited longer


def test_a_shield_taken_before_a_worker_joined_keeps_no_task_of_its_kind_off():
    # llm1 shields the one H100; a second H100 joins, so the llm tasks' workers are now both:
    # llm1's old shield is a strict subset of them, but it must not keep llm2 off the first.
    now = [1000.0]
    scheduler = fleet(now)
    assert scheduler.decide_task(task("llm1", "llm"), ["h100", "t4a", "t4b"], {}).chosen_worker_id is None
    scheduler.coordinator.register_worker("h100b", caps("NVIDIA H100 80GB HBM3", 9.0, 80))
    scheduler.worker_registered("h100b", caps("NVIDIA H100 80GB HBM3", 9.0, 80))
    now[0] = 1005.0
    decision = scheduler.decide_task(task("llm2", "llm"), ["h100", "h100b", "t4a", "t4b"], {})
    [h100] = [e for e in decision.exclusions if e.worker_id == "h100"]
    assert h100.kind is ExclusionKind.GPU_MEMORY_FIT  # its own lack of room, not llm1's shield


def test_the_end_of_a_shield_is_room_only_where_it_kept_a_task_off():
    res = Reservations()
    wait(res, "llm1", 100.0, Shield(BIG, 75 * GIB))
    wait(res, "llm2", 101.0, Shield(BIG, 75 * GIB))
    wait(res, "llm1", 110.0, None)  # no longer shields; llm2 still does
    assert res.take_freed() == set()
    wait(res, "llm1", 111.0, Shield(BIG, 75 * GIB))
    assert set(res.shielded("infer1", ALL, 112.0, 112.0)) == {"h100"}  # infer1 kept off
    wait(res, "llm2", 113.0, Shield(BIG, 75 * GIB))  # asked again: still waiting
    res.observe("llm1", "llm", "h100", (), 120.0, after_s=600.0, expire_s=15.0)
    assert res.take_freed() == set()  # llm2 still waits for the H100
    res.observe("llm2", "llm", "h100", (), 125.0, after_s=600.0, expire_s=15.0)
    assert res.take_freed() == {"h100"} and res.take_freed() == set()  # said once
    wait(res, "llm3", 140.0, Shield(BIG, 75 * GIB))
    res.observe("llm3", "llm", "h100", (), 150.0, after_s=600.0, expire_s=15.0)
    assert res.take_freed() == set()  # it kept nothing off: its end makes no room for anyone
