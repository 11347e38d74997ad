"""The demo end to end: ``run_coordinator_with_hardware_monitoring.py`` as a user runs it, then
its database, HTML report and JSON export read back.

The full run (3 workers, 10 tasks) is marked ``long``; a short run (2 workers, 3 tasks) keeps
the default suite covering the whole path.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fleet_hwmon.demo.fleet import build_tasks, build_workers
from fleet_hwmon.scoring.requirements import TaskRequirements, hardware_mismatch
from tests.interrupt import interrupt_after_dispatch

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "run_coordinator_with_hardware_monitoring.py"


def expected_fleet(num_workers: int, num_tasks: int, seed: int = 0) -> tuple[dict[str, bool], dict[str, bool]]:
    """The demo's workers (id -> has a GPU) and tasks (id -> some worker has their hardware on
    this host), built the way the demo builds them."""
    workers = build_workers(num_workers, seed)
    tasks = build_tasks(num_tasks, seed)
    try:
        runnable = {t["task_id"]: any(hardware_mismatch(TaskRequirements.from_task(t), w.capabilities()) is None
                                      for w in workers) for t in tasks}
    finally:
        for t in tasks:
            if t["spec"].cwd:  # the pytest task's suite folder
                shutil.rmtree(t["spec"].cwd, ignore_errors=True)
    return {w.worker_id: bool(w.profile.gpus) for w in workers}, runnable


def run_demo(tmp_path: Path, num_workers: int, num_tasks: int, duration_s: int) -> dict[str, Path]:
    paths = {"db": tmp_path / "demo.duckdb", "report": tmp_path / "demo.html", "json": tmp_path / "demo.json"}
    command = [sys.executable, str(DEMO), "--num-workers", str(num_workers), "--num-tasks", str(num_tasks),
               "--duration", str(duration_s), "--db-path", str(paths["db"]), "--report", str(paths["report"]),
               "--export-json", str(paths["json"]), "--quiet"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=duration_s + 120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"database: {paths['db'].resolve()}" in done.stdout
    return paths


def check_outputs(paths: dict[str, Path], workers: dict[str, bool], tasks: dict[str, bool]) -> None:
    runnable = sorted(t for t, ok in tasks.items() if ok)
    con = duckdb.connect(str(paths["db"]), read_only=True)
    try:
        def rows(sql: str) -> list[dict[str, Any]]:
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()]

        # Every task that some worker can run ran, measured as a process tree.
        usage = rows("SELECT task_id, worker_id, success, process_cpu_seconds, simulated_fields, sample_count, "
                     "peak_gpu_utilization_percent FROM task_resource_usage ORDER BY task_id")
        assert [u["task_id"] for u in usage] == runnable
        for u in usage:
            assert u["worker_id"] in workers
            assert u["process_cpu_seconds"] is not None and u["process_cpu_seconds"] > 0, u
            if not workers[u["worker_id"]]:  # a CPU-only worker: nothing simulated, no GPU figures
                assert u["simulated_fields"] == [] and u["peak_gpu_utilization_percent"] is None, u
            elif u["sample_count"]:  # a GPU worker's samples during the task carry simulated GPUs
                assert u["simulated_fields"] == ["gpus"], u
            else:  # a task shorter than the sampling interval has no worker sample: nothing to label
                assert u["simulated_fields"] == [] and u["peak_gpu_utilization_percent"] is None, u
        assert all(u["success"] for u in usage if "flaky" not in u["task_id"])
        assert not any(u["success"] for u in usage if "flaky" in u["task_id"])

        # A decision for every task that ran, choosing the worker it ran on.
        decisions = rows("SELECT task_id, chosen_worker_id, len(candidates) AS candidates FROM scheduling_decisions")
        chosen = {(d["task_id"], d["chosen_worker_id"]) for d in decisions}
        assert {(u["task_id"], u["worker_id"]) for u in usage} <= chosen
        assert all(d["candidates"] > 0 for d in decisions if d["chosen_worker_id"] is not None)

        # Samples of every worker; GPU values only on GPU workers, and labelled simulated.
        samples = rows("SELECT worker_id, count(*) AS n, count(cpu_percent) AS cpu, max(len(gpus)) AS gpus, "
                       "bool_and(list_contains(simulated_fields, 'gpus')) AS all_flagged, "
                       "bool_or(len(simulated_fields) > 0) AS any_flagged, "
                       "bool_and(list_bool_and([g.simulated for g in gpus])) AS gpus_simulated "
                       "FROM resource_utilization GROUP BY worker_id ORDER BY worker_id")
        assert [s["worker_id"] for s in samples] == sorted(workers)
        for s in samples:
            assert s["n"] >= 2 and s["cpu"] >= 1, s
            if workers[s["worker_id"]]:
                assert s["gpus"] >= 1 and s["all_flagged"] and s["gpus_simulated"], s
            else:
                assert s["gpus"] == 0 and not s["any_flagged"], s
    finally:
        con.close()

    html = paths["report"].read_text(encoding="utf-8")
    for name in [*workers, *tasks]:
        assert name in html, name

    def no_constants(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    data = json.loads(paths["json"].read_text(encoding="utf-8"), parse_constant=no_constants)
    text = json.dumps(data)
    for name in [*workers, *runnable]:
        assert name in text, name
    # The earlier export keys beside ours: every task that ran, under the worker it ran on.
    assert data["timestamp"] == data["generated_at"]
    assert sorted(data["task_details"]) == runnable
    assert sorted(t for ids in data["worker_tasks"].values() for t in ids) == runnable
    assert all(data["task_details"][t]["worker_id"] == w for w, ids in data["worker_tasks"].items() for t in ids)


class TestHardwareMonitoringEndToEnd:
    @pytest.mark.long
    def test_end_to_end_demo(self, tmp_path):
        workers, tasks = expected_fleet(3, 10)
        check_outputs(run_demo(tmp_path, 3, 10, 90), workers, tasks)

    def test_short_demo(self, tmp_path):
        workers, tasks = expected_fleet(2, 3)
        assert all(tasks.values())
        check_outputs(run_demo(tmp_path, 2, 3, 40), workers, tasks)


def outcome_states(db: Path) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute("SELECT task_id, state FROM task_outcomes").fetchall())


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "duration"])
def test_stopped_demo_cancels_its_tasks_and_still_reports_them(tmp_path, how):
    """Ctrl-C (exit 130), SIGTERM (exit 143) or the --duration limit (exit 0): running tasks are
    cancelled, tasks that never started are recorded as such, and the report and the JSON export
    still cover all ten."""
    paths = {"db": tmp_path / "demo.duckdb", "report": tmp_path / "demo.html", "json": tmp_path / "demo.json"}
    command = [sys.executable, str(DEMO), "--num-workers", "2", "--num-tasks", "10", "--db-path", str(paths["db"]),
               "--report", str(paths["report"]), "--export-json", str(paths["json"])]
    if how == "duration":  # ten tasks of 0.3 s or more on four slots need more than 0.5 s
        done = subprocess.run([*command, "--duration", "0.5"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "stopped after 0.5 s" in done.stdout
    else:  # Ctrl-C or SIGTERM as soon as the tasks are dispatched
        signum, word = (signal.SIGINT, "interrupted") if how == "ctrl-c" else (signal.SIGTERM, "terminated")
        returncode, out, err = interrupt_after_dispatch([*command, "--duration", "120"],
                                                        "running 10 tasks on 2 workers", signum=signum, cwd=tmp_path)
        assert returncode == 128 + signum, out + err
        assert f"{word}: stopping the tasks" in err and f"{word} with" in out, out + err
    states = outcome_states(paths["db"])
    assert len(states) == 10 and set(states.values()) <= {"completed", "failed", "cancelled", "queued"}
    assert sum(s in ("cancelled", "queued") for s in states.values()) >= 1, states
    with duckdb.connect(str(paths["db"]), read_only=True) as con:
        ran = {t for (t,) in con.execute("SELECT DISTINCT task_id FROM task_resource_usage").fetchall()}
    assert {t for t, s in states.items() if s == "queued"}.isdisjoint(ran)
    assert {t for t, s in states.items() if s in ("completed", "cancelled")} <= ran
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    summary = data["summary"]
    assert summary["tasks"] == 10
    assert summary["tasks_cancelled"] == sum(s == "cancelled" for s in states.values())
    assert summary["tasks_never_started"] == sum(s == "queued" for s in states.values())
    assert paths["report"].is_file()
