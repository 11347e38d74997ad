"""The report shows, per run of a quiet / exclusive task, the load its worker ran under: figures
from a real DuckDB file of samples, task runs and scheduling decisions, worked out by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from fleet_hwmon.reports.fleet_report import build_report_data, export_report_json, render_fleet_report
from fleet_hwmon.sample import GpuUtilization, ResourceUtilization
from fleet_hwmon.scoring.decide import SchedulingDecision
from fleet_hwmon.store import close_store, open_store
from fleet_hwmon.tasks import TaskResourceUsage

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(worker_id: str, seconds: float, cpu: float | None, gpu: float | None, *task_ids: str) -> ResourceUtilization:
    gpus = () if gpu is None else (GpuUtilization(0, f"GPU-{worker_id}", "L4", utilization_percent=gpu),)
    return ResourceUtilization(worker_id=worker_id, timestamp=at(seconds), cpu_percent=cpu, gpus=gpus,
                               task_ids=task_ids)


def decision(task_id: str, seconds: float, worker_id: str | None, isolation: str, needs_gpu=False):
    score = 1.0 if worker_id else None
    return SchedulingDecision(decision_id=f"d-{task_id}-{seconds}", timestamp=at(seconds), task_id=task_id,
                              task_type="benchmark", chosen_worker_id=worker_id, chosen_score=score,
                              original_worker_id=worker_id, original_score=score,
                              candidate_count=1, candidates=(), exclusions=(), explanation="",
                              isolation=isolation, needs_gpu=needs_gpu)


def run(task_id: str, worker_id: str, start: float, end: float, success=True) -> TaskResourceUsage:
    return TaskResourceUsage(task_id=task_id, worker_id=worker_id, start_time=at(start), end_time=at(end),
                             duration_s=end - start, success=success, task_type="benchmark")


def populate(store) -> None:
    store.ensure_table("resource_utilization", ResourceUtilization)
    store.ensure_table("task_resource_usage", TaskResourceUsage)
    store.ensure_table("scheduling_decisions", SchedulingDecision)
    samples = [
        # bench-quiet, a CPU task on w-a from 10 s to 40 s. The sample at 0 s names it but comes
        # before its start; its busy GPU does not count against a CPU task; 85 % CPU is over 80 %.
        sample("w-a", 0, 99.0, 90.0, "bench-quiet"),
        sample("w-a", 10, 20.0, 90.0, "bench-quiet"), sample("w-a", 20, 50.0, 90.0, "bench-quiet"),
        sample("w-a", 30, 85.0, 90.0, "bench-quiet"), sample("w-a", 40, 40.0, 90.0, "bench-quiet"),
        # bench-calm on w-a from 50 s to 60 s (it failed: the load it ran under still shows).
        sample("w-a", 50, 10.0, 5.0, "bench-calm"), sample("w-a", 60, 12.0, 5.0, "bench-calm"),
        # bench-gpu, exclusive GPU task on w-b from 0 to 30 s: a busy GPU is over, 80 % is at the
        # threshold (under), an unknown CPU is neither under nor over, another task beside it is over.
        sample("w-b", 0, 10.0, 95.0, "bench-gpu"), sample("w-b", 10, 20.0, 80.0, "bench-gpu"),
        sample("w-b", 20, None, 75.0, "bench-gpu"), sample("w-b", 30, 30.0, 70.0, "bench-gpu", "unit-1"),
        # unit-1 is a shared task: not a benchmark.
        sample("w-b", 40, 95.0, 99.0, "unit-1"),
    ]
    store.append_many("resource_utilization", samples)
    for row in (run("bench-quiet", "w-a", 10, 40), run("bench-calm", "w-a", 50, 60, success=False),
                run("bench-gpu", "w-b", 0, 30), run("perf-unsampled", "w-c", 5, 8), run("unit-1", "w-b", 25, 45)):
        store.append("task_resource_usage", row)
    for d in (decision("bench-quiet", 1, None, "quiet"), decision("bench-quiet", 9, "w-a", "quiet"),
              decision("bench-calm", 49, "w-a", "quiet"), decision("bench-gpu", 0, "w-b", "exclusive", True),
              decision("perf-unsampled", 4, "w-c", "exclusive"), decision("unit-1", 25, "w-b", "shared")):
        store.append("scheduling_decisions", d)
    store.flush()


@pytest.fixture
def store(db_path):
    handle = open_store(db_path)
    try:
        populate(handle)
        yield handle
    finally:
        close_store(handle)


def test_each_benchmark_run_shows_the_load_it_ran_under(store, tmp_path):
    data = build_report_data(store)
    b = data["benchmarks"]
    assert (b["threshold_percent"], b["runs"], b["runs_under_threshold"], b["samples"], b["samples_under_threshold"],
            b["under_threshold_percent"], b["shown"]) == (80.0, 4, 1, 10, 6, 60.0, 4)
    keys = ("task_id", "worker_id", "isolation", "needs_gpu", "success", "duration_s", "samples", "peak_cpu_percent",
            "mean_cpu_percent", "peak_gpu_percent", "mean_gpu_percent", "samples_shared", "samples_over_threshold",
            "samples_under_threshold", "under_threshold_percent", "stayed_under_threshold")
    assert [tuple(r[k] for k in keys) for r in b["rows"]] == [  # latest start first
        ("bench-calm", "w-a", "quiet", False, False, 10.0, 2, 12.0, 11.0, 5.0, 5.0, 0, 0, 2, 100.0, True),
        ("bench-quiet", "w-a", "quiet", False, True, 30.0, 4, 85.0, 48.75, 90.0, 90.0, 0, 1, 3, 75.0, False),
        ("perf-unsampled", "w-c", "exclusive", False, True, 3.0, 0, None, None, None, None, 0, 0, 0, None, None),
        ("bench-gpu", "w-b", "exclusive", True, True, 30.0, 4, 30.0, 20.0, 95.0, 80.0, 1, 2, 1, 25.0, False),
    ]
    assert b["rows"][0]["start_time"] == at(50) and b["rows"][0]["task_type"] == "benchmark"

    exported = json.loads(export_report_json(data, tmp_path / "report.json").read_text(encoding="utf-8"))
    assert exported["benchmarks"]["rows"][1]["under_threshold_percent"] == 75.0
    assert exported["benchmarks"]["rows"][3]["stayed_under_threshold"] is False

    html = render_fleet_report(data, tmp_path / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="benchmarks">'):]
    section = section[:section.index("</section>")]
    assert "1 of 4 runs stayed under the threshold in every sample; 6 of 10 samples under (60.0%)" in section
    assert "at or under 80.0%" in section
    quiet_row = section[section.index("bench-quiet"):section.index("</tr>", section.index("bench-quiet"))]
    assert "85.0% / 48.8%" in quiet_row and "3 (75.0%)" in quiet_row and "1 over" in quiet_row
    gpu_row = section[section.index("bench-gpu"):section.index("</tr>", section.index("bench-gpu"))]
    assert "exclusive (GPU)" in gpu_row and "95.0% / 80.0%" in gpu_row and "2 over" in gpu_row
    assert "unit-1" not in section


def test_the_threshold_is_the_schedulers(store):
    b = build_report_data(store, scoring_factors={"quiet_threshold_percent": 90.0})["benchmarks"]
    assert b["threshold_percent"] == 90.0
    assert {r["task_id"]: r["samples_under_threshold"] for r in b["rows"]} == {
        "bench-calm": 2, "bench-quiet": 4, "perf-unsampled": 0, "bench-gpu": 1}


def test_a_file_without_the_gpu_flag_judges_cpu_only(store):
    # Written before decisions said whether the task was a GPU task: its busy GPU is not judged.
    store.write("ALTER TABLE scheduling_decisions DROP COLUMN needs_gpu")
    rows = {r["task_id"]: r for r in build_report_data(store)["benchmarks"]["rows"]}
    assert rows["bench-gpu"]["needs_gpu"] is None
    assert (rows["bench-gpu"]["samples_under_threshold"], rows["bench-gpu"]["samples_over_threshold"]) == (2, 1)


def test_no_benchmark_no_section_rows(db_path, tmp_path):
    handle = open_store(db_path)
    try:
        data = build_report_data(handle)
        assert data["benchmarks"]["runs"] == 0 and data["benchmarks"]["rows"] == []
        html = render_fleet_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
        assert "No task asked for quiet or exclusive hardware." in html
    finally:
        close_store(handle)
