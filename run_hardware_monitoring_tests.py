#!/usr/bin/env python3
"""Run the hardware-monitoring test suite with pytest and record the run in DuckDB.

Usage::

    python run_hardware_monitoring_tests.py [--verbose] [--run-long-tests] [--db-path PATH]
        [--html-report PATH] [--junit-xml PATH] [--results-db PATH] [pytest args ... | -- pytest args]

Each run adds a ``test_runs`` row and one ``test_results`` row per test to ``--results-db``
(default ``$BENCHMARK_DB_PATH`` when set). The exit status is pytest's; 5 means no test was
collected. The logic lives in :mod:`fleet_hwmon.ci.runner`.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from fleet_hwmon.ci.runner import main
    except ModuleNotFoundError as err:  # the runner needs the test extras, which `pip install .` leaves out
        if err.name not in ("pytest", "pytest_html", "pytest_timeout", "pytest_rerunfailures"):
            raise
        sys.exit(f"run_hardware_monitoring_tests: {err.name} is not installed; install the test extras "
                 "with: pip install '.[test]'")
    sys.exit(main())
