"""The demo on a real Dask cluster, run as a user runs it: ``--cluster local`` (a LocalCluster of
worker processes), then its DuckDB file read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.interrupt import interrupt_after_dispatch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "run_coordinator_with_hardware_monitoring.py"

try:
    import distributed  # noqa: F401

    HAVE_DISTRIBUTED = True
except ImportError:
    HAVE_DISTRIBUTED = False

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(
    not HAVE_DISTRIBUTED,
    reason="Dask distributed is not installed (pip install 'fleet-hwmon[cluster]'); cluster tests skipped")]


def test_local_cluster_demo_runs_every_task_and_stores_tasks_samples_and_decisions(tmp_path):
    """Worker processes with a fixed quiet load (so placement never waits on the shared host):
    every task ends completed or failed, each worker's samples are stored under its Dask address,
    and every task that ran was placed by a recorded decision on the worker it ran on."""
    from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV
    from tests.fakes import fixed_load
    from tests.test_readme_commands import check_demo_run

    db = tmp_path / "demo.duckdb"
    report = tmp_path / "demo.html"
    options = ["--cluster", "local", "--num-workers", "2", "--num-tasks", "4", "--duration", "120",
               "--db-path", str(db), "--report", str(report), "--quiet"]
    env = {**os.environ, EXTRA_SOURCE_ENV: fixed_load.ENV_VALUE,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(DEMO), *options], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "initialize() the integration" not in done.stderr  # the integration outlives the coordinator
    assert report.is_file()
    check_demo_run(options, tmp_path, done.stdout)
    with duckdb.connect(str(db), read_only=True) as con:
        ran = con.execute("SELECT task_id, worker_id, success FROM task_resource_usage").fetchall()
        placed = set(con.execute("SELECT task_id, chosen_worker_id FROM scheduling_decisions").fetchall())
        per_worker = con.execute("SELECT worker_id, count(*), count(cpu_percent) FROM resource_utilization "
                                 "GROUP BY ALL").fetchall()
    assert ran and all(w.startswith("tcp://127.0.0.1:") and (t, w) in placed for t, w, _ in ran)
    assert any(ok for _, _, ok in ran)
    assert len(per_worker) == 2 and all(n >= 1 and cpu == n for _, n, cpu in per_worker)


def test_ctrl_c_on_a_local_cluster_cancels_on_the_workers_and_still_reports(tmp_path):
    """Ctrl-C once the tasks are dispatched: the running ones are cancelled on their Dask workers,
    every task is recorded, the report is written, and the exit status is 130."""
    from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV
    from tests.fakes import fixed_load

    db = tmp_path / "demo.duckdb"
    env = {**os.environ, EXTRA_SOURCE_ENV: fixed_load.ENV_VALUE,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    returncode, out, err = interrupt_after_dispatch(
        [sys.executable, str(DEMO), "--cluster", "local", "--num-workers", "2", "--num-tasks", "6",
         "--duration", "120", "--db-path", str(db), "--report", str(tmp_path / "demo.html")],
        "running 6 tasks on 2 workers", cwd=tmp_path, env=env)
    assert returncode == 130, out + err
    assert "Traceback" not in err, err
    with duckdb.connect(str(db), read_only=True) as con:
        states = dict(con.execute("SELECT task_id, state FROM task_outcomes").fetchall())
    assert len(states) == 6 and any(s in ("cancelled", "queued") for s in states.values()), states
    assert (tmp_path / "demo.html").is_file()
