"""The demo on a real Dask cluster, run as a user runs it: ``--cluster local`` (a LocalCluster of
worker processes), then its DuckDB file read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

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


def test_local_cluster_demo_ends_with_a_report_and_the_workers_samples(tmp_path):
    db = tmp_path / "demo.duckdb"
    report = tmp_path / "demo.html"
    done = subprocess.run([sys.executable, str(DEMO), "--cluster", "local", "--num-workers", "2", "--num-tasks", "3",
                           "--duration", "30", "--db-path", str(db), "--report", str(report), "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "initialize() the integration" not in done.stderr  # the integration outlives the coordinator
    assert report.is_file() and f"database: {db.resolve()}" in done.stdout
    with duckdb.connect(str(db), read_only=True) as con:
        workers = con.execute("SELECT DISTINCT worker_id FROM resource_utilization").fetchall()
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for (w,) in workers)
