"""A monitor without a database loads neither DuckDB nor pyarrow (nor Jinja2, which only reports
need); one with a database loads the writer when it opens the file. Each case runs in a fresh
interpreter, so modules imported by other tests cannot hide an import. The command-line tools
start with only the base install (`pip install .`): the extras and the test tools are not needed,
except by the test runner, which says what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


# What `pip install .` leaves out: the optional extras and the test tools (pyproject.toml).
NOT_INSTALLED = ("pytest", "pytest_html", "pytest_timeout", "pytest_httpserver", "pytest_rerunfailures", "jsonschema",
                 "yaml", "aiosmtpd", "apprise", "selenium", "distributed", "dask", "prometheus_client")
WITHOUT_EXTRAS = textwrap.dedent("""
    import runpy, sys
    for name in sys.argv[1].split(","):
        sys.modules[name] = None  # `import name` now fails as if it were not installed
    script = sys.argv[2]
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")
""")


def run_without_extras(script: str, *args: str, missing: tuple[str, ...] = NOT_INSTALLED
                       ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, ",".join(missing), script, *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("script", ["generate_status_badge.py", "ci_notification.py", "hardware_utilization_monitor.py",
                                    "hardware_capability_detector.py", "run_coordinator_with_hardware_monitoring.py"])
def test_every_tool_but_the_test_runner_starts_without_the_extras(script):
    done = run_without_extras(script, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_badges_are_written_without_the_extras(tmp_path):
    done = run_without_extras("generate_status_badge.py", "--allow-missing", "--db", str(tmp_path / "none.duckdb"),
                              "--output-dir", str(tmp_path / "badges"))
    assert done.returncode == 0, done.stderr
    assert "unknown" in (tmp_path / "badges" / "status.svg").read_text()


def test_the_test_runner_without_pytest_or_its_plugins_says_what_to_install():
    done = run_without_extras("run_hardware_monitoring_tests.py")
    assert done.returncode == 1
    assert done.stderr == ("run_hardware_monitoring_tests: pytest, pytest_html, pytest_timeout, pytest_rerunfailures "
                           "not installed; install the test extras with: pip install '.[test]'\n")


def test_the_test_runner_without_one_plugin_names_it():
    done = run_without_extras("run_hardware_monitoring_tests.py", missing=("pytest_rerunfailures",))
    assert done.returncode == 1
    assert done.stderr.startswith("run_hardware_monitoring_tests: pytest_rerunfailures not installed;")
