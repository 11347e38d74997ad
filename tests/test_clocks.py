"""Two clocks: wall-clock steps during a task change no duration, total or membership, and a
remote worker's clock offset is estimated and taken out of every comparison of times."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from coordinator_hardware_monitoring_integration import CoordinatorHardwareMonitoringIntegration
from fleet_hwmon.clock_offset import ClockOffsets
from fleet_hwmon.clocks import WallClockStepDetector, wall_step_s
from fleet_hwmon.coordinator.coordinator import Coordinator
from fleet_hwmon.sample import ResourceUtilization
from hardware_utilization_monitor import HardwareUtilizationMonitor

EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAY_S = 86400.0


class Clocks:
    """A wall clock and a monotonic clock that move together, until the wall clock steps."""

    def __init__(self, monotonic_s: float = 100.0) -> None:
        self.monotonic_s = monotonic_s
        self.wall = EPOCH

    def monotonic(self) -> float:
        return self.monotonic_s

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.monotonic_s += seconds
        self.wall += timedelta(seconds=seconds)

    def step(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)


class Traffic:
    """A metric source with fixed figures: 1,000 bytes/s received, 50 % CPU."""

    name = "traffic"

    def read(self, now_s: float) -> dict[str, Any]:
        return {"net_recv_bytes_per_s": 1000.0, "cpu_percent": 50.0}


def run_task_with_step(step_s: float, caplog) -> tuple[Any, HardwareUtilizationMonitor]:
    """A 4-s task sampled every second on a sampling monitor; the wall clock steps by
    ``step_s`` between the second and the third sample."""
    clocks = Clocks()
    monitor = HardwareUtilizationMonitor("stepped", interval_seconds=3600, sources=[Traffic()],
                                         wall_clock=clocks.now, clock=clocks.monotonic)
    with caplog.at_level(logging.WARNING):
        monitor.start_task_monitoring("t1", "unit")  # sample 1 (at the start: no bytes)
        clocks.advance(1)
        monitor.sample_now()  # sample 2
        clocks.advance(1)
        clocks.step(step_s)
        monitor.sample_now()  # sample 3, after the step
        clocks.advance(1)
        monitor.sample_now()  # sample 4
        clocks.advance(1)
        usage = monitor.stop_task_monitoring("t1")  # sample 5
    return usage, monitor


@pytest.mark.parametrize("step_s", [DAY_S, -3600.0])
def test_a_wall_clock_step_during_a_task_changes_no_duration_total_or_membership(step_s, caplog):
    usage, monitor = run_task_with_step(step_s, caplog)
    assert usage.duration_s == 4.0
    assert usage.sample_count == 5
    assert usage.net_recv_bytes == 4000.0  # four 1-s intervals at 1,000 bytes/s
    assert usage.mean_cpu_percent == 50.0
    # Stored times stay wall-clock: the end is dated after the step.
    assert usage.start_time == EPOCH
    assert usage.end_time == EPOCH + timedelta(seconds=4 + step_s)
    steps = [r for r in caplog.records if "stepped" in r.getMessage()]
    assert len(steps) == 1 and f"{step_s:+.3f} s" in steps[0].getMessage()
    assert monitor.status()["wall_clock_steps"] == 1


def test_wall_step_tolerates_slew_and_measures_steps():
    assert wall_step_s(EPOCH, 0.0, EPOCH + timedelta(seconds=60.3), 60.0) is None  # 0.5 % slew
    assert wall_step_s(EPOCH, 0.0, EPOCH + timedelta(seconds=57.0), 60.0) == pytest.approx(-3.0)
    detector = WallClockStepDetector("x")
    assert detector.observe(EPOCH, 0.0) is None
    assert detector.observe(EPOCH + timedelta(seconds=3601), 1.0) == pytest.approx(3600.0)
    assert detector.observe(EPOCH + timedelta(seconds=3602), 2.0) is None  # logged once, not again
    assert detector.steps == 1


def test_a_task_without_monotonic_readings_never_gets_a_negative_duration():
    from fleet_hwmon.tasks import TaskAccumulator

    accumulator = TaskAccumulator("t", "w", EPOCH)
    usage = accumulator.snapshot(end_time=EPOCH - timedelta(hours=1), success=True)
    assert usage.duration_s is None  # unknown, never -3600


def test_history_learns_from_the_monotonic_duration_when_the_coordinator_clock_steps_back():
    clocks = Clocks(1000.0)
    coordinator = Coordinator(max_tasks_per_worker=4, seed=0)
    coordinator.register_worker("w1", {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                       "cpu": {"cores_effective": 8}})
    with CoordinatorHardwareMonitoringIntegration(coordinator, clock=clocks.monotonic, wall_clock=clocks.now,
                                                  detect_capabilities=False) as integration:
        integration.start_task_monitoring("t1", "w1", "unit")
        clocks.advance(2)
        clocks.step(-3600)
        clocks.advance(2)
        usage = integration.stop_task_monitoring("t1", "w1", process_usage={"cpu_seconds": 8.0})
        assert usage.duration_s == 4.0
        assert integration.history.task_demand("w1", "unit").cores == pytest.approx(2.0)
        assert integration.history.stats("w1", "unit").duration_s == 4.0


# -- remote clock offsets ----------------------------------------------------------------------
def test_the_offset_is_the_minimum_of_receive_minus_send_over_the_window():
    offsets = ClockOffsets(window_s=60.0)
    ahead = timedelta(minutes=10)
    # Sent at coordinator seconds 0, 5, 10 by a clock 10 min ahead; delays 0.3, 0.05, 2.0 s.
    for sent_s, delay_s in [(0.0, 0.3), (5.0, 0.05), (10.0, 2.0)]:
        mapped = offsets.observe("w", EPOCH + ahead + timedelta(seconds=sent_s),
                                 EPOCH + timedelta(seconds=sent_s + delay_s), 500.0 + sent_s + delay_s)
    assert offsets.offset_s("w") == pytest.approx(600.0 - 0.05)
    # The late sample keeps the best estimate: its coordinator time is its sending time + 0.05 s.
    assert mapped.coordinator_time == EPOCH + timedelta(seconds=10.05)
    assert mapped.monotonic_s == pytest.approx(510.05)
    # The window forgets: 70 s later only the newer observations count.
    offsets.observe("w", EPOCH + ahead + timedelta(seconds=80), EPOCH + timedelta(seconds=80.5), 580.5)
    assert offsets.offset_s("w") == pytest.approx(599.5)


def remote_sample(worker_id: str, sent: datetime, cpu: float) -> ResourceUtilization:
    return ResourceUtilization(worker_id=worker_id, timestamp=sent, cpu_percent=cpu, memory_percent=10.0,
                               memory_total_bytes=16 * 1024**3, memory_available_bytes=14 * 1024**3,
                               cpu_count_effective=8.0)


def test_ingestion_maps_remote_samples_to_coordinator_time_and_stores_the_original(tmp_path):
    clocks = Clocks(1000.0)
    coordinator = Coordinator(max_tasks_per_worker=4, seed=0)
    coordinator.register_worker("ahead", {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                          "cpu": {"cores_effective": 8}})
    db = str(tmp_path / "skew.duckdb")
    with CoordinatorHardwareMonitoringIntegration(coordinator, db_path=db, clock=clocks.monotonic,
                                                  wall_clock=clocks.now, detect_capabilities=False) as integration:
        sent = EPOCH + timedelta(minutes=10)
        integration.update_worker_utilization("ahead", remote_sample("ahead", sent, 20.0))
        view = integration.scheduler._views["ahead"]
        assert view.latest.timestamp == EPOCH  # coordinator time
        stored = integration.get_worker_utilization("ahead")
        assert stored.timestamp == sent and stored.clock_offset_s == pytest.approx(600.0)
        integration.start_task_monitoring("t1", "ahead", "unit")
        for _ in range(3):
            clocks.advance(1)
            integration.update_worker_utilization(
                "ahead", remote_sample("ahead", clocks.now() + timedelta(minutes=10), 60.0))
        usage = integration.stop_task_monitoring("t1", "ahead")
        assert (usage.sample_count, usage.duration_s, usage.mean_cpu_percent) == (3, 3.0, 60.0)
        # one warning for the whole run, and the offset in the report
        alerts = integration.worker_monitors["ahead"].get_alerts(resource="clock_offset")
        assert [(a.severity.value, a.state.value) for a in alerts] == [("warning", "firing")]
        assert "600 s ahead of the coordinator's" in alerts[0].message
        (worker,) = integration.generate_resource_report()["workers"]
        assert worker["clock_offset_s"] == pytest.approx(600.0)


SKEWS = {"ahead": timedelta(minutes=10), "behind": timedelta(minutes=-10), "on-1": timedelta(0),
         "on-2": timedelta(0)}


def place_burst(correct_offsets: bool = True) -> dict[str, int]:
    """Eight 3-core tasks onto four identical idle 8-core workers (two fit each), one 10 minutes
    ahead and one 10 minutes behind; every worker sends a sample each half second, within the
    in-flight hold (5 s), so no sample shows the tasks yet."""
    from collections import Counter

    clocks = Clocks(1000.0)
    coordinator = Coordinator(max_tasks_per_worker=8, seed=0)
    for worker in SKEWS:
        coordinator.register_worker(worker, {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                             "cpu": {"cores_effective": 8}})
    counts: Counter[str] = Counter()
    with CoordinatorHardwareMonitoringIntegration(coordinator, clock=clocks.monotonic, wall_clock=clocks.now,
                                                  detect_capabilities=False, seed=3) as integration:
        if not correct_offsets:  # what the views saw before: the worker's own clock
            integration._offsets.observe = lambda w, sent, received, received_s: type(
                "Raw", (), {"monotonic_s": received_s, "offset_s": 0.0})()
        for worker in SKEWS:
            integration.history.record(worker, "unit", success=True, duration_s=60.0, cpu_seconds=180.0)

        def tick() -> None:
            for worker, skew in SKEWS.items():
                integration.update_worker_utilization(worker, remote_sample(worker, clocks.now() + skew, 10.0))
            clocks.advance(0.5)

        tick()
        for n in range(8):
            chosen = integration.decide_task(cpu_task_of(f"t{n}"), list(SKEWS), dict(counts)).chosen_worker_id
            counts[chosen] += 1
            tick()
    return dict(counts)


def cpu_task_of(task_id: str) -> dict[str, Any]:
    return {"task_id": task_id, "type": "unit", "priority": 1, "requirements": {"hardware": ["cpu"]}}


def test_workers_ten_minutes_ahead_or_behind_get_their_fair_share():
    assert place_burst() == {"ahead": 2, "behind": 2, "on-1": 2, "on-2": 2}
    # Judged by their own clocks the worker ahead looks drained at once and draws more than any other.
    skewed = place_burst(correct_offsets=False)
    assert skewed["ahead"] > max(count for worker, count in skewed.items() if worker != "ahead")


def test_a_coordinator_clock_step_is_logged_once_however_many_workers_and_tasks_see_it(caplog):
    clocks = Clocks(1000.0)
    coordinator = Coordinator(max_tasks_per_worker=4, seed=0)
    for worker in ("w1", "w2", "w3"):
        coordinator.register_worker(worker, {"hardware": ["cpu"], "memory": {"total_gb": 16},
                                             "cpu": {"cores_effective": 8}})
    with CoordinatorHardwareMonitoringIntegration(coordinator, clock=clocks.monotonic, wall_clock=clocks.now,
                                                  detect_capabilities=False) as integration:
        for worker in ("w1", "w2", "w3"):
            integration.start_task_monitoring(f"t-{worker}", worker, "unit")
        clocks.advance(1)
        with caplog.at_level(logging.WARNING, logger="fleet_hwmon.clocks"):
            clocks.step(DAY_S)
            for worker in ("w1", "w2", "w3"):
                integration.update_worker_utilization(worker, remote_sample(worker, clocks.now(), 30.0))
                clocks.advance(1)
                usage = integration.stop_task_monitoring(f"t-{worker}", worker)
                assert usage.duration_s < 5
        assert len([r for r in caplog.records if "stepped" in r.getMessage()]) == 1
        assert integration.worker_monitors["w1"].status()["wall_clock_steps"] == 1
