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


def test_a_gpu_task_placed_beside_the_failed_one_does_not_shrink_what_the_failure_proves():
    """A failing allocation holds nothing, so a later sample shows its GPU free and another task
    of ours goes there before the failure is known; what that one holds says nothing of what
    the failed one lacked: it still needed more than the room its own decision saw."""
    scheduler = two_gpus()
    scheduler.observe(gpu_sample("t4b", 90.0, 7.0, 16.0))  # 9 GiB free there
    assert scheduler.decide_task(infer("i1"), ["t4a", "t4b"], {}).chosen_worker_id == "t4a"  # 10 GiB free
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
    # Less than the whole of the largest GPU free proves less: such a retry still waits for room.
    scheduler.observe(gpu_sample("t4b", 10.0, 4.0, 16.0))  # 12 GiB free
    assert scheduler.decide_task(infer("i1"), ["t4b"], {}).chosen_worker_id == "t4b"
    scheduler.task_finished("i1", "t4b", success=False, task_type="infer", gpu_memory_bytes=0.0, error=CUDA_OOM)
    scheduler.observe(gpu_sample("t4b", 10.0, 15.0, 16.0))
    held = scheduler.decide_task(infer("i1"), ["t4a", "t4b"], counts)
    assert held.chosen_worker_id is None and held.unplaceable_reason is None


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
