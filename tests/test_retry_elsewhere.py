"""A retry does not go back where its attempt ran out of memory or GPU memory, with exact inputs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization, utc_now
from fleet_hwmon.scheduling import HardwareAwareScheduler
from fleet_hwmon.scheduling.retry import AvoidedWorkers, resource_failure
from fleet_hwmon.scoring.exclusions import ExclusionKind

GIB = 1024**3
CUDA_OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
OOM_KILLED = "out of memory (killed by the OOM killer)"


@pytest.mark.parametrize(("error", "resource"), [
    (CUDA_OOM, "gpu_memory"),
    ("RuntimeError: CUDA error: out of memory", "gpu_memory"),
    ("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)", "gpu_memory"),
    ("ResourceExhaustedError: OOM when allocating tensor on /job:localhost/device:GPU:0", "gpu_memory"),
    (OOM_KILLED, "memory"),
    ("MemoryError", "memory"),
    ("AssertionError: no room for the bloom filter", None),
    ("timed out", None),
    ("", None),
    (None, None),
])
def test_failures_for_lack_of_memory_or_gpu_memory_are_told_apart(error, resource):
    assert resource_failure(error) == resource


def test_avoided_until_a_task_frees_that_resource_there_and_never_for_good():
    avoided = AvoidedWorkers()
    fleet = ["a", "b", "c"]
    everywhere = fleet.__contains__
    avoided.ended("a", gpu_memory=False)  # the failed attempt's own end, then its failure
    avoided.failed("t", "a", CUDA_OOM)
    avoided.failed("t", "b", "AssertionError")  # not for lack of a resource: b stays open
    assert avoided.of("t", fleet, everywhere) == {"a": "gpu_memory"}
    avoided.ended("a", gpu_memory=False)  # a CPU task's end frees no GPU memory
    assert avoided.of("t", fleet, everywhere) == {"a": "gpu_memory"}
    avoided.ended("c", gpu_memory=False)
    avoided.failed("t", "c", OOM_KILLED, peak_memory_bytes=6 * GIB)  # its retry's estimate rises by the peak
    avoided.ended("b", gpu_memory=False)
    avoided.failed("t", "b", OOM_KILLED)  # no peak came back
    assert avoided.of("t", fleet, everywhere) == {"a": "gpu_memory", "b": "memory"}
    # Only "a" and "b" could hold the task once drained: the latest failure alone is avoided.
    assert avoided.of("t", fleet, {"a", "b"}.__contains__) == {"b": "memory"}
    assert avoided.of("t", fleet, {"b"}.__contains__) == {}  # it alone could: never held by it
    avoided.ended("a", gpu_memory=True)  # a GPU task ended on "a": its GPU memory is free again
    assert avoided.of("t", fleet, everywhere) == {"b": "memory"}
    avoided.succeeded("t")
    assert avoided.of("t", fleet, everywhere) == {} and len(avoided) == 0


def test_with_no_other_worker_a_retry_waits_for_the_end_of_a_task_of_ours_using_the_resource():
    avoided = AvoidedWorkers()
    fleet = ["big", "small"]
    only_big = {"big"}.__contains__  # the only worker whose GPU could hold it
    running: set[tuple[str, str]] = {("big", "gpu_memory")}  # a task of ours holds the big GPU
    avoided.ended("big", gpu_memory=False)  # the failed attempt's own end: its allocation held nothing
    avoided.failed("t", "big", CUDA_OOM)
    assert avoided.of("t", fleet, only_big, lambda w, r: (w, r) in running) == {"big": "gpu_memory"}
    # Nothing of ours runs there: what filled the GPU is not ours, and no end of ours will come.
    assert avoided.of("t", fleet, only_big, lambda w, r: False) == {}
    avoided.ended("big", gpu_memory=True)  # the task of ours ended: its GPU memory is free
    assert avoided.of("t", fleet, only_big, lambda w, r: (w, r) in running) == {}


def gpu_caps(memory_gb: float) -> dict:
    return {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 64}, "cpu": {"cores": 8},
            "gpu": {"name": "Tesla T4", "cuda_compute": 7.5, "memory_gb": memory_gb}}


def gpu_sample(worker_id: str, cpu: float, gpu_used_gb: float, gpu_total_gb: float) -> ResourceUtilization:
    gpu = GpuUtilization(0, f"GPU-{worker_id}", "Tesla T4", 10.0, int(gpu_used_gb * GIB), int(gpu_total_gb * GIB))
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=cpu, memory_percent=10.0,
                               cpu_count_effective=8, memory_total_bytes=64 * GIB,
                               memory_available_bytes=int(57.6 * GIB), gpus=(gpu,))


def two_gpus() -> HardwareAwareScheduler:
    coordinator = Coordinator(max_tasks_per_worker=4)
    for worker_id in ("t4a", "t4b"):
        coordinator.register_worker(worker_id, gpu_caps(16))
    scheduler = HardwareAwareScheduler(coordinator, clock=lambda: 1000.0)
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    scheduler.history.record("t4a", "infer", success=True, duration_s=10.0, cpu_seconds=10.0,
                             peak_rss_bytes=GIB, gpu_memory_bytes=5 * GIB)
    scheduler.observe(gpu_sample("t4a", 10.0, 6.0, 16.0))  # 10 GiB free: the quieter CPU, preferred
    scheduler.observe(gpu_sample("t4b", 90.0, 2.0, 16.0))  # busy CPU: compressible, penalised; 14 GiB free
    return scheduler


def infer(task_id: str) -> dict:
    return {"task_id": task_id, "type": "infer", "priority": 1, "requirements": {"hardware": ["gpu"]}}


def test_a_cuda_oom_without_figures_sends_the_retry_to_another_gpu_worker():
    scheduler = two_gpus()
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    # The allocation failed: nothing was held on the GPU, no GPU memory figure comes back, so
    # the task's estimate (5 GiB) did not rise and "t4a" still looks the better worker.
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", duration_s=1.0, peak_rss_bytes=GIB,
                            gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id == "t4b"
    assert [(e.worker_id, e.kind, e.resource, e.reason) for e in retry.exclusions] == [
        ("t4a", ExclusionKind.FAILED_HERE, "gpu_memory", "an earlier attempt ran out of GPU memory here")]
    assert scheduler.statistics()["exclusions_by_kind"]["failed_here"] == 1
    # Another task of the type still goes to "t4a": the avoidance is the failed task's own.
    assert scheduler.decide_task(infer("i2"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"


def test_a_cuda_oom_proves_the_task_needs_more_gpu_memory_than_its_gpu_had_free():
    scheduler = two_gpus()
    scheduler.observe(gpu_sample("t4b", 90.0, 7.0, 16.0))  # 9 GiB free there now
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"  # 10 GiB free
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    # Its type's 5 GiB said it fits in 9 GiB; the failed allocation says it needs over 10 GiB.
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id is None
    [fit] = [e for e in retry.exclusions if e.worker_id == "t4b"]
    assert fit.kind == ExclusionKind.GPU_MEMORY_FIT and fit.value == pytest.approx(10 * GIB + 64 * 1024**2)
    scheduler.observe(gpu_sample("t4b", 90.0, 5.5, 16.0))  # 10.5 GiB free
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4b"
    # Another task of the type is still predicted from its type's runs.
    assert scheduler.decide_task(infer("i2"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"


@pytest.mark.parametrize("rejoins", [False, True])
def test_a_gpu_task_placed_beside_the_failed_one_does_not_shrink_what_the_failure_proves(rejoins):
    """A failing allocation holds nothing, so a later sample shows its GPU free and another task
    of ours goes there before the failure is known; what that one holds says nothing of what
    the failed one lacked: it still needed more than the room its own decision saw. The same
    when the worker leaves and registers again while i1 runs (a heartbeat lapse, say): GPU
    placements are numbered across the fleet, so i2 still counts as placed after i1."""
    scheduler = two_gpus()
    scheduler.observe(gpu_sample("t4b", 90.0, 7.0, 16.0))  # 9 GiB free there
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"  # 10 GiB free
    if rejoins:
        scheduler.worker_left("t4a")
        scheduler.worker_registered("t4a", gpu_caps(16))
    later = dataclasses.replace(gpu_sample("t4a", 10.0, 6.0, 16.0), timestamp=utc_now() + timedelta(seconds=30))
    scheduler.observe(later)  # taken well after i1 started, and showing nothing of it
    assert scheduler.decide_task(infer("i2"), ["t4a"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    # 5 GiB is free on "t4a" now (i2's share is taken), but i1 lacked more than the 10 GiB it saw.
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id is None
    [fit] = [e for e in retry.exclusions if e.worker_id == "t4b"]
    assert fit.kind == ExclusionKind.GPU_MEMORY_FIT and fit.value == pytest.approx(10 * GIB + 64 * 1024**2)


def test_a_failure_on_a_gpu_whose_room_was_unknown_at_the_start_learns_from_the_room_at_the_end():
    scheduler = two_gpus()
    scheduler.coordinator.register_worker("t4c", gpu_caps(16))
    scheduler.worker_registered("t4c", gpu_caps(16))
    assert scheduler.decide_task(infer("i1"), ["t4c"], {}).chosen_worker_id == "t4c"  # never sampled yet
    scheduler.observe(gpu_sample("t4c", 10.0, 8.0, 16.0))  # 8 GiB free, and nothing placed there since
    scheduler.task_finished("i1", "t4c", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.observe(gpu_sample("t4a", 10.0, 9.0, 16.0))  # 7 GiB free: its type's 5 GiB would fit
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b", "t4c"], {})
    assert retry.chosen_worker_id == "t4b"  # 14 GiB free
    [fit] = [e for e in retry.exclusions if e.worker_id == "t4a"]
    assert fit.kind == ExclusionKind.GPU_MEMORY_FIT and fit.value == pytest.approx(8 * GIB + 64 * 1024**2)


def test_a_task_that_ran_out_of_gpu_memory_with_the_largest_gpu_free_is_placed_at_once_and_said_unplaceable():
    """No GPU of the fleet can hold it: waiting for one to drain only delays the failures that
    end it, so it is placed where its hardware fits, whatever GPU memory is free and beside
    tasks of ours though it asked for a worker of its own, and the decision says why."""
    scheduler = two_gpus()
    train = {"task_id": "big", "type": "train", "priority": 1,
             "requirements": {"hardware": ["gpu"], "isolation": "exclusive"}}
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))  # the whole 16 GiB free, and a quiet CPU
    assert scheduler.decide_task(train, ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("big", "t4a", success=False, task_type="train", gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.observe(gpu_sample("t4a", 10.0, 15.0, 16.0))  # 1 GiB free on each GPU now
    scheduler.observe(gpu_sample("t4b", 10.0, 15.0, 16.0))
    counts = {"t4a": 1, "t4b": 1}  # a task of ours on each
    retry = scheduler.decide_task(train, ["t4a", "t4b"], counts)
    assert retry.chosen_worker_id is not None
    assert retry.unplaceable_reason == ("an attempt ran out of GPU memory with 16.0 GiB free, as much as the "
                                        "largest compatible GPU has (16.0 GiB): no worker can hold it")
    assert retry.explanation.startswith(retry.unplaceable_reason)
    assert [e for e in retry.exclusions if e.kind is not ExclusionKind.HARDWARE] == []
    # A task of the type that has not failed so waits for a worker of its own with room.
    assert scheduler.decide_task({**train, "task_id": "other"}, ["t4a", "t4b"], counts).chosen_worker_id is None
    scheduler.task_finished("big", retry.chosen_worker_id, success=False, task_type="train", gpu_memory_bytes=0.0,
                            error=CUDA_OOM)
    # Less than the whole of the largest GPU free proves less: such a retry still waits for room.
    scheduler.observe(gpu_sample("t4b", 10.0, 4.0, 16.0))  # 12 GiB free
    assert scheduler.decide_task(infer("i1"), ["t4b"], {}).chosen_worker_id == "t4b"
    scheduler.task_finished("i1", "t4b", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.observe(gpu_sample("t4b", 10.0, 15.0, 16.0))
    held = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], counts)
    assert held.chosen_worker_id is None and held.unplaceable_reason is None


def test_a_failure_beside_a_gpu_task_of_ours_placed_after_it_does_not_prove_the_task_outgrew_the_gpu():
    """i1 saw the whole 16 GiB free; the scheduler then put i2 on the same GPU (room left for
    it beside i1's 5 GiB), and i2 took 10 GiB. i1's allocation failed: it lacked more than what
    i2 left it, not more than 16 GiB. With the room at the failure ignored (a placement came
    after) only the 16 GiB its decision saw is left, >= 98 % of the largest GPU: i1 is said
    unplaceable and placed at once, to fail until the retry limit ends it, though its type
    takes 5 GiB. Before 2b000fd the less of 16 and 6 GiB was taken. Right: not unplaceable,
    and the retry goes to "t4b" (14 GiB free)."""
    scheduler = two_gpus()
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))  # the whole GPU free
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    assert scheduler.decide_task(infer("i2"), ["t4a"], {}).chosen_worker_id == "t4a"  # beside i1: 11 GiB room
    shown = dataclasses.replace(gpu_sample("t4a", 10.0, 10.0, 16.0), timestamp=utc_now() + timedelta(seconds=30))
    scheduler.observe(shown)  # i2 holds 10 GiB; i1's failing allocation held nothing
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.unplaceable_reason is None
    assert retry.chosen_worker_id == "t4b"


def two_gpu_sample(worker_id: str, gpus: list[tuple[float, float]]) -> ResourceUtilization:
    """A worker with two 16 GiB GPUs, each given as (utilization percent, GiB used)."""
    rows = tuple(GpuUtilization(i, f"GPU-{worker_id}-{i}", "Tesla T4", util, int(used * GIB), int(16 * GIB))
                 for i, (util, used) in enumerate(gpus))
    return ResourceUtilization(worker_id=worker_id, timestamp=utc_now(), cpu_percent=10.0, memory_percent=10.0,
                               cpu_count_effective=8, memory_total_bytes=64 * GIB,
                               memory_available_bytes=int(57.6 * GIB), gpus=rows)


def test_on_a_two_gpu_worker_one_free_gpu_does_not_prove_the_attempt_had_it():
    """"duo" has GPU 0 empty but busy (60 %) and GPU 1 idle (0 %) with 15 GiB held by a process
    not ours. The launcher picks the least loaded GPU (as gpu_after_placement assumes): GPU 1,
    1 GiB free. gpu_memory_room() is the best GPU's 16 GiB, so the failure is read as one with
    the whole largest GPU free and i1 (its type takes 5 GiB) is said unplaceable. Right: the
    failure proves no more than the least room among the GPUs it may have run on; not unplaceable."""
    scheduler = two_gpus()
    caps = {**gpu_caps(16), "gpus": [{"name": "Tesla T4", "cuda_compute": 7.5, "memory_gb": 16}] * 2}
    scheduler.coordinator.register_worker("duo", caps)
    scheduler.worker_registered("duo", caps)
    scheduler.observe(two_gpu_sample("duo", [(60.0, 0.0), (0.0, 15.0)]))
    assert scheduler.decide_task(infer("i1"), ["duo"], {}).chosen_worker_id == "duo"
    scheduler.task_finished("i1", "duo", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b", "duo"], {})
    assert retry.unplaceable_reason is None


def test_a_compatible_worker_whose_gpu_size_is_unknown_may_still_hold_the_task():
    """"a100" has a GPU whose size neither its record nor a sample states yet; the capacity
    frontier keeps it as a GPU that could be any size (None), but _too_large skips None and
    compares with the T4's 16 GiB alone, so "big" is said unplaceable and thrown at once at
    16 GiB GPUs it is proven not to fit. Right: no verdict while a compatible GPU's size is unknown."""
    scheduler = two_gpus()
    caps = {"hardware": ["cpu", "gpu"], "memory": {"total_gb": 32}, "cpu": {"cores": 8},
            "gpu": {"name": "NVIDIA A100", "cuda_compute": 8.0}}
    scheduler.coordinator.register_worker("a100", caps)
    scheduler.worker_registered("a100", caps)
    train = {"task_id": "big", "type": "train", "priority": 1, "requirements": {"hardware": ["gpu"]}}
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))
    assert scheduler.decide_task(train, ["t4a"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("big", "t4a", success=False, task_type="train", gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(train, ["t4a", "t4b", "a100"], {})
    assert retry.unplaceable_reason is None


def test_a_task_said_too_large_is_counted_in_flight_with_the_gpu_memory_it_will_take():
    """Placed with its GPU memory capped at 0, "big" is put in flight on "t4a" at 0 GiB, though
    it proved it fills more than the whole GPU before its allocation fails. The next GPU task
    then sees all 16 GiB free on "t4a" and goes there (quiet CPU), to run out of GPU memory
    beside it; its failure, read with the 16 GiB its decision saw (no sample between), is in
    turn said unplaceable (a 5 GiB task). Right: "t4a"'s GPU counts as taken while "big" runs;
    i2 goes to "t4b" (14 GiB free)."""
    scheduler = two_gpus()
    train = {"task_id": "big", "type": "train", "priority": 1, "requirements": {"hardware": ["gpu"]}}
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))
    assert scheduler.decide_task(train, ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("big", "t4a", success=False, task_type="train", gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(train, ["t4a", "t4b"], {})
    assert retry.chosen_worker_id == "t4a" and retry.unplaceable_reason is not None
    assert scheduler.decide_task(infer("i2"), ["t4a", "t4b"], {}).chosen_worker_id == "t4b"


def test_a_task_said_too_large_keeps_the_host_memory_its_attempt_proved():
    """Its attempt peaked at 20 GiB of host memory (a 30 GiB retry floor), but the floor is
    dropped whole, host memory with GPU memory, so the retry is sent to "t4b" with 8 GiB of
    memory free beside tasks of ours, where the OOM killer may take a neighbour. Right: the GPU
    evidence lifts the GPU figure only; "t4b" is excluded for memory."""
    scheduler = two_gpus()
    train = {"task_id": "big", "type": "train", "priority": 1, "requirements": {"hardware": ["gpu"]}}
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))
    assert scheduler.decide_task(train, ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("big", "t4a", success=False, task_type="train", peak_rss_bytes=20 * GIB,
                            gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.observe(gpu_sample("t4a", 90.0, 15.0, 16.0))
    scheduler.observe(dataclasses.replace(gpu_sample("t4b", 10.0, 15.0, 16.0), memory_percent=87.5,
                                          memory_available_bytes=8 * GIB))
    retry = scheduler.decide_task(train, ["t4a", "t4b"], {})
    assert retry.chosen_worker_id != "t4b"
    assert "t4b" in {e.worker_id for e in retry.exclusions if e.kind is ExclusionKind.MEMORY_FIT}


def test_a_failure_beside_a_gpu_task_of_ours_placed_before_it_proves_nothing_of_the_whole_gpu():
    """Two tasks of a type never measured go to one GPU in a burst: the first's use is not in
    any sample yet and its prediction holds no GPU memory, so the GPU looks wholly free both
    when the second was placed and when it failed. It failed beside the first, which may hold
    most of the GPU: it is not said too large for every GPU."""
    scheduler = two_gpus()
    train = {"type": "train", "priority": 1, "requirements": {"hardware": ["gpu"]}}
    scheduler.observe(gpu_sample("t4a", 10.0, 0.0, 16.0))  # the whole 16 GiB free
    assert scheduler.decide_task({**train, "task_id": "first"}, ["t4a"], {}).chosen_worker_id == "t4a"
    assert scheduler.decide_task({**train, "task_id": "second"}, ["t4a"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("second", "t4a", success=False, task_type="train", gpu_memory_bytes=0.0,
                            error=CUDA_OOM)
    retry = scheduler.decide_task({**train, "task_id": "second"}, ["t4a", "t4b"], {})
    assert retry.unplaceable_reason is None


def test_a_retry_goes_back_once_a_gpu_task_there_ended_or_when_no_other_worker_fits():
    scheduler = two_gpus()
    scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    assert scheduler.decide_task(infer("i1"), ["t4a"], {}).chosen_worker_id is None  # "t4b" busy: it waits
    scheduler.task_finished("i9", "t4a", success=True, gpu_memory_bytes=4 * GIB)  # GPU memory freed on "t4a"
    # It needs more than the 10 GiB "t4a" had free: back there once a sample shows more.
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4b"
    scheduler.observe(gpu_sample("t4a", 10.0, 1.0, 16.0))  # 15 GiB free; "t4b" not started, asked again
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    # Failed on both: the latest is avoided, then none when "t4b" alone is left in the fleet.
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    scheduler.task_finished("i1", "t4b", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id == "t4a"
    assert [(e.worker_id, e.kind) for e in retry.exclusions] == [("t4b", ExclusionKind.FAILED_HERE)]
    scheduler.worker_left("t4a")
    assert scheduler.decide_task(infer("i1"), ["t4b"], {}).chosen_worker_id == "t4b"


def test_a_failure_of_another_kind_avoids_nothing():
    scheduler = two_gpus()
    scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    scheduler.task_finished("i1", "t4a", success=False, task_type="infer", gpu_memory_bytes=0.0,
                            error="AssertionError: 3 != 4")
    retry = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id == "t4a" and retry.exclusions == ()


def test_the_integration_hands_the_failure_message_to_the_scheduler(tmp_path):
    from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration

    coordinator = Coordinator(max_tasks_per_worker=4)
    for worker_id in ("t4a", "t4b"):
        coordinator.register_worker(worker_id, gpu_caps(16))
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=str(tmp_path / "retry.duckdb"),
                                                  detect_capabilities=False) as integration:
        integration.update_worker_utilization("t4a", gpu_sample("t4a", 10.0, 6.0, 16.0))
        integration.update_worker_utilization("t4b", gpu_sample("t4b", 90.0, 2.0, 16.0))
        assert integration.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
        integration.start_task_monitoring("i1", "t4a", "infer")
        integration.stop_task_monitoring("i1", "t4a", success=False, error=CUDA_OOM)
        retry = integration.decide_task(infer("i1"), ["t4a", "t4b"], {})
    assert retry.chosen_worker_id == "t4b"
    assert [(e.worker_id, e.kind) for e in retry.exclusions] == [("t4a", ExclusionKind.FAILED_HERE)]


def test_an_exclusive_retry_whose_only_other_worker_is_noisy_is_placed_there_after_the_patience():
    # The exclusive task ran out of GPU memory on the quiet "t4a" and avoids it; "t4b", the only
    # other worker that could hold it, has a neighbour at 70 %. The quiet worker it avoids kept
    # the patience from running out, and the retry waited for ever; now, 600 s of "t4b"'s
    # samples later, it goes there alone.
    clock = [1000.0]
    coordinator = Coordinator(max_tasks_per_worker=4)
    for worker_id in ("t4a", "t4b"):
        coordinator.register_worker(worker_id, gpu_caps(16))
    scheduler = HardwareAwareScheduler(coordinator, clock=lambda: clock[0])
    for worker_id, info in coordinator.workers.items():
        scheduler.worker_registered(worker_id, info["capabilities"])
    task = {"task_id": "p1", "type": "gperf", "priority": 1,
            "requirements": {"hardware": ["gpu"], "isolation": "exclusive"}}
    scheduler.observe(gpu_sample("t4a", 10.0, 1.0, 16.0))
    scheduler.observe(gpu_sample("t4b", 70.0, 1.0, 16.0))
    assert scheduler.decide_task(task, ["t4a", "t4b"], {}).chosen_worker_id == "t4a"
    scheduler.task_finished("p1", "t4a", success=False, task_type="gperf", gpu_memory_bytes=0.0, error=CUDA_OOM)
    first = clock[0]
    while clock[0] - first < 800.0:
        scheduler.observe(gpu_sample("t4a", 10.0, 1.0, 16.0))
        scheduler.observe(gpu_sample("t4b", 70.0, 1.0, 16.0))
        retry = scheduler.decide_task(task, ["t4a", "t4b"], {})
        if retry.chosen_worker_id is not None:
            break
        clock[0] += 5.0
    assert retry.chosen_worker_id == "t4b" and 600.0 <= clock[0] - first <= 700.0
    assert retry.explanation.startswith("isolation exclusive relaxed")
    assert ("t4a", ExclusionKind.FAILED_HERE) in [(e.worker_id, e.kind) for e in retry.exclusions]
