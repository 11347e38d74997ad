"""The demo on a real Dask cluster, run as a user runs it: ``--cluster local`` (a LocalCluster of
worker processes), then its DuckDB file read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
    reason="Dask distributed is not installed (pip install '.[cluster]' in the project's folder); "
           "cluster tests skipped")]


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


@pytest.mark.parametrize("signum, group", [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
                         ids=["ctrl-c-to-the-demo", "ctrl-c-to-its-group", "sigterm-to-its-group"])
def test_a_stopped_local_cluster_demo_cancels_on_the_workers_and_still_reports(tmp_path, signum, group):
    """Ctrl-C or SIGTERM once the tasks are dispatched, to the demo alone or to its whole process
    group as a terminal (a job runner) sends it, worker processes included: the running tasks are
    cancelled on their Dask workers, none is lost with a worker, every task is recorded, the
    report is written, the exit status is 128 + the signal, and no traceback is printed."""
    from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV
    from tests.fakes import fixed_load

    db = tmp_path / "demo.duckdb"
    env = {**os.environ, EXTRA_SOURCE_ENV: fixed_load.ENV_VALUE,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    returncode, out, err = interrupt_after_dispatch(
        [sys.executable, str(DEMO), "--cluster", "local", "--num-workers", "2", "--num-tasks", "6",
         "--duration", "120", "--db-path", str(db), "--report", str(tmp_path / "demo.html")],
        "running 6 tasks on 2 workers", signum=signum, group=group, cwd=tmp_path, env=env)
    assert returncode == 128 + signum, out + err
    assert "Traceback" not in err, err
    word = "terminated" if signum == signal.SIGTERM else "interrupted"
    assert f"{word}: stopping the tasks" in err and f"{word} with" in out, out + err
    with duckdb.connect(str(db), read_only=True) as con:
        outcomes = con.execute("SELECT task_id, state, reason FROM task_outcomes").fetchall()
    states = {task_id: state for task_id, state, _ in outcomes}
    assert len(states) == 6 and any(s in ("cancelled", "queued") for s in states.values()), states
    lost = [(t, e) for t, _, e in outcomes if e and ("left the cluster" in e or "died" in e)]
    assert not lost, lost  # the signal reached the workers, and none of them went down with it
    assert (tmp_path / "demo.html").is_file()


@pytest.mark.parametrize("address", ["bogus", "http://127.0.0.1:8786", "tcp://127.0.0.1:abc", "",
                                     "tcp://127.0.0.1:99999"])
def test_a_malformed_scheduler_address_is_one_clear_error(tmp_path, address):
    """Exit status 2 and one line naming the address, as for a scheduler that cannot be reached;
    an empty address is refused rather than read as no address."""
    done = subprocess.run([sys.executable, str(DEMO), "--scheduler-address", address, "--quiet",
                           "--db-path", str(tmp_path / "demo.duckdb")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()  # (after argparse's usage, for the empty one)
    assert "error: --scheduler-address" in lines[-1] and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 or (not address and lines[0].startswith("usage:")), done.stderr
    assert not (tmp_path / "demo.duckdb").exists()


def test_a_lost_scheduler_ends_the_demo_with_its_tasks_recorded(tmp_path):
    """An external scheduler killed while tasks run: the Dask client reconnects for
    ``distributed.comm.timeouts.connect`` (5 s here), then gives up; the demo then ends at once
    (not at --duration), says the scheduler was lost, records every task, writes the report and
    exits 1. The tasks that ran there are queued again, not reported as cancelled by the user."""
    from fleet_hwmon.cluster.wire import EXTRA_SOURCE_ENV
    from tests.fakes import fixed_load

    env = {**os.environ, EXTRA_SOURCE_ENV: fixed_load.ENV_VALUE, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "5s",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    scheduler_file = tmp_path / "scheduler.json"
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):
            if scheduler_file.is_file() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "2", "--no-dashboard",
                 "--preload", "fleet_hwmon.cluster.preload"], cwd=tmp_path, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        db = tmp_path / "demo.duckdb"
        demo = subprocess.Popen([sys.executable, str(DEMO), "--scheduler-address", address, "--num-workers", "2",
                                 "--num-tasks", "40", "--duration", "600", "--db-path", str(db),
                                 "--report", str(tmp_path / "demo.html")],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(demo)
        assert demo.stdout.readline().startswith("running 40 tasks on 2 workers")
        started[0].kill()  # the scheduler
        out, err = demo.communicate(timeout=300)
    finally:
        for proc in started:
            proc.kill()
            proc.wait(timeout=30)
    assert demo.returncode == 1, out + err
    assert f"error: lost the Dask scheduler at {address}" in err and "Traceback" not in err, err
    assert "the Dask scheduler lost with" in out, out
    with duckdb.connect(str(db), read_only=True) as con:
        outcomes = con.execute("SELECT task_id, state, reason FROM task_outcomes").fetchall()
    assert len(outcomes) == 40, outcomes
    assert not [o for o in outcomes if o[1] == "cancelled"], outcomes  # nobody cancelled them
    assert (tmp_path / "demo.html").is_file()


def test_the_connecting_line_gives_dasks_own_connect_timeout(monkeypatch):
    from run_coordinator_with_hardware_monitoring import _connect_wait

    assert _connect_wait() == "Dask waits up to 30 s"  # distributed's default
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "3s")
    import dask

    dask.config.refresh()
    try:
        assert _connect_wait() == "Dask waits up to 3 s"
    finally:
        monkeypatch.delenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT")
        dask.config.refresh()
