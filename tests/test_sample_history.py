"""The in-memory sample history held as columns gives back records equal to those recorded,
bounded by count and by time, and shares one shape tuple across a run of equal shapes."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta, timezone

import pytest

from fleet_hwmon.sample import DiskIO, GpuUtilization, MountUsage, NicIO, ResourceUtilization
from fleet_hwmon.sample_history import BLOCK_ROWS, SampleHistory
from hardware_utilization_monitor import HardwareUtilizationMonitor

T0 = datetime(2026, 3, 1, 12, 0, 0, 250_001, tzinfo=timezone.utc)
GIB = 1024**3


def full_sample(i: int) -> ResourceUtilization:
    """Every kind of field set, so each column and the shape tuple are exercised."""
    return ResourceUtilization(
        worker_id="w", timestamp=T0 + timedelta(seconds=i, microseconds=i), monotonic_s=1000.5 + i,
        clock_offset_s=-0.25, cpu_percent=12.5 + i % 50, per_cpu_percent=(10.0, None, 15.0),
        load_average_1m=0.75, cpu_count_effective=3.5, memory_used_bytes=6 * GIB + i,
        memory_available_bytes=2 * GIB, memory_total_bytes=16 * GIB, memory_percent=40.0,
        swap_used_bytes=0, cgroup_memory_usage_bytes=2**62 + 7, disk_usage_percent=61.25,
        net_recv_bytes_per_s=1e5 + i,
        gpus=(GpuUtilization(0, "GPU-0", "NVIDIA A100", 55.0, 4 * GIB, 40 * GIB, health="ok"),),
        disks=(DiskIO("sda", 1.5e6, None),), nics=(NicIO("eth0", 2e6, 1e3),),
        mounts=(MountUsage("/data", 50.0, 10 * GIB, 20 * GIB),), task_ids=("t-1", "t-2"),
        simulated_fields=("gpus",), invalid_fields=("swap_percent",))


def held(history: SampleHistory, **bounds) -> list[ResourceUtilization]:
    return SampleHistory.records(history.window(), **bounds)


def test_records_come_back_equal_with_the_same_types():
    history = SampleHistory(10_000)
    samples = [full_sample(i) for i in range(BLOCK_ROWS * 2 + 5)]
    sparse = ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(hours=1))  # every number unknown
    for sample in [*samples, sparse]:
        history.append(sample)
    back = held(history)
    assert back == [*samples, sparse]
    for original, copy in zip([*samples, sparse], back):
        for f in dataclasses.fields(ResourceUtilization):
            assert type(getattr(copy, f.name)) is type(getattr(original, f.name)), f.name
    assert back[0].timestamp.tzinfo is timezone.utc and back[0].timestamp.microsecond == 250_001
    assert back[0].cgroup_memory_usage_bytes == 2**62 + 7  # int64 exactly, not through a float


def test_equal_shapes_share_one_tuple():
    history = SampleHistory(100)
    for i in range(3):  # a new task-id tuple each time, equal to the one before
        history.append(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0,
                                           task_ids=(f"task-{1}",)))
    blocks = history.window().blocks
    assert blocks[0].shapes[0] is blocks[0].shapes[1] is blocks[0].shapes[2]
    assert sum(column is not None for column in blocks[0].columns) == 1  # none for the unknown fields


def test_samples_it_cannot_hold_exactly_are_kept_whole():
    history = SampleHistory(100)
    plus_two = timezone(timedelta(hours=2))
    odd = [
        ResourceUtilization(worker_id="w", timestamp=T0.astimezone(plus_two), cpu_percent=5.0),
        full_sample(1).evolve(cpu_percent=float("nan")),  # evolve() does not check values
        full_sample(2).evolve(memory_total_bytes=2**64),
        full_sample(3).evolve(memory_used_bytes=True),
    ]
    for sample in odd:
        history.append(sample)
    back = held(history)
    assert all(a is b for a, b in zip(back, odd)) and len(back) == 4
    assert back[0].timestamp.utcoffset() == timedelta(hours=2)


def test_bounded_by_count_and_by_time():
    by_count = SampleHistory(BLOCK_ROWS + 3)
    by_time = SampleHistory(10_000, window_s=60)
    for i in range(1000):
        sample = ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=float(i % 100))
        by_count.append(sample)
        by_time.append(sample)
    def seconds(first: int) -> list[datetime]:
        return [T0 + timedelta(seconds=i) for i in range(first, 1000)]

    assert [s.timestamp for s in held(by_count)] == seconds(1000 - BLOCK_ROWS - 3)
    assert [s.timestamp for s in held(by_time)] == seconds(939)  # the edge is kept
    assert len(by_time) == 61 and len(by_time.window().blocks) <= 2  # dropped blocks are let go
    with pytest.raises(ValueError, match="max_samples must be positive"):
        SampleHistory(0)


def test_filters_by_time_and_task():
    history = SampleHistory(100)
    for i in range(6):
        history.append(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=float(i),
                                           task_ids=("a",) if i % 2 else ()))
    assert [s.cpu_percent for s in held(history, start=T0 + timedelta(seconds=2))] == [2.0, 3.0, 4.0, 5.0]
    naive_end = (T0 + timedelta(seconds=3)).replace(tzinfo=None)  # read as UTC
    assert [s.cpu_percent for s in held(history, end=naive_end)] == [0.0, 1.0, 2.0, 3.0]
    assert [s.cpu_percent for s in held(history, task_id="a")] == [1.0, 3.0, 5.0]


def test_a_window_taken_earlier_is_unchanged_by_later_samples():
    history = SampleHistory(BLOCK_ROWS, window_s=3600)
    for i in range(BLOCK_ROWS):
        history.append(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=1.0))
    window = history.window()
    before = SampleHistory.records(window)
    for i in range(BLOCK_ROWS, 3 * BLOCK_ROWS):
        history.append(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i), cpu_percent=2.0))
    assert SampleHistory.records(window) == before and len(history) == BLOCK_ROWS


def test_monitor_reads_its_history_while_samples_arrive():
    monitor = HardwareUtilizationMonitor("w", push_only=True, history_s=30).start_monitoring()
    stop, seen = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            samples = monitor.get_historical_metrics()
            seen.append(all(a.timestamp < b.timestamp for a, b in zip(samples, samples[1:])) and len(samples) <= 31)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(2000):
            monitor.record_sample(ResourceUtilization(worker_id="w", timestamp=T0 + timedelta(seconds=i),
                                                      cpu_percent=float(i % 100)))
    finally:
        stop.set()
        reader.join()
        monitor.stop_monitoring()
    assert seen and all(seen)
    assert [s.cpu_percent for s in monitor.get_historical_metrics()] == [float(i % 100) for i in range(1969, 2000)]
