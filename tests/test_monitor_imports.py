"""A monitor without a database loads neither DuckDB nor pyarrow (nor Jinja2, which only reports
need); one with a database loads the writer when it opens the file. Each case runs in a fresh
interpreter, so modules imported by other tests cannot hide an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("duckdb", "pyarrow", "numpy", "pandas", "jinja2")

CHILD = textwrap.dedent("""
    import json, sys, time
    from hardware_utilization_monitor import HardwareUtilizationMonitor

    def loaded():
        return sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2].split(",")))

    after_import = loaded()
    db_path = sys.argv[1] or None
    monitor = HardwareUtilizationMonitor("imports-worker", db_path=db_path, interval_seconds=0.05, enable_gpu=False)
    monitor.start_monitoring()
    monitor.start_task_monitoring("task-1")
    time.sleep(0.3)
    monitor.stop_task_monitoring("task-1")
    status = monitor.status()
    monitor.stop_monitoring()
    print(json.dumps({"after_import": after_import, "after_run": loaded(), "samples": status["samples"]}))
""")


def run_child(db_path: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, db_path, ",".join(HEAVY)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_monitor_without_a_database_imports_no_duckdb_pyarrow_or_jinja2():
    result = run_child("")
    assert result["samples"] >= 2  # it really sampled, stored nothing
    assert result["after_import"] == []
    assert result["after_run"] == []


def test_a_monitor_with_a_database_loads_the_writer_when_it_opens_the_file(tmp_path):
    result = run_child(str(tmp_path / "imports.duckdb"))
    assert result["after_import"] == []
    assert {"duckdb", "pyarrow"} <= set(result["after_run"])
